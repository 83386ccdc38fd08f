"""Face-centred square crops for portrait training (DreamBooth ``crop_face``)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from training.latents import open_rgb, square_tensor

log = logging.getLogger(__name__)
FACE_MARGIN = 2.2  # crop side as a multiple of the face box: head, hair and some shoulders


def face_box(image: Image.Image, detector) -> tuple[int, int, int, int] | None:
    """The single face's square crop box (left, top, right, bottom), or None unless exactly one face."""
    faces = detector.detect(image)
    return square_around(faces[0], image.size) if len(faces) == 1 else None


def square_around(face: tuple[int, int, int, int], image_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A square crop box FACE_MARGIN times the face box (x, y, w, h), centred on it and kept inside the image."""
    x, y, w, h = face
    width, height = image_size
    side = min(int(max(w, h) * FACE_MARGIN), width, height)
    cx, cy = x + w / 2, y + h / 2
    left = int(np.clip(cx - side / 2, 0, width - side))
    top = int(np.clip(cy - side / 2, 0, height - side))
    return left, top, left + side, top + side


def face_crop_transform(detector):
    """A (path, size) → pixel-tensor transform like ``latents.load_square`` that centres the face."""
    def face_crop(path: Path, size: int) -> torch.Tensor:
        image = open_rgb(path)
        box = face_box(image, detector)
        if box is None:
            log.warning("%s: not exactly one face found; using a centre crop", Path(path).name)
        else:
            image = image.crop(box)
        return square_tensor(image, size)
    return face_crop
