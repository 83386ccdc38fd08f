"""Seed 003: a style set collected from a folder, a ZIP or a list of URLs, cleaned, deduplicated and captioned.

Every image that passes the shared checks (``training.prepare.checks``: duplicates, size, sharpness, text ...)
is converted to RGB and resized + centre-cropped to ``size``. Captions the user gave (a caption file, or a .txt
beside an image) are kept as written; with ``caption``, BLIP captions the other images and names are removed
from what it writes; every caption ends with the style suffix.
"""
from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from training.prepare import captions_io
from training.prepare.caption_clean import DEFAULT_STYLE_SUFFIX, add_suffix, clean_caption, load_deny_words
from pipelines.images import fit_square, open_image
from training.prepare.common import (PrepareError, check_separate, encode_image, list_sources, nothing_left,
                                     record_kept, staged_output)
from training.prepare.report import Report
from training.prepare.safe_zip import UnsafeZipError, safe_extract_zip, single_top_folder
from training.prepare.screen import ScreenOptions, screen
from training.prepare.user_captions import given_captions, read_caption_file
from training.prepare.url_import import DownloadSettings, download_all, read_url_list

log = logging.getLogger(__name__)

CAPTION_BATCH = 8
Captioner = Callable[[list[Image.Image]], list[str]]


@dataclass
class GhibliOptions(ScreenOptions):
    out: Path
    images: Path | None = None  # exactly one of images, zip, urls
    zip: Path | None = None
    urls: Path | None = None
    captions: Path | None = None  # None: the one caption file at the top of the images, if any
    size: int = 512
    caption: bool = False
    style_suffix: str = DEFAULT_STYLE_SUFFIX
    deny_words: Path | None = None  # a file, one word or phrase per line
    extra_deny: tuple[str, ...] = ()  # more words, e.g. typed in the UI
    overwrite: bool = False
    download: DownloadSettings = field(default_factory=DownloadSettings)

    def check(self) -> None:
        """Refuse impossible settings and missing inputs with one sentence."""
        given = [name for name in ("images", "zip", "urls") if getattr(self, name)]
        if len(given) != 1:
            raise PrepareError("Give exactly one source of images: --images DIR, --zip FILE or --urls FILE.")
        source = Path(getattr(self, given[0]))
        if not (source.is_dir() if given[0] == "images" else source.is_file()):
            raise PrepareError(f"The {given[0]} source {source} does not exist.")
        self.check_range("size", 8, 4096, " pixels")
        self.check_checks()
        if self.deny_words and not Path(self.deny_words).is_file():
            raise PrepareError(f"The deny-words file {self.deny_words} does not exist.")


def prepare_ghibli(options: GhibliOptions, captioner: Captioner | None = None) -> Report:
    """Build the style set in ``options.out``; ``captioner`` (images -> captions) is needed with ``caption``."""
    options.check()
    if options.caption and captioner is None:
        raise ValueError("prepare_ghibli(caption=True) needs a captioner")
    deny = [*load_deny_words(options.deny_words), *options.extra_deny]
    report = Report("ghibli", settings=options.report_settings("extra_deny"))
    with staged_output(options.out, options.overwrite) as stage, _incoming(options, report) as (folder, origin):
        sources = list_sources(folder, report)
        where = options.input_name(options.images or options.zip or folder)
        given = given_captions(read_caption_file(options.captions, folder, where, options.name_of("captions")),
                               sources, report)
        kept = screen(sources, options, report)
        if not kept:
            raise nothing_left(report)
        names = [encode_image(fit_square(open_image(c.source.path, options.max_pixels).image, options.size), c.source,
                              c.format, stage) for c in tqdm(kept, desc="write")]
        texts = [given.get(c.source.rel) for c in kept]
        rows = list(zip(names, _captions(names, texts, stage, options, deny, captioner)))
        for c, name in zip(kept, names):
            record_kept(report, c.source, name, origin.get(c.source.rel))
        captions_io.write_metadata(stage, rows)
        captions_io.write_captions_txt(stage, rows)
        captions_io.write_captions_csv(stage, rows)
        report.write(stage)
    log.info("%s", report.summary())
    return report


@contextmanager
def _incoming(options: GhibliOptions, report: Report) -> Iterator[tuple[Path, dict[str, str]]]:
    """(folder of input images, {file name: URL it came from}); a ZIP or the downloads go to a temporary folder."""
    out = Path(options.out).expanduser().resolve()
    if options.images:
        check_separate(options.images, out)
        yield Path(options.images), {}
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.incoming-", dir=out.parent) as tmp:
        if options.zip:
            try:
                folder = single_top_folder(safe_extract_zip(options.zip, tmp))
            except UnsafeZipError as err:
                raise PrepareError(str(err)) from None
            yield folder, {}
            return
        urls, bad = read_url_list(options.urls)
        for line, message in bad:
            report.drop(line, "bad url", message)
        result = download_all(urls, Path(tmp), options.download)
        for url, message in result.failures:
            report.drop(url, "download failed", message)
        yield Path(tmp), {path.name: url for path, url in result.files.items()}


def _captions(names: list[str], given: list[str | None], stage: Path, options: GhibliOptions, deny: list[str],
              captioner: Captioner | None) -> list[str]:
    """Each caption: the user's as written, else BLIP's without names (with ``caption``), plus the style suffix."""
    machine = [name for name, text in zip(names, given) if text is None] if options.caption else []
    written = dict(zip(machine, _blip(machine, stage, captioner))) if machine else {}
    return [add_suffix(text, options.style_suffix) if text is not None
            else clean_caption(written[name], deny, options.style_suffix) if name in written
            else options.style_suffix.strip() for name, text in zip(names, given)]


def _blip(names: list[str], stage: Path, captioner: Captioner) -> list[str]:
    """The captioner's raw captions of the written images ``names``, in batches."""
    out: list[str] = []
    batches = [names[i:i + CAPTION_BATCH] for i in range(0, len(names), CAPTION_BATCH)]
    for batch in tqdm(batches, desc="caption", unit="batch"):
        images = []
        for name in batch:
            with Image.open(stage / name) as im:
                images.append(im.convert("RGB"))
        out += captioner(images)
    return out
