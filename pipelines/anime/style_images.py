"""Draw the anime-like style images shipped in ``assets/anime-styles`` (nothing can be downloaded here).

    python -m pipelines.anime.style_images      # rewrites assets/anime-styles/*.png

Each is a flat-colour, black-outlined portrait in one palette: cel shading, large eyes with highlights,
a pastel background — the statistics (flat regions, hard edges, saturated colours) AdaIN transfers.
"""
from __future__ import annotations

import logging
import random
from pathlib import Path

from PIL import Image, ImageDraw

log = logging.getLogger(__name__)

SIZE = 256
STYLE_DIR = Path(__file__).resolve().parents[2] / "assets" / "anime-styles"
OUTLINE = (25, 20, 30)
PALETTES = {  # background, hair, hair shadow, skin, skin shadow, eyes
    "sakura": ((250, 214, 225), (236, 120, 160), (190, 80, 120), (255, 228, 210), (240, 190, 175), (90, 60, 160)),
    "ocean": ((200, 232, 250), (60, 110, 200), (35, 70, 150), (255, 232, 215), (235, 195, 180), (30, 140, 170)),
    "sunset": ((255, 220, 170), (240, 150, 40), (190, 95, 30), (255, 226, 205), (238, 185, 160), (200, 60, 40)),
    "forest": ((210, 236, 200), (70, 140, 80), (40, 95, 55), (250, 226, 205), (230, 190, 170), (120, 90, 40)),
    "night": ((60, 60, 110), (230, 230, 245), (170, 170, 200), (250, 225, 215), (215, 180, 180), (200, 40, 90)),
}


def draw(palette: tuple, seed: int) -> Image.Image:
    """One portrait: background, hair behind, face, fringe, eyes, mouth — all flat fills with outlines."""
    bg, hair, hair_dark, skin, skin_dark, eye = palette
    rng = random.Random(seed)
    image = Image.new("RGB", (SIZE, SIZE), bg)
    d = ImageDraw.Draw(image)
    for _ in range(6):  # soft background bokeh circles
        x, y, r = rng.randint(0, SIZE), rng.randint(0, SIZE), rng.randint(10, 30)
        d.ellipse((x - r, y - r, x + r, y + r), fill=tuple(min(255, c + 20) for c in bg))
    d.rounded_rectangle((40, 60, 216, 256), 60, fill=hair, outline=OUTLINE, width=3)  # hair behind the head
    d.ellipse((68, 62, 188, 206), fill=skin, outline=OUTLINE, width=3)  # face
    d.chord((68, 62, 188, 206), 30, 150, fill=skin_dark)  # cel-shaded jaw shadow
    d.ellipse((80, 70, 176, 196), fill=skin)
    d.pieslice((52, 30, 204, 150), 180, 360, fill=hair, outline=OUTLINE, width=3)  # fringe
    for x in range(70, 190, 24):  # fringe spikes
        d.polygon([(x, 85), (x + 24, 85), (x + 12, 118 + rng.randint(-6, 6))], fill=hair_dark, outline=OUTLINE)
    for cx in (104, 152):  # large eyes: white, iris, pupil, two highlights, heavy upper lash
        d.ellipse((cx - 17, 128, cx + 17, 170), fill=(255, 255, 255), outline=OUTLINE, width=2)
        d.ellipse((cx - 12, 134, cx + 12, 168), fill=eye)
        d.ellipse((cx - 6, 144, cx + 6, 162), fill=OUTLINE)
        d.ellipse((cx - 9, 138, cx - 2, 146), fill=(255, 255, 255))
        d.ellipse((cx + 3, 156, cx + 7, 160), fill=(255, 255, 255))
        d.line((cx - 19, 128, cx + 19, 126), fill=OUTLINE, width=4)
    d.arc((118, 176, 138, 190), 20, 160, fill=OUTLINE, width=2)  # small mouth
    d.ellipse((84, 168, 100, 176), fill=(250, 170, 170))  # blush
    d.ellipse((156, 168, 172, 176), fill=(250, 170, 170))
    return image


def style_images() -> list[Path]:
    """The style images shipped in ``assets/anime-styles`` (see ``python -m pipelines.anime.style_images``)."""
    return sorted(STYLE_DIR.glob("*.png"))


def write_all(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed, (name, palette) in enumerate(PALETTES.items()):
        path = folder / f"{name}.png"
        draw(palette, seed).save(path, optimize=True)
        paths.append(path)
    return paths


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)

    for p in write_all(STYLE_DIR):
        log.info("wrote %s", p)
