"""Photo → anime trainer (seed 002): ViT encoder + AdaIN + CNN decoder, VGG19 content/style losses.

    python -m training.anime --content DIR --style DIR --output RUN_DIR [--epochs N] \\
        [--profile tiny|full|auto] [--resume latest|PATH] [--set key=value ...]
    accelerate launch -m training.anime ...      # multi-GPU, same flags

DIR is a flat image folder or an AvatarAnime split folder (``CelebA`` / ``AnimeFace`` with ``train/`` and
``val/``). Writes the run folder of DESIGN.md; the weights are ``final/model.safetensors``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from training.runs.cli import OneLineParser, UsageError, add_run_arguments, check_output, refuse
from training.anime.settings import AnimeSettingsError, parse_sets, resolve
from training.runs.threads import use_thread_policy

log = logging.getLogger("training.anime")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = OneLineParser(prog="python -m training.anime", description="Train the photo → anime style-transfer model.")
    p.add_argument("--content", required=True, type=Path, help="photos (flat folder, or with train/ and val/)")
    p.add_argument("--style", required=True, type=Path, help="anime images (flat folder, or with train/ and val/)")
    p.add_argument("--epochs", type=int, default=None)
    add_run_arguments(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    use_thread_policy()  # before anything imports torch (training/runs/threads.py)
    try:
        args = parse_args(argv)
        overrides = parse_sets(args.set)
        if args.epochs is not None:
            overrides["epochs"] = args.epochs
        settings = resolve(overrides)
        check_output(args.output)
    except (UsageError, AnimeSettingsError) as err:
        return refuse("training.anime", err)
    from training.anime.trainer import run

    return run(settings, args.content, args.style, args.output, args.profile, args.resume)


if __name__ == "__main__":
    sys.exit(main())
