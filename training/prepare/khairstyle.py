"""Reading K-Hairstyle: pair images with their JSON labels, parse the hair polygon, draw the hair mask.

Facts from public loaders (the official schema is not published in English): one label per image; an image
``CP032677-001.jpg`` may be labelled ``CP032677_001.json`` or ``CP032677-001.json``, in a mirrored folder tree;
``polygon1`` is the hair outline, a list of rings of ``{"x", "y"}`` stored as a JSON string or as a real list.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

MIN_HAIR_FRACTION = 0.002  # a hair mask smaller than this share of the image is no hair to learn from
MIN_HAIR_PIXELS = 16


class LabelError(ValueError):
    """A label cannot be used; the message says why in a few words (the caller names the file)."""


@dataclass
class Pairing:
    """Images matched with labels, and what is left over on either side (relative paths)."""
    pairs: list[tuple[PurePosixPath, PurePosixPath]] = field(default_factory=list)
    images_without_label: list[PurePosixPath] = field(default_factory=list)
    labels_without_image: list[PurePosixPath] = field(default_factory=list)


def pair_key(rel: PurePosixPath) -> tuple[str, ...]:
    """What an image and its label share: the folders and the stem, ``_`` read as ``-``, case ignored."""
    return (*[p.lower() for p in rel.parent.parts], rel.stem.replace("_", "-").lower())


def pair_files(images: list[PurePosixPath], labels: list[PurePosixPath]) -> Pairing:
    """Match each image to its label by ``pair_key``; a label in the same place wins over one found elsewhere."""
    by_key = {pair_key(rel): rel for rel in labels}
    by_stem: dict[str, list[PurePosixPath]] = {}
    for rel in labels:
        by_stem.setdefault(pair_key(rel)[-1], []).append(rel)
    out, used = Pairing(), set()
    for image in images:
        label = by_key.get(pair_key(image))
        if label is None:  # the trees may differ in depth: a unique stem still pairs
            found = by_stem.get(pair_key(image)[-1], [])
            label = found[0] if len(found) == 1 else None
        if label is None or label in used:
            out.images_without_label.append(image)
            continue
        used.add(label)
        out.pairs.append((image, label))
    out.labels_without_image = [rel for rel in labels if rel not in used]
    return out


def read_label(path: Path) -> dict:
    """The label's JSON object (UTF-8, with or without a byte-order mark)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LabelError(f"is not valid JSON ({type(err).__name__})") from None
    if not isinstance(data, dict):
        raise LabelError("is not a JSON object")
    return data


def polygon_rings(label: dict, key: str = "polygon1") -> list[np.ndarray]:
    """The hair outline as rings of (x, y) float points; a JSON string or a list, one ring or several."""
    raw = label.get(key)
    if raw is None or raw == "":
        raise LabelError(f"has no {key}")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise LabelError(f"has a malformed {key} (not JSON)") from None
    if isinstance(raw, list) and raw and isinstance(raw[0], dict):
        raw = [raw]  # a single ring
    rings = []
    try:
        for ring in raw:
            points = np.array([[float(p["x"]), float(p["y"])] for p in ring], dtype=np.float32)
            if len(points) >= 3 and np.isfinite(points).all():
                rings.append(points)
    except (TypeError, KeyError, ValueError):
        raise LabelError(f"has a malformed {key} (rings of {{\"x\", \"y\"}} expected)") from None
    if not rings:
        raise LabelError(f"has an empty {key}")
    return rings


def hair_mask(rings: list[np.ndarray], size: tuple[int, int], dilate: int = 0) -> np.ndarray:
    """A uint8 mask (255 = hair) of ``size`` (width, height), the rings filled, grown by ``dilate`` pixels."""
    import cv2

    width, height = size
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [np.round(r).astype(np.int32) for r in rings], 255)
    if dilate > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1, 2 * dilate + 1))
        mask = cv2.dilate(mask, kernel)
    return mask


def check_hair_area(mask: np.ndarray) -> None:
    """Refuse a polygon that covers (almost) nothing: it would teach nothing and break the crops."""
    area = int((mask > 0).sum())
    if area < max(MIN_HAIR_PIXELS, MIN_HAIR_FRACTION * mask.size):
        raise LabelError(f"has a hair polygon too small to use ({area} pixels)")
