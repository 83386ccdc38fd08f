"""Make the tiny profile's default photo → anime model: ``python -m training.anime.default``.

The tiny profile has no photos and no pretrained ViT, so its "photos" are procedural images at 224 px: colour
gradients, smooth noise at several scales, overlapping shapes and lines, toy scenes in open colours and toy
portraits, so that the decoder learns to redraw structure in general and keeps a real photo's edges (a build on toy
scenes alone turned photos into a grid-textured mush). Styled after the shipped style images, on the tiny
(randomly initialised, fixed-seed) ViT. The weights go to ``assets/anime-tiny/model.safetensors`` with the run's
report beside them; ``bench/anime_structure.py`` measures what a build keeps of real photos.
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pipelines import toy_world
from pipelines.hair import toy_hair
from pipelines.anime.model import IMAGE_SIZE, MODEL_FILE
from pipelines.models.registry import ANIME_TINY
from pipelines.anime.style_images import STYLE_DIR

log = logging.getLogger("training.anime.default")

# lambda_tv 5 and lambda_style 0.3 keep a photo's shapes (SSIM 0.40 on scikit-image's photos; without them 0.12,
# a high-frequency grid of the style's texture over everything; bench/anime_structure.py)
SETTINGS = {"epochs": "6", "learning_rate": "1e-3", "batch_size": "8", "checkpoint_every": "6", "seed": "0",
            "lambda_tv": "5", "lambda_style": "0.3"}


def _colour(rng: random.Random) -> np.ndarray:
    return np.array([rng.randrange(256) for _ in range(3)], np.float64)


def gradient(rng: random.Random, size: int) -> Image.Image:
    """A linear or radial blend between two random colours."""
    ys, xs = np.mgrid[0:size, 0:size] / (size - 1)
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * np.pi)
        t = (np.cos(angle) * (xs - 0.5) + np.sin(angle) * (ys - 0.5)) / np.sqrt(0.5) + 0.5
    else:
        t = np.hypot(xs - rng.random(), ys - rng.random()) / np.sqrt(2)
    t = np.clip(t, 0, 1)[..., None]
    return Image.fromarray(((1 - t) * _colour(rng) + t * _colour(rng)).astype(np.uint8))


def smooth_noise(rng: random.Random, size: int) -> Image.Image:
    """Random colour noise upsampled from a coarse grid (4 to 56 cells a side): blobs, clouds, fine grain."""
    cells = rng.choice((4, 8, 16, 32, 56))
    grid = np.random.default_rng(rng.randrange(2**32)).integers(0, 256, (cells, cells, 3), dtype=np.uint8)
    return Image.fromarray(grid).resize((size, size), Image.Resampling.BICUBIC)


def shapes(rng: random.Random, size: int) -> Image.Image:
    """Overlapping rectangles, ellipses and lines of random colours and sizes on a random background."""
    image = Image.new("RGB", (size, size), tuple(int(c) for c in _colour(rng)))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(3, 12)):
        x0, y0 = rng.uniform(-0.2, 1) * size, rng.uniform(-0.2, 1) * size
        box = (x0, y0, x0 + rng.uniform(0.05, 0.6) * size, y0 + rng.uniform(0.05, 0.6) * size)
        fill = tuple(int(c) for c in _colour(rng))
        kind = rng.choice(("rectangle", "ellipse", "line"))
        if kind == "line":
            draw.line(box, fill=fill, width=rng.randint(1, 8))
        else:
            getattr(draw, kind)(box, fill=fill)
    return image


def toy_scene(rng: random.Random, size: int) -> Image.Image:
    return toy_world.paint_open(rng, size=size)


def toy_portrait(rng: random.Random, size: int) -> Image.Image:
    return toy_hair.render(toy_hair.random_portrait(rng)).resize((size, size), Image.Resampling.BICUBIC)


KINDS = (gradient, smooth_noise, shapes, toy_scene, toy_portrait)


def draw_photos(folder: Path, n: int, seed: int) -> Path:
    """n procedural 224 px PNGs, the kinds in turn."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        KINDS[i % len(KINDS)](rng, IMAGE_SIZE).save(folder / f"{i:04d}.png")
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=480)
    parser.add_argument("--output", type=Path, default=ANIME_TINY)
    args = parser.parse_args(argv)
    from training.anime.cli import main as train

    with tempfile.TemporaryDirectory(prefix="atelier-anime-default-") as tmp:
        photos = draw_photos(Path(tmp) / "photos", args.photos, seed=0)
        run = Path(tmp) / "run"
        sets = [arg for key, value in SETTINGS.items() for arg in ("--set", f"{key}={value}")]
        code = train(["--content", str(photos), "--style", str(STYLE_DIR), "--output", str(run),
                      "--profile", "tiny", *sets])
        if code:
            return code
        args.output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run / "final" / MODEL_FILE, args.output)
        report = json.loads((run / "report.json").read_text())
        report["made_by"] = f"python -m training.anime.default --photos {args.photos}"
        (args.output.parent / "report.json").write_text(json.dumps(report, indent=2))
        shutil.copyfile(run / "loss.png", args.output.parent / "loss.png")
    log.info("wrote %s", args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
