"""Hair try-on training (seed 000): ``python -m training.hair STAGE ...``.

    python -m training.hair texture --data PREPARED --output RUN [--set key=value ...] [--resume latest]
    python -m training.hair inpaint --data PREPARED --output RUN [--profile tiny] [--set key=value ...] [--resume latest]
    python -m training.hair evaluate --run RUN --data HELDOUT [--export NAME] [--force]
    python -m training.hair all --images DIR --labels DIR --output RUN [--from STAGE] [--export NAME]
    python -m training.hair segmenter --output assets/hair-segmenter-tiny [--steps N]   # the tiny segmenter
    python -m training.hair toy [--output assets/toy-hair] [--unet-steps N ...]  # the tiny inpainting base

PREPARED is what ``python -m training.prepare hair`` writes. Each stage writes the run folder of DESIGN.md.
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import asdict
from pathlib import Path

from training.hair.settings import (EvalOptions, Gate, HairSettingsError, HairToySettings, SegmenterSettings,
                                    inpaint_settings, parse_sets, texture_settings)
from training.hair.all_stages import STAGES
from training.runs.cli import (OneLineParser, UsageError, add_profile_argument, add_run_arguments, check_output,
                               refuse)
from training.runs.folder import NonFiniteLoss
from training.runs.threads import use_thread_policy

log = logging.getLogger("training.hair")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m training.hair", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="stage", required=True, metavar="all|texture|inpaint|evaluate|segmenter|toy")
    texture = sub.add_parser("texture", help="stage 1: the texture encoder (autoencoder + SupConLoss)")
    texture.add_argument("--data", type=Path, required=True, help="a folder written by training.prepare hair")
    add_run_arguments(texture)
    inpaint = sub.add_parser("inpaint", help="stage 2: LoRA + identity/style adapters on the SDXL inpainting UNet")
    inpaint.add_argument("--data", type=Path, required=True, help="a folder written by training.prepare hair")
    inpaint.add_argument("--texture", type=Path, metavar="STAGE1_RUN",
                         help="a texture run whose embedding joins the style tokens")
    add_run_arguments(inpaint)
    evaluate = sub.add_parser("evaluate", help="score a stage-2 run on held-out portraits; export it past the gate")
    evaluate.add_argument("--run", type=Path, required=True, help="a finished training.hair inpaint run folder")
    evaluate.add_argument("--data", type=Path, help="portraits to score (training.prepare hair); default: the run's "
                          "held-out ones")
    evaluate.add_argument("--export", metavar="NAME", help="write models/hair/NAME.safetensors when the gate passes")
    evaluate.add_argument("--force", action="store_true", help="export even when the gate fails, marked as failing")
    add_profile_argument(evaluate)
    defaults, gate = EvalOptions(), Gate()
    evaluate.add_argument("--steps", type=int, default=defaults.steps, help="inference steps per portrait")
    evaluate.add_argument("--guidance", type=float, default=defaults.guidance)
    evaluate.add_argument("--limit", type=int, default=0, help="score only the first N portraits (0 = all)")
    evaluate.add_argument("--min-identity", type=float, default=gate.min_identity)
    evaluate.add_argument("--max-lpips", type=float, default=gate.max_lpips)
    every = sub.add_parser("all", help="prepare, texture, inpaint, evaluate (and export) in one re-runnable command")
    every.add_argument("--images", type=Path, required=True, help="K-Hairstyle images")
    every.add_argument("--labels", type=Path, required=True, help="their JSON labels (a tree mirroring --images)")
    every.add_argument("--output", type=Path, required=True, help="the folder every stage writes under")
    every.add_argument("--from", dest="start", choices=STAGES, help="run this stage and the later ones again")
    every.add_argument("--export", metavar="NAME", help="export past the gate as models/hair/NAME.safetensors")
    every.add_argument("--force", action="store_true", help="export even when the gate fails, marked as failing")
    every.add_argument("--resume", choices=["latest"], help="accepted for the launcher: a re-run resumes anyway")
    every.add_argument("--set", action="append", default=[], metavar="STAGE.KEY=VALUE",
                       help="a setting of the texture or inpaint stage, e.g. inpaint.max_steps=500")
    add_profile_argument(every)
    segmenter = sub.add_parser("segmenter", help="the tiny profile's hair segmenter, trained on toy portraits")
    segmenter.add_argument("--output", type=Path, required=True, help="the model folder to write")
    segmenter.add_argument("--steps", type=int, default=SegmenterSettings.steps)
    segmenter.add_argument("--seed", type=int, default=0)
    toy = sub.add_parser("toy", help="the tiny profile's inpainting base, trained on toy portraits")
    for name, value in asdict(HairToySettings()).items():
        kind = {"bool": lambda v: v.lower() in ("1", "true", "yes")}.get(type(value).__name__, type(value))
        toy.add_argument(f"--{name.replace('_', '-')}", type=kind, default=value)
    toy.add_argument("--tryon-only", action="store_true", help="run only stage 2 on the base already in --output")
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
        if args.stage == "toy":
            return _train_toy(args)
        if args.stage == "evaluate":
            return _evaluate(args)
        if args.stage == "all":
            return _all(args)
        if args.stage == "inpaint":
            from pipelines.models.profile import choose_profile

            profile = choose_profile(args.profile).name
            settings = inpaint_settings(parse_sets(args.set), profile)
        else:
            settings = texture_settings(parse_sets(args.set))
        check_prepared(args.data)
        check_output(args.output)
    except (UsageError, HairSettingsError) as err:
        return refuse("training.hair", err)
    if args.stage == "inpaint":
        from training.hair.inpaint import run as run_inpaint

        return run_inpaint(settings, args.data, args.output, profile, args.resume, args.texture)
    from training.hair.texture import run

    return run(settings, args.data, args.output, args.resume)


def check_prepared(data: Path, flag: str = "--data") -> Path:
    if not (data / "metadata.jsonl").is_file():
        raise UsageError(f"{flag} {data} is not a prepared hair folder (no metadata.jsonl); make one with "
                         "python -m training.prepare hair.")
    return data


def _evaluate(args: argparse.Namespace) -> int:
    """Score, then export when asked; every refusal (no final model, gate failed, bad name) is one sentence."""
    if args.steps < 1 or args.limit < 0:
        raise UsageError("--steps must be at least 1 and --limit 0 or more.")
    if args.data is not None:
        check_prepared(args.data)
    from pipelines.hair.model import HairModelError
    from pipelines.models.profile import choose_profile
    from training.hair.evaluate import evaluate, export
    from training.hair.texture import HairDataError

    options = EvalOptions(steps=args.steps, guidance=args.guidance, limit=args.limit)
    try:
        report = evaluate(args.run, args.data, choose_profile(args.profile).name, options,
                          Gate(args.min_identity, args.max_lpips))
        if args.export:
            export(args.run, report, args.export, args.force)
    except (HairDataError, HairModelError) as err:
        return refuse("training.hair", err)
    return 0


def _all(args: argparse.Namespace) -> int:
    sets: dict[str, list[str]] = {}
    for item in args.set:
        stage, dot, rest = item.partition(".")
        if not dot or stage not in ("texture", "inpaint") or "=" not in rest:
            raise UsageError(f"--set {item!r} is not STAGE.KEY=VALUE with STAGE texture or inpaint.")
        sets.setdefault(stage, []).append(rest)
    for flag, folder in (("--images", args.images), ("--labels", args.labels)):
        if not folder.is_dir():
            raise UsageError(f"{flag} {folder} is not a folder.")
    check_output(args.output)
    from training.hair.all_stages import run_all

    return run_all(args.images, args.labels, args.output, args.profile, args.start, sets, args.export, args.force)


def _train_toy(args: argparse.Namespace) -> int:
    values = {name: getattr(args, name) for name in asdict(HairToySettings())}
    bad = [name for name, value in values.items() if isinstance(value, (int, float)) and not isinstance(value, bool)
           and value <= 0 and name not in ("seed", "outside_weight", "caption_dropout", "adapter_steps", "decoder_steps")]
    if bad:
        raise UsageError(f"--{bad[0].replace('_', '-')} must be positive, not {values[bad[0]]}.")
    s = HairToySettings(**values)
    check_output(Path(s.output))
    if args.tryon_only and not (Path(s.output) / "model_index.json").is_file():
        raise UsageError(f"--tryon-only: {s.output} holds no toy hair base (no model_index.json); train it first.")
    from training.hair.toy import train, tryon_only

    try:
        (tryon_only if args.tryon_only else train)(s)
    except NonFiniteLoss as err:
        log.error("%s", err)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
