"""The hair models one user may paint with: the profile's default, the models exported on the server, the user's own
hair runs and the repos they pulled. Each entry says whether the model passed seed 000's gate.

The Hair tab imports this module to build its page; ``pipelines.hair.model`` (and torch) load on first use.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT = "default"  # the dropdown's value for the ``hair`` role's model
CHECKPOINT_WEIGHTS = "lora.safetensors"  # a checkpoint's weights file (training/runs/checkpoint.py's LORA_FILE)


@dataclass(frozen=True)
class Entry:
    label: str
    value: str  # DEFAULT or a file path


def verdict(metadata: dict[str, str]) -> str:
    """A short note on the gate: "", "passed the gate" or "failed the gate (exported with --force)"."""
    if metadata.get("gate_passed") == "true":
        return "passed the gate"
    if metadata.get("gate_passed") == "false":
        return "failed the gate, exported with --force" if metadata.get("forced") == "true" else "failed the gate"
    return ""


def _entry(label: str, path: Path) -> Entry | None:
    from pipelines.hair.model import HairModelError, read_metadata

    try:
        note = verdict(read_metadata(path))
    except HairModelError:
        return None  # a damaged or foreign file is not offered
    return Entry(f"{label} ({note})" if note else label, str(path))


def run_model(run_dir: Path) -> Path | None:
    """A hair run's trained model: ``inpaint/final/`` of a one-command run, ``final/`` of a stage-2 run."""
    from pipelines.hair.model import MODEL_FILE

    for path in (run_dir / "inpaint" / "final" / MODEL_FILE, run_dir / "final" / MODEL_FILE):
        if path.is_file():
            return path
    return None


def run_checkpoints(run_dir: Path) -> list[Path]:
    """The weights files of a hair run's stage-2 checkpoints, newest first (each loads as a hair model)."""
    found = [p for pattern in ("inpaint/checkpoints/*/", "checkpoints/*/") for p in run_dir.glob(pattern + CHECKPOINT_WEIGHTS)
             if re.fullmatch(r"step-\d+", p.parent.name)]  # a half-written checkpoint has another name
    return sorted(found, key=lambda p: int(p.parent.name.removeprefix("step-")), reverse=True)


def run_verdict(run_dir: Path) -> str:
    """The gate verdict of a one-command run's evaluation, or "" before it was evaluated."""
    report = run_dir / "inpaint" / "evaluation" / "report.json"
    if not report.is_file():
        return ""
    passed = json.loads(report.read_text()).get("gate", {}).get("passed")
    return "passed the gate" if passed else "failed the gate"


def entries(default_label: str | None, runs: list[tuple[str, Path]], pulled: Path | None,
            exported: Path | None = None) -> list[Entry]:
    """Every model the user may choose, their own runs first.

    ``default_label``: the default's label, None when the profile has none; ``runs``: (name, folder) of the user's
    hair runs; ``pulled``: the user's folder of pulled hair repos; ``exported``: the server's export folder.
    """
    from pipelines.hair.model import MODEL_FILE, exported_dir

    found: list[Entry] = []
    for name, run_dir in runs:
        path = run_model(run_dir)
        if path is not None:
            note = run_verdict(run_dir)
            found.append(Entry(f"run {name} ({note})" if note else f"run {name}", str(path)))
        found += [e for p in run_checkpoints(run_dir) if (e := _entry(f"run {name} · {p.parent.name}", p))]
    if pulled is not None and pulled.is_dir():
        found += [e for p in sorted(pulled.glob(f"*/{MODEL_FILE}")) if (e := _entry(f"hub {p.parent.name}", p))]
    exported = exported or exported_dir()
    if exported.is_dir():
        found += [e for p in sorted(exported.glob("*.safetensors")) if (e := _entry(f"exported {p.stem}", p))]
    if default_label:
        found.append(Entry(default_label, DEFAULT))
    return found
