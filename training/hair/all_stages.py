"""Seed 000's run_training_pipeline.sh, safe to re-run: ``python -m training.hair all --images DIR --labels DIR
--output RUN``.

prepare → texture → inpaint → evaluate (and export with ``--export NAME``), each in its own folder under RUN. A
stage whose output is complete is skipped, a training stage with checkpoints but no result resumes from the latest,
and ``--from STAGE`` runs that stage and the ones after it again (their old folders are kept beside, renamed).
Everything logs to ``RUN/pipeline.log``.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("training.hair")
STAGES = ("prepare", "texture", "inpaint", "evaluate")


def folders(output: Path) -> dict[str, Path]:
    return {"prepare": output / "prepared", "texture": output / "texture", "inpaint": output / "inpaint",
            "evaluate": output / "inpaint" / "evaluation"}


def complete(stage: str, output: Path) -> bool:
    """Whether ``stage`` left its whole result under ``output``."""
    folder = folders(output)[stage]
    result = {"prepare": "metadata.jsonl", "texture": "final/texture.safetensors",
              "inpaint": "final/hair_model.safetensors", "evaluate": "report.json"}[stage]
    return (folder / result).is_file()


def commands(images: Path, labels: Path, output: Path, profile: str, sets: dict[str, list[str]],
             export: str | None, force: bool) -> dict[str, Callable[[list[str]], list[str]]]:
    """Per stage, its command line (the stage CLIs' own arguments) given the resume flags to add."""
    f = folders(output)

    def with_sets(stage: str) -> list[str]:
        return [a for value in sets.get(stage, []) for a in ("--set", value)]

    return {
        "prepare": lambda extra: ["hair", "--images", str(images), "--labels", str(labels), "--out", str(f["prepare"]),
                                  "--profile", profile],
        "texture": lambda extra: ["texture", "--data", str(f["prepare"]), "--output", str(f["texture"]),
                                  "--profile", profile, *with_sets("texture"), *extra],
        "inpaint": lambda extra: ["inpaint", "--data", str(f["prepare"]), "--output", str(f["inpaint"]), "--texture",
                                  str(f["texture"]), "--profile", profile, *with_sets("inpaint"), *extra],
        "evaluate": lambda extra: ["evaluate", "--run", str(f["inpaint"]), "--profile", profile,
                                   *(["--export", export] if export else []), *(["--force"] if force else [])],
    }


def run_all(images: Path, labels: Path, output: Path, profile: str, start: str | None = None,
            sets: dict[str, list[str]] | None = None, export: str | None = None, force: bool = False) -> int:
    """Run the stages in order; returns the first non-zero exit code, or 0."""
    from training.hair.cli import main as hair_main
    from training.prepare.cli import main as prepare_main

    output.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(output / "pipeline.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        lines = commands(images, labels, output, profile, sets or {}, export, force)
        again = set(STAGES[STAGES.index(start):]) if start else set()
        for stage in STAGES:
            folder = folders(output)[stage]
            if stage in again and folder.exists():
                kept = folder.with_name(f"{folder.name}.before-{time.strftime('%Y%m%d-%H%M%S')}")
                folder.rename(kept)
                log.info("all: %s runs again; its old folder is kept as %s", stage, kept)
            elif complete(stage, output):
                log.info("all: %s is complete in %s; skipped", stage, folder)
                continue
            resume = ["--resume", "latest"] if any((folder / "checkpoints").glob("step-*")) else []
            log.info("all: %s%s", stage, " (resuming from its latest checkpoint)" if resume else "")
            code = (prepare_main if stage == "prepare" else hair_main)(lines[stage](resume))
            if code:
                log.error("all: %s stopped with exit code %d; fix what it said and run the same command again",
                          stage, code)
                return code
        return 0
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
