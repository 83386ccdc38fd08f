"""Exact (MD5) and near (colour layout) duplicate detection; the largest image of each group is kept.

Near duplicates are compared by their colour layout: the mean colour of each cell of a 16x16 grid. Two images
match when every inner cell of each has a colour within ``tolerance`` levels of the colours the other shows
around the same place (one cell either way), so crops of up to ~6 % per side, resizes and re-encodes match,
while the same layout in other colours does not. Perceptual hashes (imagehash's pHash, dHash) were used
before: they hash luminance only and, on flat illustration-like scenes, put 6 % crops up to 23 bits apart
while different scenes came as close as 2 bits.
"""
from __future__ import annotations

import hashlib
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

GRID = 16  # cells per side of the colour layout
FINE = 2  # the colours around a cell are read from a grid this much finer, where edges are purer
REACH = 2  # fine cells either side of a cell's own: one cell, about what a 6 % crop moves content by
# Colour levels (0-255) a cell may lie outside what the other image shows near it. On the toy world and the
# sample photos that ship with the packages, 6 % crops, 0.5-2x resizes and JPEG at quality 50 stay within 6;
# other pictures are 11 or more apart (two grey textures) and recolours 70 or more.
DEFAULT_TOLERANCE = 8
INNER = np.s_[1:-1, 1:-1]  # a crop may cut away what the border cells show
PROBE = np.s_[1:-1:4, 1:-1:4]  # 16 of the inner cells, spread over the picture


@dataclass(frozen=True, eq=False)
class Fingerprint:
    """What near-duplicate matching needs from one image; about 2 KB, so thousands fit in memory."""
    layout: np.ndarray  # GRID x GRID x 3 cell means, uint8
    low: np.ndarray  # per cell and channel, the darkest and brightest fine cell within REACH, uint8
    high: np.ndarray
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
    """The colour layout of an RGB image and the colour range around each of its cells."""
    side = GRID * FINE
    fine = np.asarray(image.convert("RGB").resize((side, side), Image.Resampling.BOX), dtype=np.float32)
    layout = fine.reshape(GRID, FINE, GRID, FINE, 3).mean(axis=(1, 3))
    padded = np.pad(fine, ((REACH, REACH), (REACH, REACH), (0, 0)), mode="edge")
    windows = sliding_window_view(padded, (FINE + 2 * REACH,) * 2, axis=(0, 1))[::FINE, ::FINE]
    as_bytes = lambda a: np.round(a).astype(np.uint8)  # noqa: E731
    return Fingerprint(as_bytes(layout), as_bytes(windows.min(axis=(-2, -1))), as_bytes(windows.max(axis=(-2, -1))),
                       pixels=image.width * image.height, file_bytes=file_bytes)


def _outside(cells: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Per image: the most any of the given cells lies outside the colour range around it."""
    excess = np.maximum(low - cells, 0) + np.maximum(cells - high, 0)
    return excess.max(axis=(1, 2, 3))


def _arrays(prints: list[Fingerprint], cells: tuple = INNER) -> tuple[np.ndarray, ...]:
    """(layouts, lows, highs) of ``prints`` at ``cells``, as int16 so differences do not wrap."""
    return tuple(np.stack([getattr(p, name)[cells] for p in prints]).astype(np.int16)
                 for name in ("layout", "low", "high"))


def _distances(one: tuple[np.ndarray, ...], others: tuple[np.ndarray, ...]) -> np.ndarray:
    (cells, low, high), (their_cells, their_low, their_high) = one, others
    return np.maximum(_outside(cells, their_low, their_high), _outside(their_cells, low, high))


def layout_distances(one: Fingerprint, others: list[Fingerprint]) -> np.ndarray:
    """Colour levels by which ``one`` and each of ``others`` disagree somewhere inside (0 = same layout)."""
    return _distances(_arrays([one]), _arrays(others))


def near_duplicates(prints: dict[Hashable, Fingerprint],
                    tolerance: int = DEFAULT_TOLERANCE) -> dict[Hashable, tuple[Hashable, int]]:
    """{duplicate key: (kept key, distance in colour levels)}; the largest image of each group is kept."""
    # Images are visited largest first; each one either matches an image already kept (it joins the closest)
    # or is kept itself, so groups never chain.
    if not prints:
        return {}  # numpy cannot stack the layouts of no images
    keys = sorted(prints, key=lambda k: (-prints[k].pixels, -prints[k].file_bytes, str(k)))
    ordered = [prints[k] for k in keys]
    # A few cells first: a different picture nearly always fails there, and the full check is 12x the work.
    full, probe = _arrays(ordered), _arrays(ordered, PROBE)
    kept = np.zeros(len(keys), dtype=np.intp)
    count = 0
    duplicates = {}
    for i, key in enumerate(keys):
        leaders = kept[:count]
        near = leaders[_distances(tuple(a[i:i + 1] for a in probe), tuple(a[leaders] for a in probe)) <= tolerance]
        if len(near):
            distances = _distances(tuple(a[i:i + 1] for a in full), tuple(a[near] for a in full))
            best = int(np.argmin(distances))
            if distances[best] <= tolerance:
                duplicates[key] = (keys[near[best]], int(distances[best]))
                continue
        kept[count] = i
        count += 1
    return duplicates
