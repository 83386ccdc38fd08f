"""The toy hair world of the tiny profile (DESIGN.md): 64×64 portraits with K-Hairstyle-form labels, and a judge
that reads a portrait's hair colour and texture back from pixels inside a mask.

A face is a skin ellipse with two eyes and a mouth, drawn over a hair cap that runs from above the head down to
the length (short: eye level, bob: ~85 % down the face, long: the bottom edge). Hair is one of six colours in a
texture: straight = vertical stripes of period 6 px, curly = a checker of 3-px cells (62 % and full brightness).
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image

SIZE = 64
BACKGROUNDS = {"white": (245, 245, 245), "gray": (128, 128, 128)}
SKINS = {"light": (241, 194, 167), "tan": (198, 134, 96), "dark": (141, 85, 54)}
EYE = (25, 20, 20)
# K-Hairstyle's Korean value → (English, RGB): the label carries the Korean, prompts the English.
COLORS = {"블랙": ("black", (30, 28, 28)), "자연갈색": ("natural brown", (115, 70, 40)),
          "황갈색": ("golden brown", (205, 155, 70)), "적갈색": ("reddish brown", (155, 50, 35)),
          "애쉬브라운": ("ash brown", (150, 142, 132)), "핑크브라운": ("pink brown", (210, 120, 145))}
CURLS = {"생머리": "straight", "곱슬": "curly"}
LENGTHS = {"여숏": "short", "단발": "bob length", "장발": "long"}
DARK_SHADE = 0.62  # the darker stripe or checker cell, as a fraction of the colour
NONE_WORDS = ("기타", "없음", "해당없음")


@dataclass(frozen=True)
class Portrait:
    """One toy portrait's layout; colours, curl and length hold K-Hairstyle's Korean values."""
    background: str
    skin: str
    cx: float
    cy: float
    ax: float  # face semi-axes
    ay: float
    eye_dx: float
    color: str
    curl: str
    length: str
    hair_top: float  # how far the hair rises above the face
    hair_side: float  # how much wider than the face it is on each side

    def with_hair(self, color: str | None = None, curl: str | None = None, length: str | None = None) -> "Portrait":
        """The same person with other hair."""
        from dataclasses import replace

        return replace(self, color=color or self.color, curl=curl or self.curl, length=length or self.length)


def random_portrait(rng: random.Random, **fixed: str) -> Portrait:
    """Draw a portrait; ``fixed`` may set background, skin, color, curl or length."""
    def pick(name: str, options) -> str:
        return fixed.get(name) or rng.choice(list(options))
    return Portrait(background=pick("background", BACKGROUNDS), skin=pick("skin", SKINS),
                    cx=32 + rng.uniform(-3, 3), cy=36 + rng.uniform(-2, 2), ax=rng.uniform(11, 14),
                    ay=rng.uniform(14, 16.5), eye_dx=rng.uniform(4, 6), color=pick("color", COLORS),
                    curl=pick("curl", CURLS), length=pick("length", LENGTHS), hair_top=rng.uniform(4, 6),
                    hair_side=rng.uniform(3.5, 5))


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    return xs + 0.5, ys + 0.5


def face_mask(p: Portrait, size: int = SIZE) -> np.ndarray:
    """The face ellipse as a boolean mask."""
    xs, ys = _grid(size)
    return ((xs - p.cx) / p.ax) ** 2 + ((ys - p.cy) / p.ay) ** 2 <= 1


def hair_mask(p: Portrait, size: int = SIZE) -> np.ndarray:
    """The visible hair (the cap minus the face) as a boolean mask."""
    xs, ys = _grid(size)
    half_width, bottom = p.ax + p.hair_side, _hair_bottom(p, size)
    dome = ((xs - p.cx) / half_width) ** 2 + ((ys - p.cy) / (p.ay + p.hair_top)) ** 2 <= 1
    sides = (np.abs(xs - p.cx) <= half_width) & (ys >= p.cy)
    return (dome | sides) & (ys <= bottom) & ~face_mask(p, size)


def _hair_bottom(p: Portrait, size: int) -> float:
    return {"여숏": p.cy - 3, "단발": p.cy + 0.7 * p.ay}.get(p.length, float(size))


def texture(rgb: tuple[int, int, int], curl: str, size: int = SIZE) -> np.ndarray:
    """The hair colour in its texture over the whole image (H×W×3 floats)."""
    xs, ys = np.mgrid[0:size, 0:size][::-1]
    bright = (xs // 3) % 2 == 1 if curl != "곱슬" else ((xs // 3) + (ys // 3)) % 2 == 1
    shade = np.where(bright, 1.0, DARK_SHADE)[..., None]
    return shade * np.asarray(rgb, dtype=np.float32)


def render(p: Portrait, size: int = SIZE) -> Image.Image:
    """The portrait as an RGB image."""
    image = np.empty((size, size, 3), np.float32)
    image[:] = BACKGROUNDS[p.background]
    hair = hair_mask(p, size)
    image[hair] = texture(COLORS[p.color][1], p.curl, size)[hair]
    image[face_mask(p, size)] = SKINS[p.skin]
    xs, ys = _grid(size)
    for side in (-1, 1):
        eye = (xs - (p.cx + side * p.eye_dx)) ** 2 + (ys - (p.cy - 3)) ** 2 <= 1.5 ** 2
        image[eye] = EYE
    mouth = (np.abs(ys - (p.cy + 7)) <= 0.5) & (np.abs(xs - p.cx) <= p.ax * 0.3)
    image[mouth] = EYE
    return Image.fromarray(image.round().clip(0, 255).astype(np.uint8))


def outline(mask: np.ndarray) -> list[list[dict[str, float]]]:
    """The mask's contours as K-Hairstyle's ``polygon1``: rings of {"x", "y"}, holes (a face framed by long hair)
    included, so filling them even-odd (``cv2.fillPoly``) gives the mask back."""
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    return [[{"x": float(x), "y": float(y)} for x, y in c[:, 0, :]] for c in contours if len(c) >= 3]


def label(p: Portrait, image_name: str, rng: random.Random | None = None) -> dict:
    """The portrait's label in K-Hairstyle form (``polygon1`` as a JSON string, attributes in Korean)."""
    rng = rng or random.Random(0)
    return {"filename": image_name, "width": SIZE, "height": SIZE,
            "polygon1": json.dumps(outline(hair_mask(p))), "color": p.color, "curl": p.curl,
            "length": p.length, "basestyle": rng.choice(NONE_WORDS), "bang": "없음", "side": "해당없음",
            "partition": "가르마없음", "hair-width": "보통", "sex": "여", "natural-curl": p.curl}


@dataclass(frozen=True)
class HairVerdict:
    color: str  # the Korean value of the nearest hair colour
    curl: str  # 생머리 or 곱슬

    def matches(self, color: str | None = None, curl: str | None = None) -> bool:
        return (color is None or self.color == color) and (curl is None or self.curl == curl)


def judge(image: Image.Image, mask: np.ndarray) -> HairVerdict:
    """The hair's colour (mean of the brighter half of the masked pixels, nearest of the six) and texture
    (straight when a pixel matches the one 3 px below it, as stripes do and a checker does not)."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    mask = np.asarray(mask, bool)
    values = pixels[mask]
    if len(values) < 8:
        raise ValueError("The hair mask is (almost) empty; nothing to judge.")
    bright = values[np.argsort(values.sum(1))[len(values) // 2:]].mean(0)
    color = min(COLORS, key=lambda k: float(((np.asarray(COLORS[k][1]) - bright) ** 2).sum()))
    below = mask[:-3] & mask[3:]
    same = np.abs(pixels[:-3].sum(-1) - pixels[3:].sum(-1))[below] < 0.2 * bright.sum()
    return HairVerdict(color=color, curl="생머리" if same.mean() > 0.5 else "곱슬")


# L1 distance (0-765) to a skin colour that still counts as skin: a VAE's round trip (a face before blending) moves
# colours by 15-30; the nearest hair colour to a skin is 54 away (natural brown vs dark skin).
SKIN_TOLERANCE = 40


def face_identity(image: Image.Image) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """What the toy world offers where a face model sees nothing: the skin ellipse's box and a unit vector of
    the person's skin colour, face size and eye spacing (None when no toy face is there)."""
    import cv2

    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    distance = np.min([np.abs(pixels - np.asarray(c)).sum(-1) for c in SKINS.values()], axis=0)
    count, labels, stats, _ = cv2.connectedComponentsWithStats((distance < SKIN_TOLERANCE).astype(np.uint8))
    if count < 2:
        return None
    blob = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h, area = (int(v) for v in stats[blob])
    if area < 100:
        return None
    face = (labels == blob).astype(np.uint8)
    skin = pixels[face > 0].mean(0) / 255
    contours, _ = cv2.findContours(face, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = cv2.drawContours(np.zeros_like(face), contours, -1, 1, thickness=-1)  # the eyes are holes in the skin
    holes = (filled > 0) & (face == 0)
    holes[y + h // 2:] = False  # the mouth is in the lower half
    eyes = np.nonzero(holes.any(0))[0]
    spread = float(eyes.max() - eyes.min()) if len(eyes) else 0.0
    vector = np.array([*(skin - 0.5), (w - 25) / 6, (h - 31) / 5, (spread - 10) / 4], np.float32)
    return (x, y, w, h), vector / (np.linalg.norm(vector) + 1e-8)


def write_khairstyle(images: "Path", labels: "Path", count: int, seed: int = 0, prefix: str = "TOY",
                     **fixed: str) -> list[Portrait]:
    """``count`` toy portraits as a K-Hairstyle folder pair: ``images/<group>/<PREFIX><n>-<k>.jpg`` and labels in
    a mirrored tree, half named ``<PREFIX><n>_<k>.json`` and half ``<PREFIX><n>-<k>.json``; returns the portraits."""
    from pathlib import Path

    rng = random.Random(seed)
    portraits = []
    for i in range(count):
        p = random_portrait(rng, **fixed)
        group = f"g{i % 3}"
        stem = f"{prefix}{i // 10:04d}-{i % 10:03d}"
        label_stem = stem.replace("-", "_") if i % 2 else stem
        (Path(images) / group).mkdir(parents=True, exist_ok=True)
        (Path(labels) / group).mkdir(parents=True, exist_ok=True)
        render(p).save(Path(images) / group / f"{stem}.jpg", quality=95, subsampling=0)  # 4:4:4 keeps 3-px stripes
        (Path(labels) / group / f"{label_stem}.json").write_text(
            json.dumps(label(p, f"{stem}.jpg", rng), ensure_ascii=False), encoding="utf-8")
        portraits.append(p)
    return portraits


def prompt(p: Portrait) -> str:
    """The English prompt ``training.prepare hair`` writes for this portrait's label."""
    from pipelines.hair.vocabulary import load

    return load().prompt({"length": p.length, "hair-width": "보통", "color": p.color, "curl": p.curl})[0]
