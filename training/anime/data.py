"""Content/style image folders for the photo → anime trainer: AvatarAnime splits or any flat folder."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch.utils.data import Dataset

from pipelines.images import ImageProblem, open_image

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
IMAGE_SIZE = 224


class DataError(ValueError):
    """A content or style folder cannot be used; the message names it."""


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def splits(folder: Path, name: str, val_fraction: float) -> tuple[list[Path], list[Path]]:
    """(train, val) images: ``train/`` and ``val/`` when present (AvatarAnime), else a held-out tail."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"The {name} folder {folder} does not exist.")
    if (folder / "train").is_dir():
        train = list_images(folder / "train")
        val = list_images(folder / "val") if (folder / "val").is_dir() else []
    else:
        images = list_images(folder)
        n_val = int(len(images) * val_fraction) if len(images) > 1 else 0
        train, val = images[:len(images) - n_val], images[len(images) - n_val:]
    if not train:
        raise DataError(f"The {name} folder {folder} has no images (.jpg, .png, .webp or .bmp) to train on.")
    return train, val or train[:1]


def transforms(train: bool):
    """The seed's transforms, without the normalisation: each network normalises its own input."""
    from torchvision import transforms as T

    crop = [T.RandomCrop(IMAGE_SIZE), T.RandomHorizontalFlip()] if train else [T.CenterCrop(IMAGE_SIZE)]
    return T.Compose([T.Resize(IMAGE_SIZE), *crop, T.ToTensor()])


class ImageFolder(Dataset):
    """RGB images in [0, 1]; an unreadable file stops training with a sentence naming it."""

    def __init__(self, paths: list[Path], train: bool):
        self.paths, self.transform = list(paths), transforms(train)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        try:
            image = open_image(self.paths[index]).image
        except ImageProblem as err:
            raise DataError(f"{err} ({self.paths[index]})") from None
        return self.transform(image)


def check_readable(paths: list[Path]) -> None:
    """Open every file once before training, so a bad file is reported now and not an hour in."""
    for path in paths:
        try:
            open_image(path)
        except ImageProblem as err:
            raise DataError(f"{err} ({path})") from None
