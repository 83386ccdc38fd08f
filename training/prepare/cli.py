"""Turn raw images into a training folder: ``python -m training.prepare fashion|ghibli|dreambooth|hair --help``.

Each command writes ``--out``: the images, ``metadata.jsonl`` (``file_name``, ``text``; what
``training.lora --data`` reads), ``report.json`` and ``report.md`` (what was kept, what was dropped and why).
The folder appears only when the run succeeds. Exit codes: 0 done, 1 no usable dataset, 2 bad flags.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pipelines.models.registry import RegistryError
from pipelines.models.runtime import check_writable
from training.runs.cli import OneLineParser, UsageError, add_profile_argument, refuse
from pipelines.images import DEFAULT_MAX_PIXELS
from training.prepare.checks import CheckSettings
from training.prepare.common import PrepareError
from training.prepare.fashion import FashionOptions, prepare_fashion
from training.prepare.ghibli import DEFAULT_STYLE_SUFFIX, GhibliOptions, prepare_ghibli
from training.prepare.hair import HairOptions, prepare_hair
from training.prepare.portraits import (DEFAULT_PROMPT, PortraitOptions, face_detector, prepare_dreambooth,
                                        runtime_faces)
from training.prepare.report import Report
from training.prepare.url_import import DownloadSettings

log = logging.getLogger("training.prepare")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="the folder to create (must not exist or be empty)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it already holds files")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="refuse larger images before decoding them (default %(default)s)")


def _check_flags(p: argparse.ArgumentParser) -> None:
    """The shared image checks' flags: the same names and defaults for fashion, ghibli and dreambooth."""
    checks = CheckSettings()
    p.add_argument("--min-size", type=int, default=checks.min_size, help="shorter side in pixels (default %(default)s)")
    p.add_argument("--max-aspect", type=float, default=checks.max_aspect,
                   help="longer/shorter side (default %(default)s)")
    p.add_argument("--min-sharpness", type=float, default=checks.min_sharpness,
                   help="mean squared Laplacian on the edges, at most 512 px (default %(default)s)")
    p.add_argument("--duplicate-tolerance", type=int, default=checks.duplicate_tolerance,
                   help="colour levels within which two layouts are near duplicates (default %(default)s)")
    p.add_argument("--drop-text", action="store_true", help="drop images with large text regions (else flagged)")
    p.add_argument("--text-threshold", type=float, default=checks.text_threshold,
                   help="fraction of the image covered by text that flags it (default %(default)s)")


def _checks(args: argparse.Namespace) -> dict:
    """The shared check settings from the flags ``_check_flags`` adds."""
    return dict(min_size=args.min_size, max_aspect=args.max_aspect, min_sharpness=args.min_sharpness,
                duplicate_tolerance=args.duplicate_tolerance, drop_text=args.drop_text,
                text_threshold=args.text_threshold)


def _models(p: argparse.ArgumentParser) -> None:
    add_profile_argument(p)
    p.add_argument("--model", action="append", default=[], metavar="ROLE=ID_OR_PATH",
                   help="use another model for a role, as in app.py (env: ATELIER_MODEL_<ROLE>)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m training.prepare", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="use_case", required=True, metavar="fashion|ghibli|dreambooth|hair")

    f = sub.add_parser("fashion", help="seed 001: captioned fashion set, filtered and sampled")
    f.add_argument("--images", type=Path, required=True)
    f.add_argument("--captions", type=Path, help="JSON mapping, JSON list, CSV or metadata.jsonl "
                   "(default: the one caption file in --images)")
    _common(f)
    _check_flags(f)
    f.add_argument("--min-caption", type=int, default=10, help="characters (default %(default)s)")
    f.add_argument("--sample", type=int, default=10_000, help="images to keep at random (default %(default)s)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--zip", action="store_true", help="also write OUT.zip beside the folder")

    g = sub.add_parser("ghibli", help="seed 003: style set from a folder, ZIP or URL list, deduplicated")
    source = g.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", type=Path)
    source.add_argument("--zip", type=Path)
    source.add_argument("--urls", type=Path, help="a text file with one image URL per line")
    g.add_argument("--captions", type=Path, help="JSON mapping, JSON list, CSV or metadata.jsonl (default: the one "
                   "caption file in the images, if any; a .txt beside an image also counts)")
    _common(g)
    _check_flags(g)
    g.add_argument("--size", type=int, default=512, help="square output size (default %(default)s)")
    g.add_argument("--caption", action="store_true",
                   help="caption the images you did not caption with BLIP (the captioner role)")
    g.add_argument("--style-suffix", default=DEFAULT_STYLE_SUFFIX, help="appended to every caption")
    g.add_argument("--deny-words", type=Path, help="words or phrases to strip from captions, one per line")
    g.add_argument("--timeout", type=float, default=DownloadSettings.timeout, help="seconds per download")
    g.add_argument("--retries", type=int, default=DownloadSettings.retries)
    g.add_argument("--delay", type=float, default=DownloadSettings.delay,
                   help="seconds between requests to one host (default %(default)s)")
    g.add_argument("--max-download-mb", type=float, default=DownloadSettings.max_bytes / 1024**2)
    _models(g)

    d = sub.add_parser("dreambooth", help="seed 004: 5-20 portrait photos, checked for one face each")
    d.add_argument("--images", type=Path, required=True)
    _common(d)
    _check_flags(d)
    d.add_argument("--crop-face", action="store_true", help="crop a square around the face")
    d.add_argument("--size", type=int, default=512, help="output size in pixels (default %(default)s)")
    d.add_argument("--prompt", default=DEFAULT_PROMPT, help="the caption of every photo (default %(default)r)")
    _models(d)

    h = sub.add_parser("hair", help="seed 000: K-Hairstyle images + JSON labels → the hair try-on subsets")
    h.add_argument("--images", type=Path, required=True)
    h.add_argument("--labels", type=Path, required=True, help="the JSON labels (a tree mirroring --images)")
    _common(h)
    h.add_argument("--dilate", type=int, default=0, help="grow the hair mask by this many pixels (0 = ~1%% of "
                   "the image)")
    h.add_argument("--style-size", type=int, default=224, help="side of the hair crop (default %(default)s)")
    h.add_argument("--patch-size", type=int, default=0, help="hair patch side (0 = 128, scaled for small images)")
    h.add_argument("--patch-stride", type=int, default=0, help="(0 = half the patch)")
    h.add_argument("--min-patch-hair", type=float, default=0.85, help="hair share of a patch (default %(default)s)")
    h.add_argument("--workers", type=int, default=0, help="processes (0 = one per physical core)")
    _models(h)
    return parser


def options_from(args: argparse.Namespace) -> FashionOptions | GhibliOptions | PortraitOptions | HairOptions:
    """The use case's options, checked (a bad value is a UsageError)."""
    shared = dict(out=args.out, overwrite=args.overwrite, max_pixels=args.max_pixels)
    if args.use_case == "fashion":
        options = FashionOptions(images=args.images, captions=args.captions, min_caption=args.min_caption,
                                 sample=args.sample, seed=args.seed, zip=args.zip, **shared, **_checks(args))
    elif args.use_case == "ghibli":
        download = DownloadSettings(timeout=args.timeout, retries=args.retries, delay=args.delay,
                                    max_bytes=int(args.max_download_mb * 1024**2))
        options = GhibliOptions(images=args.images, zip=args.zip, urls=args.urls, captions=args.captions,
                                size=args.size, caption=args.caption, style_suffix=args.style_suffix,
                                deny_words=args.deny_words, download=download, **shared, **_checks(args))
    elif args.use_case == "hair":
        options = HairOptions(images=args.images, labels_dir=args.labels, dilate=args.dilate,
                              style_size=args.style_size, patch_size=args.patch_size, patch_stride=args.patch_stride,
                              min_patch_hair=args.min_patch_hair, workers=args.workers, **shared)
    else:
        options = PortraitOptions(images=args.images, crop_face=args.crop_face, size=args.size, prompt=args.prompt,
                                  **shared, **_checks(args))
    try:
        options.check()
    except PrepareError as err:
        raise UsageError(str(err)) from None
    # --out itself appears only when the run succeeds, so probe the folder it goes into
    check_writable(Path(args.out).expanduser().resolve().parent, "folder for --out", "choose another --out.",
                   UsageError)
    return options


def make_runtime(args: argparse.Namespace):
    """The model runtime for the roles a command needs (captioner, faces), as app.py builds it."""
    from pipelines.models.profile import choose_profile
    from pipelines.models.registry import env_overrides, parse_overrides
    from pipelines.models.runtime import Runtime, check_cache_dir, default_cache_dir

    overrides = {**env_overrides(), **parse_overrides(args.model)}
    return Runtime(profile=choose_profile(args.profile), overrides=overrides,
                   cache_dir=check_cache_dir(default_cache_dir()))


def run(args: argparse.Namespace) -> Report:
    """Run the command ``args`` describes."""
    options = options_from(args)
    if isinstance(options, FashionOptions):
        return prepare_fashion(options)
    if isinstance(options, GhibliOptions) and not options.caption:
        return prepare_ghibli(options)
    from pipelines.captioning import runtime_captioner
    from pipelines.models.loaders import ModelLoadError

    runtime = make_runtime(args)
    log.info("models: %s profile (%s)", runtime.profile.name, runtime.profile.reason)
    try:
        if isinstance(options, GhibliOptions):
            return prepare_ghibli(options, runtime_captioner(runtime))
        if isinstance(options, HairOptions):
            return prepare_hair(options, face_detector(runtime), runtime_faces(runtime))
        return prepare_dreambooth(options, face_detector(runtime))
    except ModelLoadError as err:  # already one sentence that says what to do
        raise PrepareError(str(err)) from None


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args = build_parser().parse_args(argv)
        report = run(args)
    except (UsageError, RegistryError) as err:
        return refuse("prepare", err)
    except PrepareError as err:
        print(f"prepare: {err}", file=sys.stderr)
        return 1
    print(report.summary())
    print(f"Wrote {Path(args.out).expanduser().resolve()} (see report.md there).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
