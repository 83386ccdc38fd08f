"""Stage 2's examples from a prepared hair folder: portrait, hair mask, prompt, identity vector and face box.

Images are read per batch (a K-Hairstyle set does not fit in memory at 1024 px), centre-cropped to a square as the
LoRA trainer does, and the face box follows the crop.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from training.hair.texture import HairDataError

NEEDED = ("images", "masks", "identity_embeddings", "prompt", "face_box")


@dataclass(frozen=True)
class Example:
    id: str
    image: Path
    mask: Path
    identity: Path
    prompt: str
    face_box: tuple[float, float, float, float]  # x, y, width, height in the prepared image's pixels
    attributes: tuple[tuple[str, str], ...] = ()  # (attribute, English value) the prompt was built from


@dataclass
class Batch:
    pixels: torch.Tensor  # N×3×R×R in [-1, 1]
    masks: torch.Tensor  # N×1×R×R, 1 = paint
    identity: torch.Tensor  # N×D unit vectors
    prompts: list[str]
    attributes: list[dict[str, str]]
    face_boxes: list[tuple[float, float, float, float]]  # x0, y0, x1, y1 in the R×R image


def usable_examples(data: Path) -> list[Example]:
    """Every portrait of a prepared folder that has what stage 2 reads."""
    path = Path(data) / "metadata.jsonl"
    if not path.is_file():
        raise HairDataError(f"{Path(data).name} has no metadata.jsonl; prepare it with python -m training.prepare hair.")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    usable = [r for r in rows if all(r.get(k) for k in NEEDED)]
    if len(usable) < 2:
        raise HairDataError(f"{Path(data).name} has {len(usable)} image(s) with a portrait, mask, prompt and face; "
                            "stage 2 needs at least 2 (one is held out): prepare more images.")
    return [Example(r["id"], data / r["images"], data / r["masks"], data / r["identity_embeddings"], r["prompt"],
                    tuple(float(v) for v in r["face_box"]), tuple(r.get("attributes", {}).items())) for r in usable]


def read_examples(data: Path, val_fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """(train, held-out) examples of a prepared folder; the held-out ones are drawn by ``seed``."""
    examples = usable_examples(data)
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    held = set(order[:max(1, round(len(examples) * val_fraction))])
    return ([e for i, e in enumerate(examples) if i not in held], [e for i, e in enumerate(examples) if i in held])


def load_batch(examples: list[Example], size: int) -> Batch:
    """The examples' tensors at ``size``×``size``."""
    pixels, masks, identity, boxes = [], [], [], []
    for e in examples:
        with Image.open(e.image) as im:
            image = im.convert("RGB")
        with Image.open(e.mask) as im:
            mask = im.convert("L")
        scale, left, top = _fit(image.size, size)
        image = ImageOps.fit(image, (size, size), Image.Resampling.LANCZOS)
        mask = ImageOps.fit(mask, (size, size), Image.Resampling.NEAREST)
        pixels.append(torch.from_numpy(np.asarray(image, np.float32) / 127.5 - 1).permute(2, 0, 1))
        masks.append(torch.from_numpy((np.asarray(mask) > 127).astype(np.float32))[None])
        identity.append(torch.from_numpy(np.load(e.identity, allow_pickle=False).astype(np.float32)))
        x, y, w, h = e.face_box
        boxes.append(((x - left) * scale, (y - top) * scale, (x + w - left) * scale, (y + h - top) * scale))
    return Batch(torch.stack(pixels), torch.stack(masks), torch.stack(identity), [e.prompt for e in examples],
                 [dict(e.attributes) for e in examples], boxes)


def _fit(image_size: tuple[int, int], size: int) -> tuple[float, float, float]:
    """(scale, left, top) of ``ImageOps.fit``'s centre crop of ``image_size`` to a ``size`` square."""
    width, height = image_size
    side = min(width, height)
    return size / side, (width - side) / 2, (height - side) / 2
