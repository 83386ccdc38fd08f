"""Extract an uploaded ZIP without letting it write outside its folder, plant links, or fill the disk."""
from __future__ import annotations

import re
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

DEFAULT_MAX_BYTES = 2 * 1024**3
DEFAULT_MAX_MEMBERS = 20_000


class UnsafeZipError(ValueError):
    """A ZIP was refused; the message names the file and the member."""


def _check_member(zip_name: str, info: zipfile.ZipInfo, dest: Path) -> None:
    """Refuse absolute paths, ``..``, links, and anything else that would resolve outside ``dest``."""
    name = info.filename
    posix = name.replace("\\", "/")  # Windows tools write backslashes; treat them as separators
    if posix.startswith("/") or re.match(r"[A-Za-z]:", posix):
        raise UnsafeZipError(f"Refusing to extract {zip_name}: member {name!r} is an absolute path.")
    if ".." in PurePosixPath(posix).parts:
        raise UnsafeZipError(f"Refusing to extract {zip_name}: member {name!r} would land outside the "
                             "destination folder.")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise UnsafeZipError(f"Refusing to extract {zip_name}: member {name!r} is a symbolic link.")
    if not (dest / posix).resolve().is_relative_to(dest):
        raise UnsafeZipError(f"Refusing to extract {zip_name}: member {name!r} would land outside the "
                             "destination folder.")


def safe_extract_zip(zip_path: str | Path, dest: str | Path, max_bytes: int = DEFAULT_MAX_BYTES,
                     max_members: int = DEFAULT_MAX_MEMBERS) -> Path:
    """Extract ``zip_path`` into ``dest`` after checking every member; returns ``dest``.

    Nothing is written unless the whole archive passes. The size limit uses the sizes the archive declares;
    zipfile never inflates a member past its declared size (it fails the CRC check instead), so a lying
    archive cannot exceed the limit either.
    """
    zip_path, dest = Path(zip_path), Path(dest).resolve()
    name = zip_path.name
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError):
        raise UnsafeZipError(f"{name} is not a readable ZIP file.") from None
    with archive:
        members = archive.infolist()
        if len(members) > max_members:
            raise UnsafeZipError(f"Refusing to extract {name}: it has {len(members)} members, more than the "
                                 f"limit of {max_members}.")
        total = 0
        for info in members:
            _check_member(name, info, dest)
            total += info.file_size
            if total > max_bytes:
                raise UnsafeZipError(f"Refusing to extract {name}: it unpacks to more than {max_bytes:,} bytes "
                                     f"(reached at member {info.filename!r}).")
        dest.mkdir(parents=True, exist_ok=True)
        for info in members:
            try:
                archive.extract(info, dest)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
                raise UnsafeZipError(f"Could not extract {name}: member {info.filename!r} is damaged "
                                     f"({err}).") from None
    return dest


def single_top_folder(folder: Path) -> Path:
    """The one folder a ZIP wrapped everything in (ignoring macOS's ``__MACOSX``), else ``folder`` itself."""
    entries = [p for p in Path(folder).iterdir() if p.name != "__MACOSX"]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else Path(folder)
