"""What every dataset preparation shares: the staged output folder, the input listing, unique names, saving."""
from __future__ import annotations

import logging
import re
import shutil
import tempfile
import uuid
import zipfile
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from PIL import Image

from pipelines.images import Opened
from training.lora.data import IMAGE_EXTENSIONS
from training.prepare.report import Report

log = logging.getLogger(__name__)

INPUT_EXTENSIONS = (*IMAGE_EXTENSIONS, ".tif", ".tiff", ".gif", ".jfif")
# Files that travel with image folders and are not images: skipped without a report line.
SIDE_SUFFIXES = (".txt", ".json", ".jsonl", ".csv", ".md", ".toml", ".yaml", ".yml", ".ini", ".db")
COPYABLE = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP"}
JPEG_QUALITY = 95


class PrepareError(ValueError):
    """The preparation cannot produce a dataset; the message says why and what to do."""

    def __init__(self, message: str, report: Report | None = None):
        super().__init__(message)
        self.report = report  # when the input was read but nothing was usable: each file's reason


@dataclass
class PrepareOptions:
    """What every use case's options share: the names messages give the settings and the input."""
    # option -> how the caller names it, e.g. {"min_size": "“Min size (px)”", "images": "Your upload"} in the UI;
    # unnamed settings are called by their command-line flag and the input by its path
    labels: Mapping[str, str] = field(default_factory=dict, kw_only=True)

    def name_of(self, option: str) -> str:
        """How a message names the setting ``option``: the caller's label, else its command-line flag."""
        return self.labels.get(option) or "--" + option.replace("_", "-")

    def input_name(self, path: Path | str) -> str:
        """How a message names the input folder: the caller's label, else its path."""
        return self.labels.get("images") or str(path)

    def check_range(self, option: str, low: float, high: float | None = None, unit: str = "") -> None:
        """Refuse the setting ``option`` below ``low`` or above ``high`` with one sentence naming it."""
        value = getattr(self, option)
        if high is not None and not low <= value <= high:
            raise PrepareError(f"{self.name_of(option)} {value} is outside {low}-{high}{unit}.")
        if value < low:
            raise PrepareError(f"{self.name_of(option)} must be at least {low}, not {value}.")

    def report_settings(self, *hidden: str) -> dict[str, str]:
        """The settings a report records: every option but the labels and ``hidden``."""
        return {k: str(v) for k, v in asdict(self).items() if k not in ("labels", *hidden)}


@dataclass(frozen=True)
class Source:
    """One input image: how the report names it, where it is, and the unique stem its output gets."""
    rel: str
    path: Path
    stem: str

    @property
    def renamed(self) -> bool:
        """The output name differs from the file's own because another input has the same name."""
        return self.stem != safe_stem(PurePosixPath(self.rel).stem)


@contextmanager
def staged_output(out: Path, overwrite: bool = False) -> Iterator[Path]:
    """A temporary folder beside ``out`` that becomes ``out`` only when the block succeeds.

    An error or a crash inside the block leaves ``out`` as it was (absent, or the previous result).
    """
    out = Path(out).expanduser().resolve()
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise PrepareError(f"{out} already exists and is not empty; choose a new output folder or pass "
                           "--overwrite to replace it.")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield stage
        stage.chmod(0o755)  # mkdtemp makes it private; a dataset folder is not
        _swap_into_place(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)  # gone already after a successful swap


def _swap_into_place(stage: Path, out: Path) -> None:
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}") if out.exists() else None
    if old:
        out.rename(old)
    stage.rename(out)
    if old and old.is_dir():
        shutil.rmtree(old, ignore_errors=True)
    elif old:
        old.unlink()


def check_separate(source: Path, out: Path) -> None:
    """Refuse an output folder inside the input (or the reverse): --overwrite could delete the input."""
    source, out = Path(source).resolve(), Path(out).expanduser().resolve()
    if out == source or out.is_relative_to(source) or source.is_relative_to(out):
        raise PrepareError(f"The output folder {out} overlaps the input {source}; write the result elsewhere.")


def safe_stem(text: str) -> str:
    """A file-name stem without separators or odd characters (letters of any script are kept)."""
    return re.sub(r"[^\w.-]+", "_", text).strip("._")[:100] or "image"


def list_sources(folder: Path, report: Report) -> list[Source]:
    """Every image below ``folder`` with a unique output stem; other files are reported and skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PrepareError(f"The image folder {folder} does not exist or is not a folder.")
    images: list[PurePosixPath] = []
    for path in sorted(folder.rglob("*")):
        rel = PurePosixPath(path.relative_to(folder).as_posix())
        if not path.is_file() or any(part.startswith(".") or part == "__MACOSX" for part in rel.parts):
            continue  # hidden files and macOS resource forks are never images
        suffix = path.suffix.lower()
        if suffix in INPUT_EXTENSIONS:
            images.append(rel)
        elif suffix not in SIDE_SUFFIXES:
            report.drop(str(rel), "not an image", f"{rel} is not an image file (extension "
                        f"{suffix or 'none'}); skipped.")
    stems = unique_stems(images)
    return [Source(str(rel), folder / rel, stems[rel]) for rel in images]


def unique_stems(rels: list[PurePosixPath]) -> dict[PurePosixPath, str]:
    """Output stems, unique ignoring case: the file's own stem, its folders prefixed on a clash, then -2, -3."""
    counts = Counter(safe_stem(r.stem).lower() for r in rels)
    used: set[str] = set()
    stems = {}
    for rel in rels:
        stem = safe_stem(rel.stem)
        if counts[stem.lower()] > 1:
            stem = safe_stem("_".join((*rel.parent.parts, rel.stem)))
        base, n = stem, 1
        while stem.lower() in used:
            n += 1
            stem = f"{base}-{n}"
        used.add(stem.lower())
        stems[rel] = stem
    return stems


def record_kept(report: Report, source: Source, name: str, origin: str | None = None) -> None:
    """Note a written image in the report, with a warning when it had to be renamed."""
    report.keep(name, origin or source.rel)
    if source.renamed:
        report.warn(source.rel, "renamed", f"{source.rel} is saved as {name} because another input has the same "
                    "name.")


def copy_untouched(source: Source, source_format: str, untouched: bool, folder: Path) -> str | None:
    """Copy the file byte for byte when its pixels need no change and the trainer reads its format; its name."""
    suffix = source.path.suffix.lower()
    if not (untouched and COPYABLE.get(suffix) == source_format):
        return None
    name = f"{source.stem}{'.jpg' if suffix == '.jpeg' else suffix}"
    shutil.copyfile(source.path, folder / name)
    return name


def encode_image(image: Image.Image, source: Source, source_format: str, folder: Path) -> str:
    """Write ``image``: JPEG sources stay JPEG (quality 95), everything else becomes PNG; returns the name."""
    if source_format == "JPEG":
        name = f"{source.stem}.jpg"
        image.save(folder / name, "JPEG", quality=JPEG_QUALITY)
    else:
        name = f"{source.stem}.png"
        image.save(folder / name, "PNG")
    return name


def save_image(opened: Opened, source: Source, folder: Path, image: Image.Image | None = None) -> str:
    """Write one output image (``image``, or the opened one when None), copying the file when nothing changed."""
    if image is None:
        return (copy_untouched(source, opened.format, opened.untouched, folder)
                or encode_image(opened.image, source, opened.format, folder))
    return encode_image(image, source, opened.format, folder)


def zip_folder(folder: Path, target: Path) -> Path:
    """``target`` ZIP of every file in ``folder`` (written to a temporary name, then renamed)."""
    tmp = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                archive.write(path, path.relative_to(folder).as_posix())
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def nothing_left(report: Report) -> PrepareError:
    """The error for a result without images, carrying the report that says why each file was dropped."""
    if not report.dropped:
        return PrepareError("No usable images: the input holds no image files; add PNG or JPEG images to it.",
                            report)
    for note in report.dropped:  # the command line's copy of the report, which is never written
        log.warning("dropped %s", note.message)
    reasons = ", ".join(f"{n} {kind}" for kind, n in report.dropped_counts().items())
    count = len(report.dropped)
    return PrepareError(f"No usable images: {count} {'was' if count == 1 else 'were'} dropped ({reasons}); see the "
                        "report for each file's reason.", report)
