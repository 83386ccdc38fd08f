"""The run folder every trainer writes (DESIGN.md): config, events, log, samples, checkpoints, final, report."""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w

log = logging.getLogger(__name__)
EVENT_KINDS = ("train", "val", "sample", "checkpoint", "error", "done")
SECRET_WORDS = ("token", "password", "secret")


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
        handler = logging.FileHandler(self.root / "train.log", encoding="utf-8")
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
        assert kind in EVENT_KINDS, kind
        line = json.dumps({"t": round(time.time(), 3), "step": step, "kind": kind, **fields})
        with (self.root / "events.jsonl").open("a", encoding="utf-8") as f:
            f.write(line + "\n")

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
        if not self.is_main:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        events = self.events()
        train = [(e["step"], e["loss"]) for e in events if e["kind"] == "train"]
        val = [(e["step"], e["val_mse"]) for e in events if e["kind"] == "val"]
        fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
        if train:
            ax.plot(*zip(*train), label="train loss", linewidth=1)
        if val:
            ax.plot(*zip(*val), "o-", label="val MSE")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend()
        fig.tight_layout()
        fig.savefig(self.root / "loss.png")
        plt.close(fig)


def run_guarded(folder: RunFolder, train: Callable[[], None], user_errors: tuple[type[Exception], ...]) -> int:
    """Run a trainer with the house error contract and return its exit code.

    0 when it finishes; 2 for ``user_errors`` (their one sentence goes to the log and an "error" event);
    1 for anything else (the traceback goes to train.log, one line to the event).
    """
    handler = folder.attach_log()
    try:
        train()
        return 0
    except user_errors as err:
        log.error("%s", err)
        folder.event("error", -1, message=str(err))
        return 2
    except Exception as err:
        log.error("training failed:\n%s", traceback.format_exc())
        folder.event("error", -1, message=f"{type(err).__name__}: {err}")
        return 1
    finally:
        if handler:
            logging.getLogger().removeHandler(handler)
            handler.close()


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _toml_safe(values: dict[str, Any]) -> dict[str, Any]:
    """TOML has no null: drop None values."""
    return {k: v for k, v in values.items() if v is not None}
