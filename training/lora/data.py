"""Read a training folder into (image, caption) pairs, with one clear sentence for every way it can be wrong.

Accepted layouts: ``metadata.jsonl`` (``file_name``, ``text``), a CSV with ``image``/``text`` columns, or
``.txt`` caption files next to the images. DreamBooth takes a plain folder of instance images.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
IMAGE_COLUMNS = ("image", "file_name", "image_path", "filename")
TEXT_COLUMNS = ("text", "caption")


class DatasetError(ValueError):
    """The training data is unusable; the message names the file and what to do."""


@dataclass(frozen=True)
class Example:
    image: Path
    caption: str


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _check_folder(folder: Path) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"The data folder {folder} does not exist; pass a folder of images with --data.")
    return folder


def read_captioned(folder: Path) -> list[Example]:
    """Image/caption pairs from metadata.jsonl, a CSV, or .txt sidecars (checked in that order)."""
    folder = _check_folder(folder)
    if (folder / "metadata.jsonl").is_file():
        examples = _from_jsonl(folder, folder / "metadata.jsonl")
    elif csvs := sorted(folder.glob("*.csv")):
        if len(csvs) > 1:
            names = ", ".join(p.name for p in csvs)
            raise DatasetError(f"{folder} holds several CSV files ({names}); keep the one with image,text columns.")
        examples = _from_csv(folder, csvs[0])
    else:
        examples = _from_sidecars(folder)
    if not examples:
        raise DatasetError(f"{folder} has no captioned images; add images with a metadata.jsonl, a CSV with "
                           "image,text columns, or one .txt caption per image.")
    return examples


def read_instance_images(folder: Path, prompt: str) -> list[Example]:
    """DreamBooth: every image in the folder, captioned with the instance prompt."""
    images = list_images(_check_folder(folder))
    if not images:
        raise DatasetError(f"{folder} has no images ({', '.join(IMAGE_EXTENSIONS)}); add 5-20 photos.")
    return [Example(p, prompt) for p in images]


def _resolve_image(folder: Path, name: str, where: str) -> Path:
    path = (folder / name).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise DatasetError(f"{where}: the image path {name} points outside {folder}; use paths inside it.")
    if not path.is_file():
        raise DatasetError(f"{where}: the image {name} was not found in {folder}.")
    return path


def _pick(columns: list[str], wanted: tuple[str, ...]) -> str | None:
    return next((c for c in wanted if c in columns), None)


def _missing_columns(source: str, found: list[str]) -> DatasetError:
    return DatasetError(f"{source} has columns {', '.join(found) or '(none)'}; expected an image column "
                        f"({' or '.join(IMAGE_COLUMNS)}) and a caption column ({' or '.join(TEXT_COLUMNS)}).")


def _from_jsonl(folder: Path, path: Path) -> list[Example]:
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DatasetError(f"{where} is not valid JSON ({err.msg} at column {err.colno}).") from None
        if not isinstance(row, dict):
            raise DatasetError(f"{where} is not a JSON object with file_name and text.")
        image_key, text_key = _pick(list(row), IMAGE_COLUMNS), _pick(list(row), TEXT_COLUMNS)
        if not image_key or not text_key:
            raise _missing_columns(where, list(row))
        examples.append(Example(_resolve_image(folder, str(row[image_key]), where), str(row[text_key])))
    return examples


def _from_csv(folder: Path, path: Path) -> list[Example]:
    with path.open(newline="", encoding="utf-8") as f:
        try:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in reader.fieldnames or []]
            image_key, text_key = _pick(columns, IMAGE_COLUMNS), _pick(columns, TEXT_COLUMNS)
            if not image_key or not text_key:
                raise _missing_columns(path.name, columns)
            rows = [{k.strip(): v for k, v in row.items() if k} for row in reader]
        except csv.Error as err:
            raise DatasetError(f"{path.name} line {reader.line_num} is not valid CSV ({err}).") from None
    return [Example(_resolve_image(folder, row[image_key], f"{path.name} line {n}"), row[text_key] or "")
            for n, row in enumerate(rows, start=2)]


def _from_sidecars(folder: Path) -> list[Example]:
    images = list_images(folder)
    if not images:
        raise DatasetError(f"{folder} has no images ({', '.join(IMAGE_EXTENSIONS)}).")
    missing = [p.name for p in images if not p.with_suffix(".txt").is_file()]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise DatasetError(f"{len(missing)} image(s) in {folder} have no caption ({shown}); add a .txt with the "
                           "same name, a metadata.jsonl, or a CSV with image,text columns.")
    return [Example(p, p.with_suffix(".txt").read_text(encoding="utf-8").strip()) for p in images]
