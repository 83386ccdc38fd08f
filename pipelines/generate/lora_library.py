"""The LoRAs one user can pick: their finished runs and checkpoints, uploaded files and pulled Hub repos."""
from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Iterable

from pipelines.generate.lora_files import LoraFile, LoraFileError, inspect

log = logging.getLogger(__name__)

SPEC_ITEM = re.compile(r"^\s*(.+?)\s*(?::\s*([-+0-9.eE]+))?\s*$")


def safe_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text).lstrip(".") or "_"


def user_folder(loras_root: Path, owner: str) -> Path:
    return Path(loras_root) / safe_part(owner)


def catalogue(runs: Iterable[tuple[str, Path]], loras_root: Path, owner: str) -> dict[str, Path]:
    """{label: weights file or folder} for ``runs`` ((run id, run folder), the owner's) and the owner's files.

    Labels: ``use_case/run`` (final weights), ``use_case/run@step-N`` (a checkpoint), ``file/<name>``
    (an upload), ``hub/<owner>/<repo>`` (a pulled repo). Labels never contain ':' or ',' (the spec separators).
    """
    found: dict[str, Path] = {}
    for run_id, run_dir in runs:
        if (run_dir / "final").is_dir() and any((run_dir / "final").glob("*.safetensors")):
            found[run_id] = run_dir / "final"
        for step in sorted((run_dir / "checkpoints").glob("step-*"), key=lambda p: _step(p.name)):
            if (step / "lora.safetensors").is_file():
                found[f"{run_id}@{step.name}"] = step / "lora.safetensors"
    mine = user_folder(loras_root, owner)
    for path in sorted((mine / "files").glob("*.safetensors")):
        found[f"file/{path.stem}"] = path
    for path in sorted((mine / "hub").glob("*__*")):
        if path.is_dir():
            found["hub/" + path.name.replace("__", "/", 1)] = path
    return found


def _step(name: str) -> int:
    try:
        return int(name.split("-")[1])
    except (IndexError, ValueError):
        return -1


def parse_spec(spec: str | None) -> list[tuple[str, float]]:
    """``"fashion/run:0.8, file/x"`` → [("fashion/run", 0.8), ("file/x", 1.0)]."""
    out = []
    for item in (spec or "").split(","):
        if not item.strip():
            continue
        match = SPEC_ITEM.match(item)
        try:
            out.append((match.group(1), float(match.group(2)) if match.group(2) else 1.0))
        except ValueError:
            raise LoraFileError(f"The LoRA weight in {item.strip()!r} is not a number; write name:0.8.") from None
    return out


def format_spec(items: Iterable[tuple[str, float]]) -> str:
    return ", ".join(f"{name}:{weight:g}" for name, weight in items)


def resolve(spec: str | None, known: dict[str, Path]) -> list[tuple[LoraFile, float]]:
    """Checked LoRA files and weights for a spec; an unknown name is one sentence naming it."""
    out = []
    for name, weight in parse_spec(spec):
        if name not in known:
            hint = f"; yours are: {', '.join(sorted(known))}" if known else "; you have none yet"
            raise LoraFileError(f"There is no LoRA named {name!r}{hint}.")
        out.append((inspect(known[name], name=name), weight))
    return out


def add_file(upload: Path, loras_root: Path, owner: str) -> str:
    """Check an uploaded file (refusing pickles before reading them) and keep it; returns its label."""
    upload = Path(upload)
    inspect(upload)  # raises for a pickle, foreign keys or an SDXL LoRA
    target = user_folder(loras_root, owner) / "files" / f"{safe_part(upload.stem)}.safetensors"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(upload, target)
    return f"file/{target.stem}"


def hub_folder(loras_root: Path, owner: str, repo_id: str) -> Path:
    user, _, name = repo_id.partition("/")
    return user_folder(loras_root, owner) / "hub" / f"{safe_part(user)}__{safe_part(name)}"
