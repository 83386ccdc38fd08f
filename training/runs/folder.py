"""The run folder every trainer writes (DESIGN.md): config, events, log, samples, checkpoints, final, report."""
from __future__ import annotations

import errno
import json
import logging
import math
import os
import shutil
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import tomli_w

log = logging.getLogger(__name__)
EVENT_KINDS = ("train", "val", "sample", "checkpoint", "error", "done", "stage")
# What a trainer is busy with, in the order a run goes through them ("stage" events; the Runs tab shows the last).
STAGES = ("loading", "caching", "class images", "training", "saving")
SECRET_WORDS = ("token", "password", "secret")
# Why a disk refuses a write: read-only, no permission, full. Other OSErrors in the run folder are bugs.
REFUSED_WRITES = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT}


_MIRRORS: list[dict[str, Any]] = []  # see mirror_events


def append_event(events_file: Path, kind: str, step: int, /, **fields: Any) -> None:
    """One line of an events.jsonl: ``{"t", "step", "kind", **fields}``."""
    assert kind in EVENT_KINDS, kind
    line = json.dumps({"t": round(time.time(), 3), "step": step, "kind": kind, **fields})
    with Path(events_file).open("a", encoding="utf-8") as f:
        f.write(line + "\n")


@contextmanager
def mirror_events(path: Path, offset: int, total: int) -> Iterator[None]:
    """While inside, every event a RunFolder of this process writes is also appended to ``path`` (a multi-stage
    run's own events.jsonl) with its step moved by ``offset`` and training events' ``max_steps`` set to ``total``,
    so the Runs tab follows the stages as one run."""
    mirror = {"path": Path(path), "offset": offset, "total": total}
    _MIRRORS.append(mirror)
    try:
        yield
    finally:
        _MIRRORS.remove(mirror)


class RunFolder:
    """Paths and writers of one run; on every rank but 0 the writers do nothing."""

    def __init__(self, root: Path, is_main: bool = True):
        self.root = Path(root)
        self.is_main = is_main
        self.samples = self.root / "samples"
        self.checkpoints = self.root / "checkpoints"
        self.final = self.root / "final"
        if is_main:
            for folder in (self.root, self.samples, self.checkpoints):
                folder.mkdir(parents=True, exist_ok=True)

    def attach_log(self) -> logging.Handler | None:
        """Copy the trainer's log records into ``train.log``."""
        if not self.is_main:
            return None
        handler = _QuietFileHandler(self.root / "train.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logging.getLogger().addHandler(handler)
        for name in ("training", "pipelines"):  # the log is the run's record even when the root logger is quieter
            logging.getLogger(name).setLevel(logging.INFO)
        return handler

    def write_config(self, values: dict[str, Any]) -> None:
        """Resolved settings as TOML; keys that look like secrets are refused, not written."""
        if not self.is_main:
            return
        leaked = [k for k in values if any(word in k.lower() for word in SECRET_WORDS)]
        if leaked:
            raise ValueError(f"Refusing to write secret-looking settings {leaked} to config.toml.")
        atomic_write_text(self.root / "config.toml", tomli_w.dumps(_toml_safe(values)))

    def event(self, kind: str, step: int, **fields: Any) -> None:
        if not self.is_main:
            return
        append_event(self.root / "events.jsonl", kind, step, **fields)
        for mirror in _MIRRORS:
            if kind != "done":  # a stage's end is not the run's: the pipeline writes its own
                extra = {"max_steps": mirror["total"]} if kind == "train" else {}
                append_event(mirror["path"], kind, step + mirror["offset"] if step >= 0 else step, **{**fields, **extra})

    def stage(self, name: str, step: int = 0) -> None:
        """Record that the run entered stage ``name`` (one of STAGES), so a reader knows what it waits for."""
        assert name in STAGES, name
        log.info("stage: %s", name)
        self.event("stage", step, stage=name)

    def events(self) -> list[dict[str, Any]]:
        path = self.root / "events.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def write_report(self, report: dict[str, Any]) -> None:
        if self.is_main:
            atomic_write_text(self.root / "report.json", json.dumps(report, indent=2))

    def checkpoint_dirs(self) -> list[Path]:
        """Finished checkpoints, oldest first."""
        found = [p for p in self.checkpoints.glob("step-*") if p.is_dir() and p.name[5:].isdigit()]
        return sorted(found, key=lambda p: int(p.name[5:]))

    def prune_checkpoints(self, keep: int) -> None:
        if self.is_main and keep > 0:
            for old in self.checkpoint_dirs()[:-keep]:
                shutil.rmtree(old, ignore_errors=True)

    def plot_loss(self) -> None:
        """``loss.png``: training loss per step and validation loss when there is one."""
        if self.is_main:
            loss_figure(loss_points(self.events())).savefig(self.root / "loss.png")


# The events a loss curve is drawn from: kind -> (the loss field, the legend's name).
LOSS_SERIES = {"train": ("loss", "train"), "val": ("val_mse", "validation")}
# The parts of a total loss that a trainer logs beside it (hair stage 2, seed 000), each drawn as its own curve.
LOSS_PARTS = ("mask_mse", "identity", "texture", "gram")


def loss_points(events: Iterable[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """(step, loss) per legend name, from "train" and "val" events; a partly written event is skipped."""
    points: dict[str, list[tuple[int, float]]] = {name: [] for _, name in LOSS_SERIES.values()}
    for e in events:
        field, name = LOSS_SERIES.get(e.get("kind"), (None, None))
        if field and isinstance(e.get(field), (int, float)) and isinstance(e.get("step"), int):
            points[name].append((e["step"], float(e[field])))
            for part in LOSS_PARTS if e["kind"] == "train" else ():
                if isinstance(e.get(part), (int, float)):
                    points.setdefault(part, []).append((e["step"], float(e[part])))
    return points


def loss_figure(points: dict[str, list[tuple[int, float]]]):
    """The loss curves with a legend (a matplotlib Figure, outside pyplot so nothing global keeps it)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5), dpi=100)
    ax = fig.subplots()
    for name, style in (("train", "-"), ("validation", "o-")):  # markers: a first validation is a single point
        if points.get(name):
            ax.plot(*zip(*points[name]), style, label=name, linewidth=1)
    for name in LOSS_PARTS:
        if points.get(name):
            ax.plot(*zip(*points[name]), ":", label=name, linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if any(points.values()):
        ax.legend()
    fig.tight_layout()
    return fig


class NonFiniteLoss(ValueError):
    """Training diverged: a loss or the weights became NaN or infinite."""


def check_finite(value: float, what: str, where: str, lower: str) -> None:
    """Stop the run with one sentence when ``value`` is NaN or infinite; ``lower`` names the setting(s) to lower."""
    if not math.isfinite(value):
        raise NonFiniteLoss(f"The {what} became {value} at {where}; lower {lower} and start again.")


def check_finite_weights(tensors: Iterable[Any], where: str, lower: str) -> None:
    """Stop before NaN or infinite weights (torch tensors) reach a checkpoint or ``final/``."""
    import torch

    largest = torch.stack([t.detach().float().abs().amax() for t in tensors]).amax().item()
    check_finite(largest, "largest trained weight", where, lower)


def run_guarded(folder: RunFolder, train: Callable[[], None], user_errors: tuple[type[Exception], ...]) -> int:
    """Run a trainer with the house error contract and return its exit code.

    0 when it finishes; 2 for ``user_errors``, a diverged loss and a run folder that cannot be written (one
    sentence to the log and an "error" event); 1 for anything else (the traceback goes to train.log, one line to
    the event). An event that cannot be written any more is only logged.
    """
    handler = folder.attach_log()
    try:
        train()
        return 0
    except Exception as err:
        message, code = _describe(err, folder.root, (*user_errors, NonFiniteLoss))
        if code == 1:
            log.error("training failed:\n%s", traceback.format_exc())
        else:
            log.error("%s", message)
        try:
            folder.event("error", -1, message=message)
        except OSError as event_err:  # the folder that failed may refuse this write too
            log.warning("Could not record the error in %s: %s.", folder.root / "events.jsonl",
                        event_err.strerror or event_err)
        return code
    finally:
        if handler:
            logging.getLogger().removeHandler(handler)
            handler.close()


def _describe(err: Exception, root: Path, user_errors: tuple[type[Exception], ...]) -> tuple[str, int]:
    """(the error event's message, the exit code) for an exception that ended a run."""
    if isinstance(err, user_errors):
        return str(err), 2
    if isinstance(err, OSError) and err.errno in REFUSED_WRITES and err.filename and Path(
            os.path.abspath(err.filename)).is_relative_to(os.path.abspath(root)):
        return _unwritable(root, err), 2
    return f"{type(err).__name__}: {err}", 1


def _unwritable(root: Path, err: OSError) -> str:
    """The one sentence for a run folder that refuses a write (read-only disk, no space, permissions)."""
    reason = (err.strerror or str(err)).lower()
    return (f"Cannot write to {root}: {reason}; free space or fix permissions and resume with "
            "--resume latest.")


class _QuietFileHandler(logging.FileHandler):
    """train.log; a write that fails (the folder turned read-only) is dropped instead of printing a traceback."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass  # the same record still reaches the console handler


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _toml_safe(values: dict[str, Any]) -> dict[str, Any]:
    """TOML has no null: drop None values."""
    return {k: v for k, v in values.items() if v is not None}
