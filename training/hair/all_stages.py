"""Seed 000's run_training_pipeline.sh, safe to re-run: ``python -m training.hair all --images DIR --labels DIR
--output RUN``.

prepare → texture → inpaint → evaluate (and export with ``--export NAME``), each in its own folder under RUN. A
stage whose output is complete is skipped, a training stage with checkpoints but no result resumes from the latest,
and ``--from STAGE`` runs that stage and the ones after it again (their old folders are kept beside, renamed).
Everything logs to ``RUN/train.log``, and ``RUN/events.jsonl`` follows the stages as one run (the training stages'
events with their steps placed one after the other), so the launcher and the Runs tab treat it like any run.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

from training.runs.folder import append_event, mirror_events

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


def step_spans(profile: str, sets: dict[str, list[str]]) -> dict[str, tuple[int, int]]:
    """(first step, steps) of each training stage in the run's one count of steps; the settings are checked."""
    from training.hair.settings import inpaint_settings, parse_sets, texture_settings

    texture = texture_settings(parse_sets(sets.get("texture", []))).steps
    inpaint = inpaint_settings(parse_sets(sets.get("inpaint", [])), profile).max_steps
    return {"texture": (0, texture), "inpaint": (texture, inpaint)}


def summary(output: Path) -> str:
    """One sentence on how the run ended: the evaluation's figures and the gate verdict."""
    report = json.loads((folders(output)["evaluate"] / "report.json").read_text())
    verdict = "passed the gate" if report["gate"]["passed"] else "failed the gate"
    return (f"Finished: identity {report['identity']:.3f}, masked LPIPS {report['lpips']:.3f} on "
            f"{report['count']} held-out portraits; the model {verdict}.")


def stopped(events: Path, stage: str, code: int) -> str:
    """The run's error sentence: the stage's own when it wrote one, else its exit code."""
    from training.runs.launcher import read_events

    last = (read_events(events) or [{}])[-1]
    reason = last.get("message") if last.get("kind") == "error" else None
    return f"The {stage} stage stopped: {reason}" if reason else (
        f"The {stage} stage stopped (exit code {code}); the end of train.log says why.")


def run_all(images: Path, labels: Path, output: Path, profile: str, start: str | None = None,
            sets: dict[str, list[str]] | None = None, export: str | None = None, force: bool = False) -> int:
    """Run the stages in order; returns the first non-zero exit code, or 0."""
    from training.hair.cli import main as hair_main
    from training.prepare.cli import main as prepare_main

    output.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(output / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    events = output / "events.jsonl"
    try:
        spans = step_spans(profile, sets or {})
        total = sum(steps for _, steps in spans.values())
        lines = commands(images, labels, output, profile, sets or {}, export, force)
        again = set(STAGES[STAGES.index(start):]) if start else set()
        for stage in STAGES:
            folder = folders(output)[stage]
            first = total if stage == "evaluate" else spans.get(stage, (0, 0))[0]
            if stage in again and folder.exists():
                kept = folder.with_name(f"{folder.name}.before-{time.strftime('%Y%m%d-%H%M%S')}")
                folder.rename(kept)
                log.info("all: %s runs again; its old folder is kept as %s", stage, kept)
            elif complete(stage, output):
                log.info("all: %s is complete in %s; skipped", stage, folder)
                continue
            resume = ["--resume", "latest"] if any((folder / "checkpoints").glob("step-*")) else []
            log.info("all: %s%s", stage, " (resuming from its latest checkpoint)" if resume else "")
            append_event(events, "stage", first, stage=stage)
            with mirror_events(events, first, total) if stage in spans else nullcontext():
                code = (prepare_main if stage == "prepare" else hair_main)(lines[stage](resume))
            if code:
                log.error("all: %s stopped with exit code %d; fix what it said and run the same command again",
                          stage, code)
                append_event(events, "error", -1, message=stopped(events, stage, code))
                return code
        append_event(events, "done", total, summary=summary(output))
        return 0
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
