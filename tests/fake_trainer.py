"""A stand-in for ``python -m training.lora``: the same command line and run folder, in a fraction of a second.

Environment knobs for tests: FAKE_TRAINER_STEP_SECONDS (sleep per step, default 0.05), FAKE_TRAINER_CHILD=1
(start a ``sleep`` child in the process group and write its pid to child.pid), FAKE_TRAINER_IGNORE_TERM=1
(ignore SIGTERM, so only SIGKILL stops it), FAKE_TRAINER_FAIL_AT=N (fail with an "error" event at step N),
FAKE_TRAINER_LOAD_SECONDS (sleep in the "loading" stage, default 0).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="fake_trainer")
    p.add_argument("--preset", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--profile", default="tiny")
    p.add_argument("--max-steps", type=int, default=3)
    p.add_argument("--resume")
    p.add_argument("--set", action="append", default=[])
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for item in args.set:  # like training.lora, --set max_steps=N counts when --max-steps is not given
        key, _, value = item.partition("=")
        if key == "max_steps" and "--max-steps" not in (argv or sys.argv):
            args.max_steps = int(value)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)

    def emit(kind: str, step: int, **extra) -> None:
        with (out / "events.jsonl").open("a") as f:
            f.write(json.dumps({"t": time.time(), "step": step, "kind": kind, **extra}) + "\n")

    def say(line: str) -> None:
        with (out / "train.log").open("a") as f:
            f.write(line + "\n")

    if not Path(args.data).is_dir():
        emit("error", -1, message=f"The dataset folder {args.data} does not exist.")  # -1 like training.lora
        print(f"fake_trainer: no dataset folder {args.data}", file=sys.stderr)
        return 1
    emit("stage", 0, stage="loading")
    time.sleep(float(os.environ.get("FAKE_TRAINER_LOAD_SECONDS", "0")))
    (out / "config.toml").write_text(f'preset = "{args.preset}"\nmax_steps = {args.max_steps}\n'
                                     + "".join(f"# --set {item}\n" for item in args.set))
    start = 0
    if args.resume:
        done = sorted(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("step-*"))
        start = done[-1] if done else 0
        say(f"resumed from step-{start}")
    if os.environ.get("FAKE_TRAINER_IGNORE_TERM"):  # before the child, which inherits it
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.environ.get("FAKE_TRAINER_CHILD"):
        child = subprocess.Popen(["sleep", "600"])
        (out / "child.pid").write_text(str(child.pid))
    step_seconds = float(os.environ.get("FAKE_TRAINER_STEP_SECONDS", "0.05"))
    fail_at = int(os.environ.get("FAKE_TRAINER_FAIL_AT", "0"))
    emit("stage", start, stage="training")
    for step in range(start + 1, args.max_steps + 1):
        time.sleep(step_seconds)
        if step == fail_at:
            emit("error", -1, message=f"The loss became nan at step {step}; lower learning_rate and start again.")
            return 2
        emit("train", step, loss=1.0 / step, max_steps=args.max_steps)
        say(f"step {step}/{args.max_steps} loss {1.0 / step:.4f}")
        if step % 2 == 0:
            (out / "checkpoints" / f"step-{step}").mkdir(parents=True, exist_ok=True)
            emit("checkpoint", step, path=f"checkpoints/step-{step}")
    emit("stage", args.max_steps, stage="saving")
    emit("val", args.max_steps, val_mse=0.5)
    (out / "samples").mkdir(exist_ok=True)
    sample = out / "samples" / f"step-{args.max_steps}-0.png"
    Image.new("RGB", (8, 8), (220, 40, 40)).save(sample)
    emit("sample", args.max_steps, path=str(sample.relative_to(out)))
    emit("done", args.max_steps)
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
