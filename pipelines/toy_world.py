"""The toy world of the tiny profile: a renderer that draws it and a judge that reads it back from pixels.

One shape (circle, square, upright isosceles triangle) in one of six colours on a plain background,
64×64 RGB, captioned ``a {color} {shape} on a {background} background`` (see DESIGN.md).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 210, 40),
    "purple": (140, 60, 190),
    "orange": (240, 140, 30),
}
# Outside the palette on purpose: DreamBooth tests teach it as a new concept.
NEW_CONCEPT_COLORS: dict[str, tuple[int, int, int]] = {"pink": (255, 105, 180)}
SHAPES = ("circle", "square", "triangle")
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245),
    "black": (15, 15, 15),
    "gray": (128, 128, 128),
}
_SUPERSAMPLE = 4
_FOREGROUND_DISTANCE = 60.0  # RGB distance from the background that counts as foreground


@dataclass(frozen=True)
class Scene:
    color: str
    shape: str
    background: str
    size: float  # side or diameter as a fraction of the image
    cx: float  # centre, as a fraction of the image
    cy: float

    @property
    def caption(self) -> str:
        return caption(self.color, self.shape, self.background)


def caption(color: str, shape: str, background: str) -> str:
    return f"a {color} {shape} on a {background} background"


def all_prompts() -> list[tuple[str, str, str]]:
    """Every (colour, shape, background) of the world, in a fixed order."""
    return [(c, s, b) for c in COLORS for s in SHAPES for b in BACKGROUNDS]


def random_scene(rng: random.Random, color: str | None = None, shape: str | None = None,
                 background: str | None = None) -> Scene:
    """Draw a scene; attributes left as None are chosen at random."""
    return Scene(
        color=color or rng.choice(list(COLORS)),
        shape=shape or rng.choice(SHAPES),
        background=background or rng.choice(list(BACKGROUNDS)),
        size=rng.uniform(0.40, 0.70),
        cx=0.5 + rng.uniform(-0.12, 0.12),
        cy=0.5 + rng.uniform(-0.12, 0.12),
    )


def render(scene: Scene, size: int = SIZE) -> Image.Image:
    """Draw a scene, anti-aliased by supersampling."""
    return paint(scene, {**COLORS, **NEW_CONCEPT_COLORS}[scene.color], BACKGROUNDS[scene.background], size)


def paint(scene: Scene, fill: tuple[int, int, int], background: tuple[int, int, int],
          size: int = SIZE) -> Image.Image:
    """Draw a scene's shape and place with any RGB fill and background (its colour names are ignored)."""
    big = size * _SUPERSAMPLE
    image = Image.new("RGB", (big, big), background)
    draw = ImageDraw.Draw(image)
    half = scene.size * big / 2
    cx, cy = scene.cx * big, scene.cy * big
    box = (cx - half, cy - half, cx + half, cy + half)
    if scene.shape == "circle":
        draw.ellipse(box, fill=fill)
    elif scene.shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)], fill=fill)
    return image.resize((size, size), Image.Resampling.BOX)


def paint_open(rng: random.Random, size: int = SIZE) -> Image.Image:
    """A random scene in uniformly random RGB fill and background colours, outside any palette."""
    scene = random_scene(rng)
    fill, background = (tuple(rng.randrange(256) for _ in range(3)) for _ in range(2))
    return paint(scene, fill, background, size)


@dataclass(frozen=True)
class Verdict:
    color: str | None
    shape: str | None
    background: str | None

    def matches(self, color: str, shape: str, background: str) -> bool:
        return (self.color, self.shape, self.background) == (color, shape, background)


def _nearest(rgb: np.ndarray, palette: dict[str, tuple[int, int, int]], within: float | None = None) -> str | None:
    """The palette name nearest to ``rgb``; None when it is farther than ``within`` (RGB distance)."""
    dists = {n: float(np.linalg.norm(rgb - np.array(c, dtype=np.float32))) for n, c in palette.items()}
    name = min(dists, key=dists.get)
    return None if within is not None and dists[name] > within else name


def _ideal_masks(h: int, w: int) -> dict[str, np.ndarray]:
    """Each shape drawn to fill an h×w bounding box."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = (xs + 0.5) / w, (ys + 0.5) / h  # 0..1 across the box
    return {
        "circle": (u - 0.5) ** 2 + (v - 0.5) ** 2 <= 0.25,
        "square": np.ones((h, w), dtype=bool),
        "triangle": np.abs(u - 0.5) <= v / 2,
    }


def judge(image: Image.Image, palette: dict[str, tuple[int, int, int]] | None = None,
          tolerance: float | None = None) -> Verdict:
    """Read colour, shape and background of a toy-world image from its pixels.

    palette: the foreground colours to choose from (default: the world's six).
    tolerance: when given, a colour farther than this from every palette colour (RGB distance of the median pixel)
    reads as None, and a background farther than half of it; by default the nearest name always wins.
    """
    px = np.asarray(image.convert("RGB").resize((SIZE, SIZE)), dtype=np.float32)
    border = np.concatenate([px[0], px[-1], px[:, 0], px[:, -1]])
    bg_rgb = np.median(border, axis=0)
    background = _nearest(bg_rgb, BACKGROUNDS, None if tolerance is None else tolerance / 2)
    mask = np.linalg.norm(px - bg_rgb, axis=-1) > _FOREGROUND_DISTANCE
    if mask.sum() < 20:
        return Verdict(None, None, background)
    color = _nearest(np.median(px[mask], axis=0), palette or COLORS, tolerance)
    ys, xs = np.nonzero(mask)
    box = mask[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
    ious = {name: (box & ideal).sum() / (box | ideal).sum()
            for name, ideal in _ideal_masks(*box.shape).items()}
    return Verdict(color, max(ious, key=ious.get), background)
