"""Seed 003: a style set collected from a folder, a ZIP or a list of URLs, cleaned, deduplicated and captioned.

Every image is converted to RGB and resized + centre-cropped to ``size``. Corrupt files, exact duplicates
(MD5), blurry images and near duplicates (perceptual hashes, the largest of each group kept) are dropped;
images with large text or watermark regions are flagged (dropped with ``drop_text``). With ``caption``, BLIP
writes the captions, names are removed and the style suffix is appended.
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
from training.prepare.caption_clean import DEFAULT_STYLE_SUFFIX, clean_caption, load_deny_words
from training.prepare.dedupe import DEFAULT_MAX_DISTANCE, Fingerprint, exact_duplicates, fingerprint, hamming, near_duplicates
from pipelines.images import (DEFAULT_MAX_PIXELS, DEFAULT_MIN_SHARPNESS, ImageProblem, centre_square, fit_square,
                                   open_image, sharpness)
from training.prepare.common import (PrepareError, PrepareOptions, Source, check_separate, encode_image, list_sources,
                                     nothing_left, record_kept, staged_output)
from training.prepare.report import Report
from training.prepare.safe_zip import UnsafeZipError, safe_extract_zip, single_top_folder
from training.prepare.text_regions import DEFAULT_THRESHOLD, text_fraction
from training.prepare.url_import import DownloadSettings, download_all, read_url_list

log = logging.getLogger(__name__)

CAPTION_BATCH = 8
Captioner = Callable[[list[Image.Image]], list[str]]


@dataclass
class GhibliOptions(PrepareOptions):
    out: Path
    images: Path | None = None  # exactly one of images, zip, urls
    zip: Path | None = None
    urls: Path | None = None
    size: int = 512
    phash_distance: int = DEFAULT_MAX_DISTANCE
    caption: bool = False
    style_suffix: str = DEFAULT_STYLE_SUFFIX
    deny_words: Path | None = None  # a file, one word or phrase per line
    extra_deny: tuple[str, ...] = ()  # more words, e.g. typed in the UI
    drop_text: bool = False
    text_threshold: float = DEFAULT_THRESHOLD
    min_sharpness: float = DEFAULT_MIN_SHARPNESS
    max_pixels: int = DEFAULT_MAX_PIXELS
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
        self.check_range("phash_distance", 0, 64, " bits")
        if self.deny_words and not Path(self.deny_words).is_file():
            raise PrepareError(f"The deny-words file {self.deny_words} does not exist.")


@dataclass(frozen=True)
class Candidate:
    source: Source
    name: str  # file written into the staging folder
    print: Fingerprint
    text: float  # fraction of the image that looks like text


def prepare_ghibli(options: GhibliOptions, captioner: Captioner | None = None) -> Report:
    """Build the style set in ``options.out``; ``captioner`` (images -> captions) is needed with ``caption``."""
    options.check()
    if options.caption and captioner is None:
        raise ValueError("prepare_ghibli(caption=True) needs a captioner")
    deny = [*load_deny_words(options.deny_words), *options.extra_deny]
    report = Report("ghibli", settings=options.report_settings("extra_deny"))
    with staged_output(options.out, options.overwrite) as stage, _incoming(options, report) as (folder, origin):
        sources = _drop_exact(list_sources(folder, report), report)
        kept = [c for c in (_process(s, options, stage, report) for s in tqdm(sources, desc="check")) if c]
        if kept:  # there is nothing to compare when every image was dropped
            kept = _flag_text(_drop_near(kept, options, stage, report), options, stage, report)
        if not kept:
            raise nothing_left(report)
        rows = list(zip((c.name for c in kept), _captions(kept, stage, options, deny, captioner)))
        for c in kept:
            record_kept(report, c.source, c.name, origin.get(c.source.rel))
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


def _drop_exact(sources: list[Source], report: Report) -> list[Source]:
    """Sources without the byte-identical repeats (the first in sorted order stays)."""
    by_path = {s.path: s for s in sources}
    repeats = exact_duplicates(by_path)
    for path, first in repeats.items():
        rel = by_path[path].rel
        report.drop(rel, "exact duplicate", f"{rel} has the same bytes as {by_path[first].rel}.")
    return [s for s in sources if s.path not in repeats]


def _process(source: Source, options: GhibliOptions, stage: Path, report: Report) -> Candidate | None:
    """Open, fingerprint, square, check sharpness and write one image; None (and a report line) if dropped."""
    try:
        opened = open_image(source.path, options.max_pixels)
    except ImageProblem as err:
        report.drop(source.rel, "unreadable", str(err))
        return None
    square = fit_square(opened.image, options.size)
    sharp = sharpness(square, side=None)
    if sharp < options.min_sharpness:
        report.drop(source.rel, "blurry", f"{source.rel} looks blurry (sharpness {sharp:.1f} < "
                    f"{options.name_of('min_sharpness')} {options.min_sharpness}).")
        return None
    name = encode_image(square, source, opened.format, stage)
    # Text is looked for at the file's own resolution (small letters vanish in a small square).
    text = text_fraction(centre_square(opened.image))
    return Candidate(source, name, fingerprint(opened.image, source.path.stat().st_size), text)


def _drop_near(kept: list[Candidate], options: GhibliOptions, stage: Path, report: Report) -> list[Candidate]:
    """Candidates without near duplicates; the largest image of each group stays."""
    by_rel = {c.source.rel: c for c in kept}
    repeats = near_duplicates({rel: c.print for rel, c in by_rel.items()}, options.phash_distance)
    for rel, leader in repeats.items():
        a, b = by_rel[rel].print, by_rel[leader].print
        bits = min(hamming(a.phash, b.phash), hamming(a.dhash, b.dhash))
        (stage / by_rel[rel].name).unlink()
        report.drop(rel, "near duplicate", f"{rel} looks like {leader} (perceptual hashes {bits} bits apart); "
                    "kept the larger one.")
    return [c for c in kept if c.source.rel not in repeats]


def _flag_text(kept: list[Candidate], options: GhibliOptions, stage: Path, report: Report) -> list[Candidate]:
    """Warn about (or, with drop_text, drop) images whose text regions cover text_threshold or more."""
    out = []
    for c in kept:
        if c.text < options.text_threshold:
            out.append(c)
            continue
        share = f"about {c.text:.0%} of it looks like text or a watermark"
        if options.drop_text:
            (stage / c.name).unlink()
            report.drop(c.source.rel, "text", f"{c.source.rel}: {share}; dropped ({options.name_of('drop_text')}).")
        else:
            report.warn(c.source.rel, "text", f"{c.source.rel}: {share}; check it, or drop images with text "
                        f"({options.name_of('drop_text')}).")
            out.append(c)
    return out


def _captions(kept: list[Candidate], stage: Path, options: GhibliOptions, deny: list[str],
              captioner: Captioner | None) -> list[str]:
    """BLIP captions cleaned of names with the style suffix, or just the suffix without ``caption``."""
    if not options.caption:
        return [options.style_suffix.strip()] * len(kept)
    out: list[str] = []
    batches = [kept[i:i + CAPTION_BATCH] for i in range(0, len(kept), CAPTION_BATCH)]
    for batch in tqdm(batches, desc="caption", unit="batch"):
        images = []
        for c in batch:
            with Image.open(stage / c.name) as im:
                images.append(im.convert("RGB"))
        out += [clean_caption(text, deny, options.style_suffix) for text in captioner(images)]
    return out
