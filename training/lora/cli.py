"""One LoRA trainer for fashion, Ghibli style and DreamBooth portraits (seeds 001, 003, 004).

    python -m training.lora --preset {fashion,ghibli,dreambooth} --data DIR --output RUN_DIR \\
        [--profile tiny|full|auto] [--max-steps N] [--resume latest|PATH] [--set key=value ...]
    accelerate launch -m training.lora ...     # multi-GPU / multi-node / multi-process CPU, same flags

Writes the run folder of DESIGN.md. Only rank 0 writes; every rank computes the same schedule.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from pipelines.models.profile import choose_profile
from pipelines.models.registry import RegistryError
from training.runs.cli import OneLineParser, UsageError, add_run_arguments, check_output, refuse
from training.lora.settings import SettingsError, parse_sets, resolve_settings
from training.runs.threads import use_thread_policy

log = logging.getLogger("training.lora")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = OneLineParser(prog="python -m training.lora", description="Train a LoRA on Stable Diffusion from a preset.")
    p.add_argument("--preset", required=True, help="fashion, ghibli or dreambooth")
    p.add_argument("--data", required=True, type=Path, help="captioned images (or instance photos for dreambooth)")
    p.add_argument("--max-steps", type=int, default=None)
    add_run_arguments(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    use_thread_policy()  # before anything imports torch (training/runs/threads.py)
    try:
        args = parse_args(argv)
        overrides = parse_sets(args.set)
        if args.max_steps is not None:
            overrides["max_steps"] = args.max_steps
        profile = choose_profile(args.profile).name  # the preset's values for it, e.g. toy prompts in tiny
        settings = resolve_settings(args.preset, overrides, profile)
        check_output(args.output)
    except (UsageError, SettingsError, RegistryError) as err:
        return refuse("training.lora", err)
    from training.lora.trainer import run

    return run(settings, args.data, args.output, profile, args.resume)


if __name__ == "__main__":
    sys.exit(main())
