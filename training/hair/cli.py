"""Hair try-on training (seed 000): ``python -m training.hair STAGE ...``.

    python -m training.hair texture --data PREPARED --output RUN [--set key=value ...] [--resume latest]
    python -m training.hair segmenter --output assets/hair-segmenter-tiny [--steps N]   # the tiny segmenter

PREPARED is what ``python -m training.prepare hair`` writes. Each stage writes the run folder of DESIGN.md.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from training.hair.settings import HairSettingsError, SegmenterSettings, parse_sets, texture_settings
from training.runs.cli import OneLineParser, UsageError, add_run_arguments, check_output, refuse
from training.runs.threads import use_thread_policy

log = logging.getLogger("training.hair")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m training.hair", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="stage", required=True, metavar="texture|segmenter")
    texture = sub.add_parser("texture", help="stage 1: the texture encoder (autoencoder + SupConLoss)")
    texture.add_argument("--data", type=Path, required=True, help="a folder written by training.prepare hair")
    add_run_arguments(texture)
    segmenter = sub.add_parser("segmenter", help="the tiny profile's hair segmenter, trained on toy portraits")
    segmenter.add_argument("--output", type=Path, required=True, help="the model folder to write")
    segmenter.add_argument("--steps", type=int, default=SegmenterSettings.steps)
    segmenter.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    use_thread_policy()  # before anything imports torch (training/runs/threads.py)
    try:
        args = build_parser().parse_args(argv)
        if args.stage == "segmenter":
            if args.steps < 1:
                raise UsageError(f"--steps must be at least 1, not {args.steps}.")
            check_output(args.output)
            from training.hair.segmenter import train

            train(SegmenterSettings(steps=args.steps, seed=args.seed), args.output)
            return 0
        settings = texture_settings(parse_sets(args.set))
        if not (args.data / "metadata.jsonl").is_file():
            raise UsageError(f"--data {args.data} is not a prepared hair folder (no metadata.jsonl); make one with "
                             "python -m training.prepare hair.")
        check_output(args.output)
    except (UsageError, HairSettingsError) as err:
        return refuse("training.hair", err)
    from training.hair.texture import run

    return run(settings, args.data, args.output, args.resume)


if __name__ == "__main__":
    sys.exit(main())
