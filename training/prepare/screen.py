"""Run the shared image checks (``training.prepare.checks.CHECKS``, in that order) over a preparation's inputs."""
from __future__ import annotations

from dataclasses import dataclass

from tqdm.auto import tqdm

from pipelines.images import ImageProblem, aspect_ratio, centre_square, open_image, sharpness
from training.prepare.checks import CheckSettings
from training.prepare.common import PrepareOptions, Source
from training.prepare.dedupe import Fingerprint, exact_duplicates, fingerprint, near_duplicates
from training.prepare.report import Report
from training.prepare.text_regions import text_fraction


@dataclass
class ScreenOptions(CheckSettings, PrepareOptions):
    """The options of every use case that screens images: the check settings and how messages name them."""

    def check_checks(self) -> None:
        """Refuse a check setting out of range with one sentence naming it."""
        self.check_range("min_size", 1)
        self.check_range("max_aspect", 1)
        self.check_range("min_sharpness", 0)
        self.check_range("duplicate_tolerance", 0, 255, " levels")
        self.check_range("text_threshold", 0, 1)


@dataclass(frozen=True)
class Checked:
    """An image that passed every shared check, with what the use case writes or reports about it."""
    source: Source
    width: int
    height: int
    sharpness: float
    format: str  # the file's format and whether its pixels were used as they are: can it be copied?
    untouched: bool
    print: Fingerprint
    text: float  # fraction of the image covered by lines of text


def screen(sources: list[Source], options: ScreenOptions, report: Report) -> list[Checked]:
    """The sources that pass every check; each dropped one gets a report line, text a warning unless dropped."""
    checked = [c for c in (_measure(s, options, report) for s in tqdm(_drop_exact(sources, report), desc="check"))
               if c]
    return _flag_text(_drop_near(checked, options, report), options, report)


def _drop_exact(sources: list[Source], report: Report) -> list[Source]:
    """Sources without the byte-identical repeats (the first in sorted order stays)."""
    by_path = {s.path: s for s in sources}
    repeats = exact_duplicates(by_path)
    for path, first in repeats.items():
        rel = by_path[path].rel
        report.drop(rel, "exact duplicate", f"{rel} has the same bytes as {by_path[first].rel}.")
    return [s for s in sources if s.path not in repeats]


def _measure(source: Source, options: ScreenOptions, report: Report) -> Checked | None:
    """Open one image and run the checks that look at it alone; None (and a report line) when one fails."""
    rel = source.rel
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
                    f"more elongated than {options.name_of('max_aspect')} {options.max_aspect:g}.")
        return None
    sharp = sharpness(image)
    if sharp < options.min_sharpness:
        report.drop(rel, "blurry", f"{rel} looks blurry (sharpness {sharp:.0f}, under "
                    f"{options.name_of('min_sharpness')} {options.min_sharpness:g}).")
        return None
    # Text is looked for in the part a square crop trains on, at the file's own resolution (small letters
    # vanish in a small square).
    return Checked(source, width, height, sharp, opened.format, opened.untouched,
                   fingerprint(image, source.path.stat().st_size), text_fraction(centre_square(image)))


def _drop_near(checked: list[Checked], options: ScreenOptions, report: Report) -> list[Checked]:
    """The images without near duplicates; the largest image of each group stays."""
    by_rel = {c.source.rel: c for c in checked}
    repeats = near_duplicates({rel: c.print for rel, c in by_rel.items()}, options.duplicate_tolerance)
    for rel, (leader, distance) in repeats.items():
        report.drop(rel, "near duplicate", f"{rel} looks like {leader} (their colours are at most {distance} levels "
                    f"apart, within {options.name_of('duplicate_tolerance')} {options.duplicate_tolerance}); kept "
                    "the larger one.")
    return [c for c in checked if c.source.rel not in repeats]


def _flag_text(checked: list[Checked], options: ScreenOptions, report: Report) -> list[Checked]:
    """Warn about (or, with drop_text, drop) the images whose text lines cover text_threshold or more."""
    out = []
    for c in checked:
        if c.text < options.text_threshold:
            out.append(c)
            continue
        share = f"about {c.text:.0%} of it looks like text or a watermark"
        if options.drop_text:
            report.drop(c.source.rel, "text", f"{c.source.rel}: {share}; dropped ({options.name_of('drop_text')}).")
        else:
            report.warn(c.source.rel, "text", f"{c.source.rel}: {share}; check it, or drop images with text "
                        f"({options.name_of('drop_text')}).")
            out.append(c)
    return out
