"""Captions the user gave: entries of a caption file matched to the images, and a .txt beside an image."""
from __future__ import annotations

from pathlib import Path, PurePosixPath

from training.prepare import captions_io
from training.prepare.captions_io import Captions, CaptionFileError
from training.prepare.common import PrepareError, Source
from training.prepare.report import Report

SIDECAR = ".txt"  # kohya-style datasets keep each caption in a text file named like its image


def read_caption_file(path: Path | None, folder: Path, where: str,
                      choose_with: str) -> tuple[str, Captions] | None:
    """(name, captions) of ``path``, else of the one caption file in ``folder`` (``where`` in messages), or None."""
    try:
        path = path or captions_io.caption_file_in(Path(folder), where, choose_with)
        return (Path(path).name, captions_io.read_captions(path)) if path else None
    except CaptionFileError as err:
        raise PrepareError(str(err)) from None


def sidecar_captions(sources: list[Source]) -> dict[str, str]:
    """{image: caption} from a non-empty .txt file with the image's name beside it."""
    found = {}
    for source in sources:
        sidecar = source.path.with_suffix(SIDECAR)
        if sidecar.is_file() and (text := " ".join(sidecar.read_text(encoding="utf-8", errors="replace").split())):
            found[source.rel] = text
    return found


def given_captions(caption_file: tuple[str, Captions] | None, sources: list[Source],
                   report: Report) -> dict[str, str]:
    """{image: caption} of every image the user captioned: the caption file's entry, else its .txt file."""
    # entries for missing images and ambiguous names go to the report as dropped, the file's oddities as warnings
    given = sidecar_captions(sources)
    if caption_file is not None:
        name, captions = caption_file
        for warning in captions.warnings:
            report.warn(name, "caption file", warning)
        given.update(_match(captions, sources, report))
    return given


def _match(captions: Captions, sources: list[Source], report: Report) -> dict[str, str]:
    """Pair caption entries with images: by path relative to the folder, else by a unique trailing part."""
    by_rel = {s.rel: s for s in sources}
    by_tail: dict[str, list[Source]] = {}
    for source in sources:
        parts = PurePosixPath(source.rel).parts
        for i in range(len(parts)):
            by_tail.setdefault("/".join(parts[i:]), []).append(source)
    paired: dict[str, str] = {}
    for name, text in captions.by_image.items():
        where = captions.where[name]
        source = _find(name, by_rel, by_tail, where, report)
        if source is None:
            continue
        if source.rel in paired:
            report.warn(source.rel, "caption file", f"{where} gives {source.rel} a second caption; the later wins.")
        paired[source.rel] = text
    return paired


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
