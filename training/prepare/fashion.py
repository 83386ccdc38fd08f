"""Seed 001: a captioned fashion set, filtered and sampled into a training folder.

Captions come from a JSON mapping, a JSON list, a CSV or metadata.jsonl. An image is kept when it has a caption
of ``min_caption`` characters and passes the shared checks (``training.prepare.checks``); then a seeded random
sample of ``sample`` images is written with ``metadata.jsonl`` and ``fashion_data.csv``.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from training.prepare import captions_io
from pipelines.images import open_image
from training.prepare.common import (PrepareError, Source, check_separate, copy_untouched, encode_image,
                                     list_sources, nothing_left, record_kept, staged_output, zip_folder)
from training.prepare.report import Report
from training.prepare.screen import Checked, ScreenOptions, screen
from training.prepare.user_captions import given_captions, read_caption_file

log = logging.getLogger(__name__)


@dataclass
class FashionOptions(ScreenOptions):
    images: Path
    out: Path
    captions: Path | None = None  # None: the one caption file at the top of ``images``, or a .txt beside each
    min_caption: int = 10
    sample: int = 10_000
    seed: int = 0
    zip: bool = False
    overwrite: bool = False

    def check(self) -> None:
        """Refuse impossible settings and a missing image folder with one sentence."""
        if not Path(self.images).is_dir():
            raise PrepareError(f"The image folder {self.images} does not exist or is not a folder.")
        self.check_checks()
        for option, low in (("min_caption", 0), ("sample", 1)):
            self.check_range(option, low)


def prepare_fashion(options: FashionOptions) -> Report:
    """Filter, sample and write the fashion set to ``options.out``; returns the report (also written there)."""
    options.check()
    check_separate(options.images, options.out)
    report = Report("fashion", settings=options.report_settings())
    pairs = _long_enough(_captioned(options, report), options, report)
    texts = {source.rel: text for source, text in pairs}
    with staged_output(options.out, options.overwrite) as stage:
        candidates = screen([source for source, _ in pairs], options, report)
        chosen = _sample(candidates, options, report)
        if not chosen:
            raise nothing_left(report)
        rows = []
        for c in tqdm(chosen, desc="write"):
            name = (copy_untouched(c.source, c.format, c.untouched, stage)
                    or encode_image(open_image(c.source.path, options.max_pixels).image, c.source, c.format, stage))
            record_kept(report, c.source, name)
            rows.append((name, texts[c.source.rel], c.width, c.height, c.sharpness))
        captions_io.write_metadata(stage, [(name, text) for name, text, *_ in rows])
        captions_io.write_fashion_csv(stage, rows)
        report.write(stage)
    if options.zip:
        out = Path(options.out).expanduser().resolve()
        zip_folder(out, out.with_name(f"{out.name}.zip"))
    log.info("%s", report.summary())
    return report


def _captioned(options: FashionOptions, report: Report) -> list[tuple[Source, str]]:
    """The images with a caption of the user's (each without one is reported), in input order."""
    where, flag = options.input_name(options.images), options.name_of("captions")
    caption_file = read_caption_file(options.captions, options.images, where, flag)
    sources = list_sources(options.images, report)
    given = given_captions(caption_file, sources, report)
    if caption_file is None and not given:
        raise PrepareError(f"{where} has no captions; add a caption file (JSON, CSV or metadata.jsonl) or a .txt "
                           f"beside each image, or give one with {flag}.")
    for source in sources:
        if source.rel not in given:
            report.drop(source.rel, "no caption", f"{source.rel} has no caption (neither in the caption file nor in "
                        "a .txt beside it).")
    return [(s, given[s.rel]) for s in sources if s.rel in given]


def _long_enough(pairs: list[tuple[Source, str]], options: FashionOptions,
                 report: Report) -> list[tuple[Source, str]]:
    """The pairs whose caption has at least ``min_caption`` characters (stripped); the others are reported."""
    kept = []
    for source, caption in pairs:
        if len(caption.strip()) < options.min_caption:
            report.drop(source.rel, "short caption", f"{source.rel}: its caption has {len(caption.strip())} "
                        f"characters, fewer than {options.name_of('min_caption')} {options.min_caption}.")
        else:
            kept.append((source, caption.strip()))
    return kept


def _sample(candidates: list[Checked], options: FashionOptions, report: Report) -> list[Checked]:
    """A seeded random sample of ``options.sample`` (all when there are fewer), in input order."""
    if len(candidates) <= options.sample:
        return candidates
    picked = set(random.Random(options.seed).sample(range(len(candidates)), options.sample))
    for i, c in enumerate(candidates):
        if i not in picked:
            report.drop(c.source.rel, "not sampled", f"{c.source.rel} passed every check but is not in the random "
                        f"sample of {options.sample} (seed {options.seed}).")
    return [c for i, c in enumerate(candidates) if i in picked]
