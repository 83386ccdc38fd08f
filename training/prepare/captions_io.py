"""Read caption files in the formats people bring, and write the ones trainers read.

In: a JSON mapping ``{filename: caption}``, a JSON list of ``{image|file_name, caption|text}``, a CSV with an
image and a caption column, or ``metadata.jsonl``. A malformed file is refused with its line and column.
Out: ``metadata.jsonl`` (``file_name``, ``text``: training.lora and the diffusers ``imagefolder`` loader),
``captions.txt`` (one ``file_name<TAB>caption`` per line), ``captions.csv`` (columns exactly ``image,text``,
what the diffusers LoRA script asks for) and the fashion seed's ``fashion_data.csv``.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.lora.data import IMAGE_COLUMNS, TEXT_COLUMNS

CAPTION_SUFFIXES = (".json", ".jsonl", ".csv")
METADATA, CAPTIONS_TXT, CAPTIONS_CSV, FASHION_CSV = "metadata.jsonl", "captions.txt", "captions.csv", "fashion_data.csv"


class CaptionFileError(ValueError):
    """A caption file cannot be read; the message names it and where the problem is."""


@dataclass
class Captions:
    """Captions by image name as the file spells it, where each came from, and what was odd about the file."""
    by_image: dict[str, str] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)  # image name -> "captions.csv line 4"
    warnings: list[str] = field(default_factory=list)

    def add(self, image: str, text: str, where: str) -> None:
        image = image.strip().replace("\\", "/")
        if not image:
            self.warnings.append(f"{where} has no image name; skipped.")
            return
        if image in self.by_image:
            self.warnings.append(f"{where} repeats {image} (first at {self.where[image]}); the later caption wins.")
        self.by_image[image] = " ".join(str(text).split())  # newlines inside a caption would break captions.txt
        self.where[image] = where


def read_captions(path: str | Path) -> Captions:
    """Captions from a .json, .jsonl or .csv file (chosen by extension)."""
    path = Path(path)
    readers = {".json": _read_json, ".jsonl": _read_jsonl, ".csv": _read_csv}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise CaptionFileError(f"{path.name} is not a caption file this tool reads; use .json, .jsonl or .csv.")
    if not path.is_file():
        raise CaptionFileError(f"The caption file {path} does not exist.")
    return reader(path, _decode(path))


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")  # -sig: spreadsheet programs start CSVs with a byte-order mark
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise CaptionFileError(f"{path.name} line {line} column {column} is not UTF-8 text; save the file as "
                               "UTF-8.") from None


def _json_error(path: Path, err: json.JSONDecodeError, line_offset: int = 0) -> CaptionFileError:
    return CaptionFileError(f"{path.name} line {err.lineno + line_offset} column {err.colno} is not valid JSON "
                            f"({err.msg}).")


def _read_json(path: Path, text: str) -> Captions:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise _json_error(path, err) from None
    captions = Captions()
    if isinstance(data, dict):
        for image, caption in data.items():
            if not isinstance(caption, str):
                raise CaptionFileError(f"{path.name}: the caption of {image} is {type(caption).__name__}, not text.")
            captions.add(image, caption, f"{path.name} key {image!r}")
    elif isinstance(data, list):
        for number, item in enumerate(data, start=1):
            _add_record(captions, item, f"{path.name} item {number}")
    else:
        raise CaptionFileError(f"{path.name} holds a JSON {type(data).__name__}; expected an object "
                               "{filename: caption} or a list of {image, caption} objects.")
    return captions


def _add_record(captions: Captions, row: Any, where: str) -> None:
    """One {image|file_name, caption|text} object."""
    if not isinstance(row, dict):
        raise CaptionFileError(f"{where} is not an object with an image and a caption.")
    image_key = next((k for k in IMAGE_COLUMNS if k in row), None)
    text_key = next((k for k in TEXT_COLUMNS if k in row), None)
    if image_key is None or text_key is None:
        raise CaptionFileError(f"{where} has keys {', '.join(row) or '(none)'}; expected an image key "
                               f"({' or '.join(IMAGE_COLUMNS)}) and a caption key ({' or '.join(TEXT_COLUMNS)}).")
    captions.add(str(row[image_key]), "" if row[text_key] is None else str(row[text_key]), where)


def _read_jsonl(path: Path, text: str) -> Captions:
    captions = Captions()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise _json_error(path, err, line_offset=number - 1) from None
        _add_record(captions, row, f"{path.name} line {number}")
    return captions


def _read_csv(path: Path, text: str) -> Captions:
    if problem := csv_problem(text):
        line, column, what = problem
        raise CaptionFileError(f"{path.name} line {line} column {column} is not valid CSV ({what}).")
    rows = list(_csv_rows(path, text))
    if not rows:
        raise CaptionFileError(f"{path.name} is empty; expected a header such as image,text.")
    _, first = rows[0]
    header = [c.strip().lower() for c in first]
    image_at = next((header.index(c) for c in IMAGE_COLUMNS if c in header), None)
    text_at = next((header.index(c) for c in TEXT_COLUMNS if c in header), None)
    if image_at is None or text_at is None:
        raise CaptionFileError(f"{path.name} line 1 has columns {', '.join(first) or '(none)'}; expected an "
                               f"image column ({' or '.join(IMAGE_COLUMNS)}) and a caption column "
                               f"({' or '.join(TEXT_COLUMNS)}).")
    captions = Captions()
    for line, row in rows[1:]:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise CaptionFileError(f"{path.name} line {line} has {len(row)} fields but the header has "
                                   f"{len(header)}; put captions that contain commas in double quotes.")
        captions.add(row[image_at], row[text_at], f"{path.name} line {line}")
    return captions


def _csv_rows(path: Path, text: str) -> Iterable[tuple[int, list[str]]]:
    """Rows with the physical line each starts on (a quoted field may span lines)."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1
    try:
        for row in reader:
            yield start, row
            start = reader.line_num + 1
    except csv.Error as err:  # NUL bytes, over-long fields: the quoting problems were found before
        raise CaptionFileError(f"{path.name} line {reader.line_num} is not valid CSV ({err}).") from None


def csv_problem(text: str) -> tuple[int, int, str] | None:
    """(line, column, what) of the first quoting error in CSV text, or None; Python's csv module says what
    went wrong but not where."""
    line, column, state, opened = 1, 0, "start", (1, 1)
    for char in text:
        column += 1
        if state == "quoted":
            state = "quote?" if char == '"' else "quoted"
        elif state == "quote?" and char not in '",\r\n':
            return line, column, "text after a closing quote; double the quote inside a quoted field"
        elif char == '"' and state in ("start", "quote?"):
            state, opened = "quoted", (opened if state == "quote?" else (line, column))
        else:
            state = "start" if char in ",\r\n" else "unquoted"
        if char == "\n":
            line, column = line + 1, 0
    if state == "quoted":
        return opened[0], opened[1], "a quote opened here is never closed"
    return None


def caption_file_in(folder: Path, name: str | None = None, choose_with: str = "--captions") -> Path | None:
    """The one caption file at the top of ``folder`` (metadata.jsonl first), or None when there is none.

    ``name`` is how a message calls the folder (default: its name), ``choose_with`` where the user picks a file.
    """
    if (folder / METADATA).is_file():
        return folder / METADATA
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in CAPTION_SUFFIXES
                   and not p.name.startswith("."))
    if len(found) > 1:
        raise CaptionFileError(f"{name or folder.name} holds several caption files "
                               f"({', '.join(p.name for p in found)}); keep one or name it with {choose_with}.")
    return found[0] if found else None


def write_metadata(folder: Path, rows: Iterable[tuple[str, str]]) -> Path:
    """metadata.jsonl: one {"file_name", "text"} object per line."""
    path = Path(folder) / METADATA
    with path.open("w", encoding="utf-8") as f:
        for name, text in rows:
            f.write(json.dumps({"file_name": name, "text": text}, ensure_ascii=False) + "\n")
    return path


def write_captions_txt(folder: Path, rows: Iterable[tuple[str, str]]) -> Path:
    """captions.txt: ``file_name<TAB>caption`` per line."""
    path = Path(folder) / CAPTIONS_TXT
    path.write_text("".join(f"{name}\t{text}\n" for name, text in rows), encoding="utf-8")
    return path


def write_csv(path: Path, header: list[str], rows: Iterable[Iterable[Any]]) -> Path:
    with Path(path).open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return Path(path)


def write_captions_csv(folder: Path, rows: Iterable[tuple[str, str]]) -> Path:
    """captions.csv with the columns exactly ``image,text``."""
    return write_csv(Path(folder) / CAPTIONS_CSV, ["image", "text"], rows)


def write_fashion_csv(folder: Path, rows: Iterable[tuple[str, str, int, int, float]]) -> Path:
    """fashion_data.csv: image, text, width, height, sharpness of every kept image."""
    return write_csv(Path(folder) / FASHION_CSV, ["image", "text", "width", "height", "sharpness"],
                     ([name, text, w, h, f"{sharp:.1f}"] for name, text, w, h, sharp in rows))


def read_metadata(folder: Path) -> list[tuple[str, str]]:
    """(file_name, text) pairs of a prepared folder's metadata.jsonl, in file order."""
    captions = _read_jsonl(Path(folder) / METADATA, (Path(folder) / METADATA).read_text(encoding="utf-8"))
    return list(captions.by_image.items())


def update_captions(folder: Path, captions: dict[str, str]) -> list[Path]:
    """Rewrite the caption files a prepared folder already has with edited captions; returns what was written."""
    folder = Path(folder)
    rows = list(captions.items())
    written = [write_metadata(folder, rows)]
    if (folder / CAPTIONS_TXT).is_file():
        written.append(write_captions_txt(folder, rows))
    if (folder / CAPTIONS_CSV).is_file():
        written.append(write_captions_csv(folder, rows))
    if (folder / FASHION_CSV).is_file():
        with (folder / FASHION_CSV).open(newline="", encoding="utf-8") as f:
            old = list(csv.reader(f))
        fixed = [[row[0], captions.get(row[0], row[1]), *row[2:]] for row in old[1:] if row and row[0] in captions]
        written.append(write_csv(folder / FASHION_CSV, old[0], fixed))
    return written
