"""Make the tiny profile's default photo → anime model: ``python -m training.anime.default``.

The tiny profile has no photos and no pretrained ViT, so its "photos" are toy-world scenes in open colours
drawn at 224 px, styled after the shipped style images, on the tiny (randomly initialised, fixed-seed) ViT.
The weights go to ``assets/anime-tiny/model.safetensors`` with the run's report beside them.
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

from pipelines import toy_world
from pipelines.anime.model import IMAGE_SIZE, MODEL_FILE
from pipelines.models.registry import ANIME_TINY
from pipelines.anime.style_images import STYLE_DIR

log = logging.getLogger("training.anime.default")

SETTINGS = {"epochs": "6", "learning_rate": "1e-3", "batch_size": "8", "checkpoint_every": "6", "seed": "0"}


def draw_photos(folder: Path, n: int, seed: int) -> Path:
    """n toy scenes with random RGB shape and background colours, as 224 px PNGs."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        toy_world.paint_open(rng, size=IMAGE_SIZE).save(folder / f"{i:04d}.png")
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=320)
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
