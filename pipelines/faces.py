"""Face-centred square crop boxes: DreamBooth ``crop_face`` and the Anime tab's face crop."""
from __future__ import annotations

import numpy as np
from PIL import Image

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
