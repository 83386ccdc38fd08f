"""A heuristic for "this image carries text" (captions, titles, watermarks) with OpenCV's MSER regions.

Letters are small, high-contrast, stable regions of one colour; a line of text is several of them side by side
with their tops or bottoms aligned and similar heights. Textures (grass, gravel) produce letter-like blobs too,
but rarely four in a row on one baseline. The measure is the fraction of the image covered by such lines.
It is a flag for a person to look at, not a verdict: small watermarks and stylised lettering can slip through.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

WIDTH = 512  # analysed at a fixed width so the size rules below mean the same for every image
MIN_CHARS = 4  # letters in a row before it counts as a line of text
MIN_CONTRAST = 50  # grey levels between a letter and its surroundings


@dataclass(frozen=True)
class Glyph:
    x: int
    y: int
    w: int
    h: int
    level: float  # mean grey level: the letters of one line share a colour

    @property
    def cy(self) -> float:
        return self.y + self.h / 2


def text_fraction(image: Image.Image) -> float:
    """Fraction of the image (0-1) covered by lines of letter-like regions."""
    gray = _gray(image)
    glyphs = _glyphs(gray)
    mask = np.zeros(gray.shape, dtype=bool)
    for line in _lines(glyphs):
        if _is_text_line(line):
            x0, y0 = min(g.x for g in line), min(g.y for g in line)
            x1, y1 = max(g.x + g.w for g in line), max(g.y + g.h for g in line)
            mask[y0:y1, x0:x1] = True
    return float(mask.mean())


def _gray(image: Image.Image) -> np.ndarray:
    height = max(1, round(image.height * WIDTH / image.width))
    return np.asarray(image.convert("L").resize((WIDTH, height), Image.Resampling.BILINEAR))


def _glyphs(gray: np.ndarray) -> list[Glyph]:
    """Letter-sized, letter-shaped MSER regions that stand out from what surrounds them, left to right."""
    height, width = gray.shape
    mser = cv2.MSER_create(5, 20, int(0.02 * width * height))  # delta, min_area, max_area
    regions, boxes = mser.detectRegions(gray)
    found: dict[tuple[int, int, int, int], Glyph] = {}
    for points, (x, y, w, h) in zip(regions, boxes):
        if not (8 <= h <= 0.12 * height and 0.1 * h <= w <= 1.5 * h):
            continue
        if not 0.15 <= len(points) / (w * h) <= 0.95:  # strokes, not a filled block or a thin outline
            continue
        inside = np.zeros((h, w), dtype=bool)
        inside[points[:, 1] - y, points[:, 0] - x] = True
        box = gray[y:y + h, x:x + w].astype(np.float32)
        if inside.all() or abs(box[inside].mean() - box[~inside].mean()) < MIN_CONTRAST:
            continue
        # MSER reports nested, nearly identical regions for one letter; keep one per 3-pixel cell.
        found.setdefault((x // 3, y // 3, w // 3, h // 3), Glyph(int(x), int(y), int(w), int(h),
                                                                 float(box[inside].mean())))
    return sorted(found.values(), key=lambda g: g.x)


def _neighbours(a: Glyph, b: Glyph) -> bool:
    """b could be the letter after a on the same line (b starts to the right of a)."""
    tall = max(a.h, b.h)
    return (b.x >= a.x + a.w * 0.5 and b.x - (a.x + a.w) <= tall and abs(a.cy - b.cy) <= 0.25 * tall
            and tall <= 1.4 * min(a.h, b.h) and abs(a.level - b.level) <= 30)


def _lines(glyphs: list[Glyph]) -> list[list[Glyph]]:
    """Chains of neighbouring glyphs (union-find over neighbour pairs)."""
    parent = list(range(len(glyphs)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(glyphs):
        for j in range(i + 1, len(glyphs)):
            b = glyphs[j]
            if b.x - (a.x + a.w) > max(a.h, b.h):
                break  # sorted by x: everything further right is too far away
            if _neighbours(a, b):
                parent[root(j)] = root(i)
    groups: dict[int, list[Glyph]] = {}
    for i, glyph in enumerate(glyphs):
        groups.setdefault(root(i), []).append(glyph)
    return list(groups.values())


def _is_text_line(line: list[Glyph]) -> bool:
    """At least MIN_CHARS non-overlapping glyphs, mostly on one top or bottom line, wider than tall."""
    if len(line) < MIN_CHARS:
        return False
    heights = np.array([g.h for g in line], dtype=np.float32)
    tops = np.array([g.y for g in line], dtype=np.float32)
    bottoms = tops + heights
    tall = float(np.median(heights))
    aligned = (np.abs(tops - np.median(tops)) <= 0.12 * tall) | (np.abs(bottoms - np.median(bottoms)) <= 0.12 * tall)
    if aligned.mean() < 0.8:
        return False
    in_a_row, end = 0, -np.inf
    for glyph in sorted(line, key=lambda g: g.x):
        if glyph.x >= end - 0.15 * tall:
            in_a_row, end = in_a_row + 1, glyph.x + glyph.w
    span = max(g.x + g.w for g in line) - min(g.x for g in line)
    return in_a_row >= MIN_CHARS and span >= 2.5 * tall
