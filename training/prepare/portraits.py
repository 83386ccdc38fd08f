"""Seed 004: 5-20 portrait photos for DreamBooth: the shared checks, then one face each, optionally face-cropped."""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any

from PIL import Image
from tqdm.auto import tqdm

from training.prepare import captions_io
from pipelines.faces import square_around
from pipelines.images import open_image, shrink_to
from training.prepare.common import PrepareError, check_separate, list_sources, record_kept, save_image, staged_output
from training.prepare.report import Report
from training.prepare.screen import Checked, ScreenOptions, screen

log = logging.getLogger(__name__)

MIN_PHOTOS, MAX_PHOTOS = 5, 20  # seed 004: "5-20 ảnh"
DEFAULT_PROMPT = "a photo of sks person"  # the dreambooth preset's instance prompt
SHOWN_REASONS = 10  # unusable photos listed in the "too few" error; the report lists all


@dataclass
class PortraitOptions(ScreenOptions):
    images: Path
    out: Path
    crop_face: bool = False
    size: int = 512
    prompt: str = DEFAULT_PROMPT
    overwrite: bool = False

    def check(self) -> None:
        """Refuse impossible settings and a missing folder with one sentence."""
        if not Path(self.images).is_dir():
            raise PrepareError(f"The photo folder {self.images} does not exist or is not a folder.")
        self.check_range("size", 8, 4096, " pixels")
        self.check_checks()
        if not self.prompt.strip():
            raise PrepareError("The instance prompt is empty; use something like \"a photo of sks person\".")


def prepare_dreambooth(options: PortraitOptions, detector: Any) -> Report:
    """Check and write the portrait photos; ``detector.detect(image)`` returns face boxes (x, y, w, h)."""
    options.check()
    check_separate(options.images, options.out)
    report = Report("dreambooth", settings=options.report_settings())
    sources = list_sources(options.images, report)
    with staged_output(options.out, options.overwrite) as stage:
        for checked in tqdm(screen(sources, options, report), desc="faces"):
            name = _process(checked, options, detector, stage, report)
            if name:
                record_kept(report, checked.source, name)
        _check_count(report, len(sources))
        captions_io.write_metadata(stage, [(name, options.prompt.strip()) for name in report.kept])
        report.write(stage)
    log.info("%s", report.summary())
    return report


def _faces_text(count: int) -> str:
    return "no face found" if count == 0 else f"{count} faces found"


def _process(checked: Checked, options: PortraitOptions, detector: Any, stage: Path, report: Report) -> str | None:
    """Write one photo that passed the shared checks and return its name; None (and a report line) without a face."""
    rel, source = checked.source.rel, checked.source
    opened = open_image(source.path, options.max_pixels)
    image = opened.image
    faces = detector.detect(image)
    if len(faces) != 1:
        if options.crop_face:
            report.drop(rel, "faces", f"{rel}: {_faces_text(len(faces))}, so it cannot be cropped around one face.")
            return None
        report.warn(rel, "faces", f"{rel}: {_faces_text(len(faces))}; DreamBooth learns a person best from photos "
                    "showing exactly one face.")
    if options.crop_face:
        square = image.crop(square_around(faces[0], image.size))
        return save_image(opened, source, stage, square.resize((options.size, options.size), Image.Resampling.LANCZOS))
    smaller = shrink_to(image, options.size)
    return save_image(opened, source, stage, None if smaller is image else smaller)


def _check_count(report: Report, total: int) -> None:
    """Fewer than MIN_PHOTOS usable photos is an error listing why the others are not; more than MAX a warning."""
    usable = len(report.kept)
    if usable < MIN_PHOTOS:
        unusable = [n.message.rstrip(".") for n in report.dropped if n.kind != "not an image"]
        why = "; ".join(unusable[:SHOWN_REASONS]) or "the folder has no photos (.jpg, .png, .webp ...)"
        more = f"; and {len(unusable) - SHOWN_REASONS} more" if len(unusable) > SHOWN_REASONS else ""
        raise PrepareError(f"Only {usable} of {total} photos are usable, and DreamBooth needs at least {MIN_PHOTOS}; "
                           f"not usable: {why}{more}.", report)
    if usable > MAX_PHOTOS:
        report.warn("(all)", "count", f"{usable} photos; DreamBooth portraits usually need only {MIN_PHOTOS}-"
                    f"{MAX_PHOTOS}, and more slows training without adding much.")


def runtime_faces(runtime: Any) -> Callable[[], Any]:
    """A picklable function that loads ``face_detector(runtime)`` again, in a worker process."""
    return functools.partial(_faces_of, runtime.profile, dict(runtime.overrides), runtime.cache_dir)


def _faces_of(profile: Any, overrides: dict[str, str], cache_dir: Path) -> Any:
    from pipelines.models.runtime import Runtime

    return face_detector(Runtime(profile=profile, overrides=overrides, cache_dir=cache_dir))


def face_detector(runtime: Any) -> Any:
    """The runtime's ``faces`` model; when insightface cannot load in ``full`` (no model pack, no Hub), dlib's,
    the tiny profile's, with a warning. An explicit override is never replaced."""
    from pipelines.models import loaders
    from pipelines.models.registry import ROLES

    try:
        return runtime.model("faces")
    except loaders.ModelLoadError as err:
        if runtime.ref("faces").source == "override":
            raise
        log.warning("%s Falling back to dlib's face models.", err)
        return loaders.load("faces", ROLES["faces"].tiny)
