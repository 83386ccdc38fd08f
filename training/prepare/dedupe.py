"""Exact (MD5) and near (perceptual hash) duplicate detection; the largest image of each group is kept.

Near duplicates: two 64-bit perceptual hashes from imagehash, pHash (DCT signs) and dHash (gradient signs).
Two images match when either hash is within ``max_distance`` bits: pHash alone misses small crops of flat,
illustration-like images, whose low-frequency DCT coefficients sit close to the median, and dHash covers
them. Both hash luminance only, so a red and a blue circle in the same place hash alike; a colour check
(mean and spread of each RGB channel, which crops, resizes and JPEG barely move) keeps them apart.
"""
from __future__ import annotations

import hashlib
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

DEFAULT_MAX_DISTANCE = 6  # bits of 64; re-encodes and resizes stay within 2-4, different pictures are ~32 apart
COLOUR_TOLERANCE = 16.0  # grey levels (0-255) any channel's mean or spread may differ by


@dataclass(frozen=True)
class Fingerprint:
    """What near-duplicate matching needs from one image; small enough to keep for thousands of images."""
    phash: int
    dhash: int
    colour: tuple[float, ...]  # per-channel mean and standard deviation, 0-255
    pixels: int  # width * height: the larger image of a group is kept
    file_bytes: int  # breaks ties between equal sizes: the larger file has less compression loss


def md5_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex MD5 of a file's bytes, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def exact_duplicates(paths: Iterable[Path]) -> dict[Path, Path]:
    """{duplicate: the file it repeats} for files with identical bytes; the first in sorted order is kept."""
    first: dict[str, Path] = {}
    duplicates = {}
    for path in sorted(paths):
        kept = first.setdefault(md5_file(path), path)
        if kept != path:
            duplicates[path] = kept
    return duplicates


def fingerprint(image: Image.Image, file_bytes: int = 0) -> Fingerprint:
    """Hashes and colour statistics of an RGB image."""
    small = np.asarray(image.convert("RGB").resize((64, 64), Image.Resampling.BILINEAR), dtype=np.float32)
    colour = tuple(float(v) for v in (*small.mean(axis=(0, 1)), *small.std(axis=(0, 1))))
    import imagehash  # imported here: the Datasets tab reads this module's defaults at page build

    return Fingerprint(phash=int(str(imagehash.phash(image)), 16), dhash=int(str(imagehash.dhash(image)), 16),
                       colour=colour, pixels=image.width * image.height, file_bytes=file_bytes)


def near_duplicates(prints: dict[Hashable, Fingerprint], max_distance: int = DEFAULT_MAX_DISTANCE,
                    colour_tolerance: float = COLOUR_TOLERANCE) -> dict[Hashable, Hashable]:
    """{duplicate key: kept key}. Images are visited largest first; each one either matches an image already
    kept (it joins the closest) or is kept itself, so groups never chain and the kept one is the largest."""
    if not prints:
        return {}  # numpy cannot shape the colour table of no images
    keys = sorted(prints, key=lambda k: (-prints[k].pixels, -prints[k].file_bytes, str(k)))
    phash = np.array([prints[k].phash for k in keys], dtype=np.uint64)
    dhash = np.array([prints[k].dhash for k in keys], dtype=np.uint64)
    colour = np.array([prints[k].colour for k in keys], dtype=np.float32).reshape(len(keys), -1)
    kept: list[int] = []
    duplicates = {}
    for i, key in enumerate(keys):
        if kept:
            leaders = np.array(kept)
            bits = np.minimum(np.bitwise_count(phash[leaders] ^ phash[i]), np.bitwise_count(dhash[leaders] ^ dhash[i]))
            close = (bits <= max_distance) & (np.abs(colour[leaders] - colour[i]).max(axis=1) <= colour_tolerance)
            if close.any():
                duplicates[key] = keys[int(leaders[close][np.argmin(bits[close])])]
                continue
        kept.append(i)
    return duplicates


def hamming(a: int, b: int) -> int:
    """Bits that differ between two 64-bit hashes."""
    return (a ^ b).bit_count()
