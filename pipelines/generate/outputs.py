"""Generated images on disk: ``outputs/<user>/<date>/`` PNGs with infotext, the history, a ZIP of it all."""
from __future__ import annotations

import datetime as dt
import re
import tempfile
import zipfile
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

MAX_HISTORY = 200


def user_dir(root: Path, owner: str) -> Path:
    """The owner's folder; a name that could climb out of ``root`` is flattened."""
    return Path(root) / (re.sub(r"[^A-Za-z0-9_.-]", "_", owner).lstrip(".") or "_")


def save(images: list[Image.Image], root: Path, owner: str, now: dt.datetime | None = None) -> list[Path]:
    """Write each image as a PNG with its ``parameters`` chunk under ``root/<owner>/<YYYY-MM-DD>/``."""
    now = now or dt.datetime.now()
    folder = user_dir(root, owner) / now.strftime("%Y-%m-%d")
    folder.mkdir(parents=True, exist_ok=True)
    stamp = now.strftime("%H%M%S-%f")
    paths = []
    for i, image in enumerate(images):
        info = PngInfo()
        if image.info.get("parameters"):
            info.add_text("parameters", image.info["parameters"])
        seed = re.search(r"Seed: (\d+)", image.info.get("parameters", ""))
        path = folder / f"{stamp}-{i:02d}{'-' + seed.group(1) if seed else ''}.png"
        image.save(path, pnginfo=info)
        paths.append(path)
    return paths


def history(root: Path, owner: str, limit: int = MAX_HISTORY) -> list[Path]:
    """The owner's saved images, newest first; nobody else's."""
    found = sorted(user_dir(root, owner).glob("*/*.png"), key=lambda p: (p.parent.name, p.name), reverse=True)
    return found[:limit]


def zip_all(root: Path, owner: str) -> Path | None:
    """Every image of the owner in one ZIP (in the temp folder, which Gradio serves); None when there are none."""
    files = history(root, owner, limit=10**9)
    if not files:
        return None
    out = Path(tempfile.mkdtemp(prefix="atelier-zip-")) / f"atelier-{user_dir(root, owner).name}.zip"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:  # PNGs are compressed already
        for path in files:
            archive.write(path, f"{path.parent.name}/{path.name}")
    return out
