"""Start LoRA training runs as separate processes, queue them, and read their state back from the run folder.

The run folder is the only record, so a browser refresh or a server restart loses nothing:
``request.json`` (who asked for what, written at submit), ``process.json`` (the trainer's pid, written at
start, its exit code once reaped), ``events.jsonl`` (written by the trainer) and a ``cancelled`` marker.
A run with a request but no process record is queued; queued runs start oldest first while fewer than
``max_active`` trainers are alive.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import tomllib
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from training.lora.settings import from_dict, resolve_settings
from training.runs.pace import Pace, images_per_step, measured_pace, remaining, seconds_per_step
from training.runs.threads import thread_env

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINER_MODULE = "training.lora"
USE_CASES = ("fashion", "ghibli", "dreambooth")  # the LoRA presets
# Use cases with a trainer of their own; their data folder holds what trainer_args passes on.
TRAINER_MODULES = {"anime": "training.anime", "hair": "training.hair"}
RUN_USE_CASES = USE_CASES + tuple(TRAINER_MODULES)
PROFILES = ("tiny", "full")
RUN_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
SAFE_NAME = re.compile(r"[A-Za-z0-9_-]+")  # what may appear as a path part when looking a run up
CHECKPOINT = re.compile(r"step-\d+")
TAIL_BYTES = 64 * 1024  # the end of events.jsonl holds everything a status needs
# Settings that name a server folder: a run submitted through the hub would read or write wherever they
# point, so only the command line (the server's operator) may set them.
SERVER_PATH_SETTINGS = ("class_data_dir",)

HISTORY_RUNS = 5  # finished runs an estimate is measured from, newest first
SPEED_WINDOW = 10  # timed steps the Runs tab's speed is averaged over: recent, yet not jumpy
# What a running trainer is busy with, as the Runs tab says it (the "stage" events of training/runs/folder.py).
STAGE_TEXT = {"prepare": "Preparing the hair data (masks, faces, prompts)", "texture": "Stage 1: the texture encoder",
              "inpaint": "Stage 2: the inpainting model",
              "evaluate": "Scoring the model on held-out portraits (the gate)", "loading": "Loading models and data", "caching": "Encoding the images (cached for later runs)",
              "class images": "Making class images for prior preservation", "training": "Training",
              "saving": "Saving the weights and the final samples"}


class LaunchError(ValueError):
    """A run cannot be submitted, found, cancelled or resumed; the message says why in one sentence."""


@dataclass
class RunStatus:
    """What the UI shows about a run, derived from its folder alone."""
    name: str
    use_case: str
    owner: str
    state: str  # queued | running | done | failed | cancelled
    step: int
    max_steps: int
    last_loss: float | None
    message: str
    created: str  # ISO 8601, UTC
    stage: str = ""  # the trainer's last "stage" event: loading | caching | class images | training | saving
    elapsed: float | None = None  # seconds since the trainer started (to its last event once it ended)
    seconds_per_step: float | None = None  # over the last SPEED_WINDOW timed steps
    eta: float | None = None  # seconds of training left while it trains

    @property
    def id(self) -> str:
        """``use_case/name``: unique on the server (a name is unique only within its use case)."""
        return f"{self.use_case}/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, **asdict(self)}


def default_runs_root() -> Path:
    return Path(os.environ.get("ATELIER_RUNS") or "runs").expanduser().resolve()


def clean_run_name(run_name: str | None, use_case: str) -> str:
    """The name stripped, or ``<use_case>-<date>-<time>`` when empty; refused unless letters, digits, - and _."""
    name = (run_name or "").strip() or f"{use_case}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not RUN_NAME.fullmatch(name):
        raise LaunchError(f"Run name {name!r} may only use letters, digits, - and _ (at most 64 characters).")
    return name


def trainer_args(use_case: str, data_dir: Path, run_dir: Path, profile: str, max_steps: int | None,
                 overrides: dict[str, str]) -> list[str]:
    """The trainer's arguments after ``-m module`` (stored in request.json, so a restart can start it)."""
    if use_case == "anime":  # data_dir holds content/ and style/ (see tabs/anime.py)
        args = ["--content", str(data_dir / "content"), "--style", str(data_dir / "style")]
    elif use_case == "hair":  # data_dir holds images/ and labels/ (K-Hairstyle); every stage in one command
        args = ["all", "--images", str(data_dir / "images"), "--labels", str(data_dir / "labels")]
    else:
        args = ["--preset", use_case, "--data", str(data_dir)]
    args += ["--output", str(run_dir), "--profile", profile]
    if max_steps is not None and use_case in USE_CASES:  # the anime trainer counts epochs (--set epochs=N)
        args += ["--max-steps", str(max_steps)]
    for key, value in overrides.items():
        args += ["--set", f"{key}={value}"]
    return args


def build_command(python: str, request: dict[str, Any], module: str = TRAINER_MODULE) -> list[str]:
    """The full command line for a run's request (``--resume latest`` once the run was resumed)."""
    command = [python, "-m", request.get("module") or module, *request["args"]]
    if request.get("resume"):
        command += ["--resume", "latest"]
    return command


def _anime_steps(data: Path, overrides: dict[str, str]) -> int:
    """The anime trainer's optimiser steps (epochs x batches of content images), for the progress bar."""
    from training.anime.data import splits
    from training.anime.settings import resolve

    settings = resolve(overrides)
    train, _ = splits(data / "content", "content", settings.val_fraction)
    splits(data / "style", "style", settings.val_fraction)
    return settings.epochs * max(1, len(train) // settings.batch_size)


def _hair_steps(data: Path, overrides: dict[str, str], profile: str) -> int:
    """The hair pipeline's training steps (texture + inpaint); the data's layout and the settings checked."""
    from training.hair.all_stages import step_spans
    from training.hair.settings import HairSettingsError

    for part in ("images", "labels"):
        if not (data / part).is_dir():
            raise LaunchError(f"The hair dataset {data.name} has no {part}/ folder; give a folder (or ZIP) holding "
                              "images/ and labels/ as K-Hairstyle lays them out.")
    sets: dict[str, list[str]] = {}
    for key, value in overrides.items():
        stage, dot, name = key.partition(".")
        if not dot or stage not in ("texture", "inpaint"):
            raise LaunchError(f"Hair setting {key!r} must be texture.NAME or inpaint.NAME.")
        sets.setdefault(stage, []).append(f"{name}={value}")
    try:
        return sum(steps for _, steps in step_spans(profile, sets).values())
    except HairSettingsError as err:
        raise LaunchError(str(err)) from None


def read_events(path: Path, tail_bytes: int | None = None) -> list[dict[str, Any]]:
    """The events of an events.jsonl (only those in its last ``tail_bytes`` when given).

    A line the trainer is still writing, or one cut by the tail, does not parse and is skipped.
    """
    try:
        with path.open("rb") as f:
            if tail_bytes is not None:
                f.seek(max(0, f.seek(0, os.SEEK_END) - tail_bytes))
            data = f.read()
    except FileNotFoundError:
        return []
    events = []
    for line in data.splitlines():
        try:
            event = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def tail_text(path: Path, lines: int, tail_bytes: int = TAIL_BYTES) -> str:
    """The last ``lines`` lines of a text file, or "" when it does not exist."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - tail_bytes))
            data = f.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-lines:])


def checkpoints(run_dir: Path) -> list[Path]:
    """The run's finished checkpoints (``checkpoints/step-N``; temporary names are ignored), oldest first."""
    # a multi-stage run (hair) keeps them in each stage's folder
    found = [p for pattern in ("checkpoints/step-*", "*/checkpoints/step-*") for p in run_dir.glob(pattern)
             if p.is_dir() and CHECKPOINT.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def _timing(events: list[dict[str, Any]], process: dict[str, Any] | None, running: bool,
            max_steps: int) -> dict[str, float | None]:
    """RunStatus's elapsed, seconds_per_step and eta, from the trainer's start time and its events' times."""
    started = _timestamp((process or {}).get("started"))
    times = [e["t"] for e in events if isinstance(e.get("t"), (int, float))]
    end = time.time() if running else max(times, default=None)
    per_step = seconds_per_step(events, SPEED_WINDOW)
    return {"elapsed": round(end - started, 1) if started and end else None,
            "seconds_per_step": per_step,
            "eta": remaining(events, max_steps, time.time(), SPEED_WINDOW) if running else None}


def _timestamp(iso: Any) -> float | None:
    """Epoch seconds of an ISO 8601 time written by ``_now``; None when missing or unreadable."""
    try:
        return datetime.fromisoformat(iso).timestamp()
    except (TypeError, ValueError):
        return None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write then rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _process_alive(pid: int, run_dir: Path) -> bool:
    """True when ``pid`` is a live trainer for this run; a zombie or a pid reused by another program is not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists but belongs to another user: the command line decides
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not Path("/proc/self").exists():
        return True  # no procfs (macOS): trust kill(0)
    try:  # arguments are NUL-separated; a zombie's command line is empty
        return b"\0" + str(run_dir).encode() + b"\0" in cmdline.read_bytes()
    except OSError:
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # a member we may not signal is still a member
    return True


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass  # already gone


class RunManager:
    """Submits, queues, starts, cancels and resumes trainer processes under ``runs_root/<use_case>/<run>/``.

    ``max_active`` trainers run at once (0 pauses the queue). A daemon thread checks every ``poll_seconds``
    for finished trainers and starts queued runs; ``list_runs`` does the same check, so the queue also moves
    for runs whose trainer was started by an earlier server process.
    """

    def __init__(self, runs_root: str | Path, python: str = sys.executable, max_active: int = 1, *,
                 module: str = TRAINER_MODULE, poll_seconds: float | None = 1.0):
        self.runs_root = Path(runs_root).expanduser().resolve()
        self.python = python
        self.max_active = max_active
        self.module = module
        self._children: dict[int, tuple[subprocess.Popen, Path]] = {}
        self._children_guard = threading.Lock()
        self._stop = threading.Event()
        if poll_seconds:
            threading.Thread(target=self._poll, args=(poll_seconds,), name="run-queue", daemon=True).start()

    def close(self) -> None:
        """Stop the polling thread; running trainers carry on and a later RunManager picks them up."""
        self._stop.set()

    # ----- submit / cancel / resume

    def submit(self, use_case: str, run_name: str, data_dir: str | Path, overrides: dict[str, str],
               owner: str, profile: str, max_steps: int | None = None) -> Path:
        """Create the run folder and its request.json, then start it now or queue it; returns the folder."""
        if use_case not in RUN_USE_CASES:
            raise LaunchError(f"Unknown use case {use_case!r}; choose one of: {', '.join(RUN_USE_CASES)}.")
        if profile not in PROFILES:
            raise LaunchError(f"Unknown profile {profile!r}; use one of: {', '.join(PROFILES)}.")
        if not owner:
            raise LaunchError("A run needs an owner.")
        name = clean_run_name(run_name, use_case)
        data = Path(data_dir).expanduser().resolve()
        if not data.is_dir():
            raise LaunchError(f"The dataset folder {data_dir} does not exist.")
        if max_steps is not None and max_steps < 1:
            raise LaunchError(f"Max steps must be at least 1, not {max_steps}.")
        overrides = {str(k): str(v) for k, v in overrides.items()}
        for key in SERVER_PATH_SETTINGS:
            if overrides.get(key, "").strip():
                raise LaunchError(f"Setting {key} names a folder on the server and cannot be set here; leave it "
                                  "empty and the class images are made and cached for you.")
        # a bad value is refused here, before any folder exists
        if use_case == "anime":
            total = _anime_steps(data, overrides)
        elif use_case == "hair":
            total = _hair_steps(data, overrides, profile)
        else:
            total = resolve_settings(use_case, overrides, profile).max_steps
        run_dir = self._make_run_dir(use_case, name)
        created = _now()
        _write_json(run_dir / "request.json", {
            "owner": owner, "use_case": use_case, "name": run_dir.name, "created": created, "queued_at": created,
            "data": str(data), "profile": profile, "max_steps": max_steps or total,
            "module": TRAINER_MODULES.get(use_case),
            "overrides": overrides, "args": trainer_args(use_case, data, run_dir, profile, max_steps, overrides),
            "resume": False,
        })
        log.info("run %s/%s submitted by %s", use_case, run_dir.name, owner)
        self.pump()
        return run_dir

    def cancel(self, run_dir: str | Path, grace: float = 10.0) -> None:
        """Stop a queued or running run: SIGTERM to its process group, SIGKILL after ``grace`` seconds."""
        run_dir = Path(run_dir)
        with self._lock():
            st = self.status(run_dir)
            if st.state not in ("queued", "running"):
                raise LaunchError(f"{st.id} is {st.state}; only a queued or running run can be cancelled.")
            # The marker comes first: the run reads as cancelled at once and the queue never starts it.
            _write_json(run_dir / "cancelled", {"t": _now()})
            pid = (_read_json(run_dir / "process.json") or {}).get("pid")
        log.info("run %s cancelled", st.id)
        if pid and self._pid_alive(pid, run_dir.resolve()):
            _signal_group(pid, signal.SIGTERM)  # start_new_session made the trainer its group's leader
            threading.Thread(target=self._kill_after, args=(pid, grace), name="run-kill", daemon=True).start()

    def resume(self, run_dir: str | Path) -> Path:
        """Queue a failed or cancelled run again in the same folder, continuing from its latest checkpoint."""
        run_dir = Path(run_dir)
        with self._lock():
            st = self.status(run_dir)
            if st.state not in ("failed", "cancelled"):
                raise LaunchError(f"Only a failed or cancelled run can be resumed; {st.id} is {st.state}.")
            pid = (_read_json(run_dir / "process.json") or {}).get("pid")
            if pid and self._pid_alive(pid, run_dir.resolve()):
                raise LaunchError(f"{st.id} is still stopping; try again in a few seconds.")
            if not checkpoints(run_dir):
                raise LaunchError(f"{st.id} has no checkpoint to resume from; start it again with the same "
                                  "settings instead.")
            request = _read_json(run_dir / "request.json")
            _write_json(run_dir / "request.json", {**request, "resume": True, "queued_at": _now()})
            (run_dir / "process.json").unlink(missing_ok=True)
            (run_dir / "cancelled").unlink(missing_ok=True)
        log.info("run %s resumed", st.id)
        self.pump()
        return run_dir

    def restart(self, run_dir: str | Path, owner: str) -> Path:
        """Submit a new run for ``owner`` with a run's request: same use case, data, profile, steps and settings."""
        request = _read_json(Path(run_dir) / "request.json")
        if request is None:
            raise LaunchError(f"{Path(run_dir).name} is not a run folder (no request.json).")
        use_case = request.get("use_case", "")
        max_steps = request.get("max_steps") if use_case in USE_CASES else None  # anime counts epochs
        return self.submit(use_case, request.get("name", ""), request.get("data", ""),
                           request.get("overrides") or {}, owner, request.get("profile", ""), max_steps)

    # ----- reading

    def paces(self, use_case: str, profile: str) -> list[Pace]:
        """The measured pace of the newest HISTORY_RUNS finished runs of a LoRA use case in ``profile``.

        Resumed runs are left out: their process started at the resume, so their overhead cannot be told.
        """
        if use_case not in USE_CASES:
            return []
        requests = [(d, r) for d in self.runs_root.glob(f"{use_case}/*") if (r := _read_json(d / "request.json"))
                    and r.get("profile") == profile and not r.get("resume")]
        found: list[Pace] = []
        for run_dir, _ in sorted(requests, key=lambda item: str(item[1].get("created", "")), reverse=True):
            started = _timestamp((_read_json(run_dir / "process.json") or {}).get("started"))
            try:
                with (run_dir / "config.toml").open("rb") as f:
                    images = images_per_step(from_dict(tomllib.load(f)))
            except (OSError, ValueError):  # not started, or written by another version: nothing to learn
                continue
            pace = measured_pace(read_events(run_dir / "events.jsonl"), started, images) if started else None
            if pace:
                found.append(pace)
            if len(found) == HISTORY_RUNS:
                break
        return found

    def status(self, run_dir: str | Path) -> RunStatus:
        """The run's state, progress and last message, from the files in its folder only."""
        run_dir = Path(run_dir).resolve()
        request = _read_json(run_dir / "request.json")
        if request is None:
            raise LaunchError(f"{run_dir} is not a run folder (no request.json).")
        events = read_events(run_dir / "events.jsonl", tail_bytes=TAIL_BYTES)
        process = _read_json(run_dir / "process.json")
        train = [e for e in events if e.get("kind") == "train"]
        steps = [e["step"] for e in events if isinstance(e.get("step"), int)]  # an error event's step is -1
        step = max([0, *steps])
        max_steps = (train[-1].get("max_steps") if train else None) or request.get("max_steps") or 0
        last_loss = train[-1].get("loss") if train and "loss" in train[-1] else None
        stages = [e.get("stage") for e in events if e.get("kind") == "stage"]
        stage = stages[-1] if stages else "training" if train else ""  # an old stage may be cut off by the tail
        state, message = self._state(run_dir, process, events, stage, step, max_steps, last_loss)
        return RunStatus(name=run_dir.name, use_case=request.get("use_case", run_dir.parent.name),
                         owner=request.get("owner", ""), state=state, step=step, max_steps=max_steps,
                         last_loss=last_loss, message=message, created=request.get("created", ""),
                         stage=stage, **_timing(events, process, state == "running", max_steps))

    def list_runs(self, owner: str | None) -> list[RunStatus]:
        """The owner's runs (every run for None), newest first; also moves the queue along."""
        self.pump()
        runs = [self.status(d) for d in self._run_dirs()]
        return sorted((r for r in runs if owner is None or r.owner == owner), key=lambda r: r.created, reverse=True)

    def find(self, run_id: str, owner: str | None) -> Path:
        """The folder of ``use_case/name`` (or a bare name) if ``owner`` may see it (None: anyone).

        Another user's run and a missing run get the same answer, so nobody learns what others train.
        """
        use_case, sep, name = (run_id or "").strip().rpartition("/")
        missing = LaunchError(f"There is no run named {run_id!r} among your runs.")
        if not SAFE_NAME.fullmatch(name) or (sep and use_case not in RUN_USE_CASES):
            raise missing
        folders = [self.runs_root / use_case / name] if sep else [self.runs_root / u / name for u in RUN_USE_CASES]
        visible = [d for d in folders if (r := _read_json(d / "request.json")) and owner in (None, r.get("owner"))]
        if len(visible) > 1:
            raise LaunchError(f"Several of your runs are named {name!r}; give it as use_case/{name}.")
        if not visible:
            raise missing
        return visible[0]

    # ----- the queue

    def pump(self) -> None:
        """Record finished trainers and start queued runs, oldest first, while fewer than max_active run."""
        self._reap()
        if not self.runs_root.is_dir():
            return
        with self._lock():
            runs = self._run_dirs()
            active = sum(self._alive(d) for d in runs)
            queued = [d for d in runs if self._is_queued(d)]
            queued.sort(key=lambda d: (_read_json(d / "request.json") or {}).get("queued_at", ""))
            for run_dir in queued[:max(0, self.max_active - active)]:
                self._start(run_dir)

    def _poll(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            try:
                self.pump()
            except Exception:  # keep polling: one unreadable folder must not stop the queue for everyone
                log.exception("checking the run queue failed")

    def _start(self, run_dir: Path) -> None:
        request = _read_json(run_dir / "request.json")
        command = build_command(self.python, request, self.module)
        try:
            with (run_dir / "process.log").open("ab") as out:
                proc = subprocess.Popen(command, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1", **thread_env()})
        except OSError as err:
            _write_json(run_dir / "process.json", {"pid": None, "started": _now(), "command": command,
                                                   "error": str(err)})
            log.error("could not start %s: %s", run_dir, err)
            return
        # Registered before process.json names it: a reader that finds the pid must ask Popen, not /proc, where a
        # child between fork and exec still shows the server's command line and would read as a dead trainer.
        with self._children_guard:
            self._children[proc.pid] = (proc, run_dir)
        _write_json(run_dir / "process.json", {"pid": proc.pid, "started": _now(), "command": command})
        log.info("started %s as pid %d", run_dir, proc.pid)

    def _reap(self) -> None:
        """Collect our own finished trainers (no zombies) and write their exit codes into process.json."""
        with self._children_guard:
            finished = [(pid, proc, d) for pid, (proc, d) in self._children.items() if proc.poll() is not None]
            for pid, _, _ in finished:
                del self._children[pid]
        for pid, proc, run_dir in finished:
            record = _read_json(run_dir / "process.json")
            if record and record.get("pid") == pid:  # not if the run was resumed by a newer process since
                _write_json(run_dir / "process.json", {**record, "returncode": proc.returncode, "ended": _now()})
            log.info("%s (pid %d) exited with code %d", run_dir, pid, proc.returncode)

    def _kill_after(self, pgid: int, grace: float) -> None:
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            self._reap()
            if not _group_alive(pgid):
                return
            time.sleep(0.1)
        log.warning("process group %d ignored SIGTERM for %.0f s; sending SIGKILL", pgid, grace)
        _signal_group(pgid, signal.SIGKILL)
        self._reap()

    # ----- folders and states

    def _run_dirs(self) -> list[Path]:
        """Every run folder with a readable request.json (a damaged one must not hide everyone's runs)."""
        return sorted(p.parent for p in self.runs_root.glob("*/*/request.json") if _read_json(p) is not None)

    def _make_run_dir(self, use_case: str, name: str) -> Path:
        """``name``, or ``name-2``, ``name-3``… when taken; mkdir is atomic, so two submits never share one."""
        parent = self.runs_root / use_case
        parent.mkdir(parents=True, exist_ok=True)
        for n in range(1, 10_000):
            candidate = parent / (name if n == 1 else f"{name}-{n}")
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            return candidate
        raise LaunchError(f"Too many runs are named {name!r}; choose another name.")

    def _alive(self, run_dir: Path) -> bool:
        pid = (_read_json(run_dir / "process.json") or {}).get("pid")
        return bool(pid) and self._pid_alive(pid, run_dir)

    def _pid_alive(self, pid: int, run_dir: Path) -> bool:
        """Our own child answers through Popen; a trainer from an earlier server through /proc."""
        with self._children_guard:
            child = self._children.get(pid)
        return child[0].poll() is None if child else _process_alive(pid, run_dir)

    @staticmethod
    def _is_queued(run_dir: Path) -> bool:
        return not (run_dir / "process.json").exists() and not (run_dir / "cancelled").exists()

    def _state(self, run_dir: Path, process: dict[str, Any] | None, events: list[dict[str, Any]], stage: str,
               step: int, max_steps: int, last_loss: float | None) -> tuple[str, str]:
        """(state, one-sentence message) from the marker, the process record and the last events."""
        if (run_dir / "cancelled").exists():
            return "cancelled", "Cancelled."
        if process is None:
            return "queued", "Waiting for a free training slot."
        if process.get("error"):
            return "failed", f"The trainer could not start: {process['error']}."
        if self._pid_alive(process["pid"], run_dir):
            if not stage:
                return "running", "Starting: loading models and data."
            if stage != "training":
                return "running", f"{STAGE_TEXT.get(stage, stage.capitalize())}."
            loss = f", loss {last_loss:.4g}" if isinstance(last_loss, (int, float)) else ""
            return "running", f"Training: step {step} of {max_steps}{loss}."
        ends = [e for e in events if e.get("kind") in ("done", "error")]
        returncode = process.get("returncode")
        if ends and ends[-1]["kind"] == "done" and returncode in (None, 0):
            return "done", "Finished early: the validation loss stopped improving." if ends[-1].get(
                "stopped_early") else ends[-1].get("summary") or "Finished."
        if ends and ends[-1]["kind"] == "error":
            return "failed", str(ends[-1].get("message") or "The trainer reported an error; see process.log.")
        code = f" (exit code {returncode})" if returncode is not None else ""
        return "failed", f"The trainer stopped without finishing{code}; see process.log."

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """One queue decision at a time, across threads and server processes (flock per open file)."""
        self.runs_root.mkdir(parents=True, exist_ok=True)
        with (self.runs_root / ".launcher.lock").open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
