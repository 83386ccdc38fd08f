"""Seed 001: a captioned fashion set, filtered and sampled into a training folder.

Captions come from a JSON mapping, a JSON list, a CSV or metadata.jsonl. An image is kept when it opens as
RGB, is at least ``min_size`` on its shorter side, has a caption of ``min_caption`` characters, is sharp
enough and not too elongated; then a seeded random sample of ``sample`` images is written with
``metadata.jsonl`` and ``fashion_data.csv``.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from training.prepare import captions_io
from training.prepare.captions_io import Captions, CaptionFileError
from pipelines.images import (DEFAULT_MAX_PIXELS, DEFAULT_MIN_SHARPNESS, ImageProblem, aspect_ratio, open_image,
                                   sharpness)
from training.prepare.common import (PrepareError, PrepareOptions, Source, check_separate, copy_untouched,
                                     encode_image, list_sources, nothing_left, record_kept, staged_output, zip_folder)
from training.prepare.report import Report

log = logging.getLogger(__name__)

DEFAULT_MAX_ASPECT = 2.5  # a 2:3 portrait shot is 1.5; beyond 2.5 the centre crop loses most of the garment


@dataclass
class FashionOptions(PrepareOptions):
    images: Path
    out: Path
    captions: Path | None = None  # None: the one caption file at the top of ``images``
    min_size: int = 256
    min_caption: int = 10
    sample: int = 10_000
    seed: int = 0
    min_sharpness: float = DEFAULT_MIN_SHARPNESS
    max_aspect: float = DEFAULT_MAX_ASPECT
    zip: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    overwrite: bool = False

    def check(self) -> None:
        """Refuse impossible settings and a missing image folder with one sentence."""
        if not Path(self.images).is_dir():
            raise PrepareError(f"The image folder {self.images} does not exist or is not a folder.")
        for option, low in (("min_size", 1), ("min_caption", 0), ("sample", 1), ("max_aspect", 1)):
            self.check_range(option, low)


@dataclass(frozen=True)
class Candidate:
    source: Source
    caption: str
    width: int
    height: int
    sharpness: float
    format: str  # the file's format and whether its pixels were used as they are: can it be copied?
    untouched: bool


def prepare_fashion(options: FashionOptions) -> Report:
    """Filter, sample and write the fashion set to ``options.out``; returns the report (also written there)."""
    options.check()
    check_separate(options.images, options.out)
    report = Report("fashion", settings=options.report_settings())
    caption_file, captions = _read_caption_file(options)
    for warning in captions.warnings:
        report.warn(caption_file.name, "caption file", warning)
    pairs = match_captions(captions, list_sources(options.images, report), report)
    with staged_output(options.out, options.overwrite) as stage:
        candidates = [c for c in (_check(s, text, options, report) for s, text in tqdm(pairs, desc="check")) if c]
        chosen = _sample(candidates, options, report)
        if not chosen:
            raise nothing_left(report)
        rows = []
        for c in tqdm(chosen, desc="write"):
            name = (copy_untouched(c.source, c.format, c.untouched, stage)
                    or encode_image(open_image(c.source.path, options.max_pixels).image, c.source, c.format, stage))
            record_kept(report, c.source, name)
            rows.append((name, c.caption, c.width, c.height, c.sharpness))
        captions_io.write_metadata(stage, [(name, text) for name, text, *_ in rows])
        captions_io.write_fashion_csv(stage, rows)
        report.write(stage)
    if options.zip:
        out = Path(options.out).expanduser().resolve()
        zip_folder(out, out.with_name(f"{out.name}.zip"))
    log.info("%s", report.summary())
    return report


def _read_caption_file(options: FashionOptions) -> tuple[Path, Captions]:
    try:
        where, flag = options.input_name(options.images), options.name_of("captions")
        path = options.captions or captions_io.caption_file_in(Path(options.images), where, flag)
        if path is None:
            raise PrepareError(f"{where} has no caption file; add one (JSON, CSV or metadata.jsonl) or give one "
                               f"with {flag}.")
        return Path(path), captions_io.read_captions(path)
    except CaptionFileError as err:
        raise PrepareError(str(err)) from None


def match_captions(captions: Captions, sources: list[Source], report: Report) -> list[tuple[Source, str]]:
    """Pair caption entries with images: by path relative to the folder, else by a unique trailing part.

    Entries for missing images, ambiguous names and images without a caption are reported and left out.
    """
    by_rel = {s.rel: s for s in sources}
    by_tail: dict[str, list[Source]] = {}
    for source in sources:
        parts = PurePosixPath(source.rel).parts
        for i in range(len(parts)):
            by_tail.setdefault("/".join(parts[i:]), []).append(source)
    paired: dict[str, tuple[Source, str]] = {}
    for name, text in captions.by_image.items():
        where = captions.where[name]
        source = _find(name, by_rel, by_tail, where, report)
        if source is None:
            continue
        if source.rel in paired:
            report.warn(source.rel, "caption file", f"{where} gives {source.rel} a second caption; the later wins.")
        paired[source.rel] = (source, text)
    for source in sources:
        if source.rel not in paired:
            report.drop(source.rel, "no caption", f"{source.rel} has no caption in the caption file.")
    return [paired[s.rel] for s in sources if s.rel in paired]


def _find(name: str, by_rel: dict[str, Source], by_tail: dict[str, list[Source]], where: str,
          report: Report) -> Source | None:
    """The image a caption entry means, trying shorter trailing parts of its path ("data/img/a.jpg" -> "a.jpg")."""
    parts = [part for part in PurePosixPath(name).parts if part not in (".", "/")]
    for i in range(len(parts)):
        tail = "/".join(parts[i:])
        if tail in by_rel:
            return by_rel[tail]
        matches = by_tail.get(tail, [])
        if len(matches) > 1:
            shown = ", ".join(s.rel for s in matches[:3])
            report.drop(name, "ambiguous", f"{where}: {name} matches {len(matches)} images ({shown}); write its "
                        "path relative to the image folder.")
            return None
        if matches:
            return matches[0]
    report.drop(name, "no image", f"{where} has a caption for {name}, but no such image is in the folder.")
    return None


def _check(source: Source, caption: str, options: FashionOptions, report: Report) -> Candidate | None:
    """The candidate when every filter passes; otherwise the reason goes to the report."""
    rel = source.rel
    if len(caption.strip()) < options.min_caption:
        report.drop(rel, "short caption", f"{rel}: its caption has {len(caption.strip())} characters, fewer than "
                    f"{options.name_of('min_caption')} {options.min_caption}.")
        return None
    try:
        opened = open_image(source.path, options.max_pixels)
    except ImageProblem as err:
        report.drop(rel, "unreadable", str(err))
        return None
    image = opened.image
    width, height = image.size
    if min(width, height) < options.min_size:
        report.drop(rel, "too small", f"{rel} is {width}x{height}, smaller than {options.name_of('min_size')} "
                    f"{options.min_size} on its shorter side.")
        return None
    if aspect_ratio(image.size) > options.max_aspect:
        report.drop(rel, "aspect ratio", f"{rel} is {width}x{height} (aspect {aspect_ratio(image.size):.2f}), "
                    f"more elongated than {options.name_of('max_aspect')} {options.max_aspect}.")
        return None
    sharp = sharpness(image)
    if sharp < options.min_sharpness:
        report.drop(rel, "blurry", f"{rel} looks blurry (sharpness {sharp:.1f} < {options.name_of('min_sharpness')} "
                    f"{options.min_sharpness}).")
        return None
    return Candidate(source, caption.strip(), width, height, sharp, opened.format, opened.untouched)


def _sample(candidates: list[Candidate], options: FashionOptions, report: Report) -> list[Candidate]:
    """A seeded random sample of ``options.sample`` (all when there are fewer), in input order."""
    if len(candidates) <= options.sample:
        return candidates
    picked = set(random.Random(options.seed).sample(range(len(candidates)), options.sample))
    for i, c in enumerate(candidates):
        if i not in picked:
            report.drop(c.source.rel, "not sampled", f"{c.source.rel} passed every check but is not in the random "
                        f"sample of {options.sample} (seed {options.seed}).")
    return [c for i, c in enumerate(candidates) if i in picked]
