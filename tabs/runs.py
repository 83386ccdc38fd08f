"""The Runs tab: the caller's training runs, read back from their folders every 2 s (API name ``run_status``).

Every handler checks the caller against the run's owner, not only the list: without ``--shared-runs`` a user
sees only their own runs; with it they see everyone's, but still cancel and resume only their own.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from tabs.common import owner_of, user_errors
from training.runs.folder import loss_figure, loss_points
from training.runs.launcher import RunManager, RunStatus, read_events, tail_text
from training.runs.pace import clock, speed

POLL_SECONDS = 2
LOG_LINES = 40
MAX_SAMPLES = 24
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
HEADERS = ["run", "owner", "state", "step", "loss", "created"]


@dataclass
class RunView:
    """Everything the tab shows about one run."""
    status: RunStatus
    loss: dict[str, list[tuple[int, float]]]  # (step, loss) of "train" and "validation"
    samples: list[Path]  # image files, oldest first
    log: str


def table_rows(runs: list[RunStatus]) -> list[list[str]]:
    return [[r.id, r.owner, r.state, f"{r.step}/{r.max_steps}",
             f"{r.last_loss:.4g}" if isinstance(r.last_loss, (int, float)) else "", local_time(r.created)]
            for r in runs]


def local_time(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


def loss_curves(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Training loss per step from the "train" events, and validation MSE from the "val" events."""
    return loss_points(read_events(run_dir / "events.jsonl"))


def sample_files(run_dir: Path) -> list[Path]:
    """The newest MAX_SAMPLES images in samples/ (and in each stage's samples/ and evaluation/ of a multi-stage
    run), oldest first."""
    images = [p for pattern in ("samples/*", "*/samples/*", "*/evaluation/*") for p in run_dir.glob(pattern)
              if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    images.sort(key=lambda p: (p.stat().st_mtime, p.name))
    return images[-MAX_SAMPLES:]


def sample_images(files: list[Path]) -> list[tuple[Image.Image, str]]:
    """The images captioned with their file name (the step), as pictures: Gradio serves copies under random
    names, never the run folder, which only its owner may read."""
    images = []
    for path in files:
        try:
            with Image.open(path) as im:
                images.append((im.convert("RGB"), path.stem))
        except OSError:  # a sample being written right now shows on the next tick
            continue
    return images


def log_text(run_dir: Path, state: str) -> str:
    """The last LOG_LINES of train.log, or of process.log when the run failed (the traceback is there)."""
    train_log = run_dir / "train.log"
    name = "train.log" if state != "failed" and train_log.exists() else "process.log"
    return tail_text(run_dir / name, LOG_LINES)


def progress_line(status: RunStatus) -> str:
    """E.g. "Training · step 30 of 60 · 1.04 s/it · elapsed 1:12 · about 0:31 left"."""
    running = status.state == "running"
    parts = [status.stage.capitalize()] if running and status.stage else []
    parts.append(f"step {status.step} of {status.max_steps}")
    if status.seconds_per_step:
        parts.append(speed(status.seconds_per_step))
    if status.elapsed is not None:
        parts.append(f"elapsed {clock(status.elapsed)}")
    if running and status.eta is not None:
        parts.append(f"about {clock(status.eta)} left")
    return " · ".join(parts)


def progress_html(status: RunStatus) -> str:
    total = max(status.max_steps, 1)
    return (f'<progress value="{min(status.step, total)}" max="{total}" style="width:100%"></progress>'
            f'<div id="runs-progress-line">{progress_line(status)}</div>')


def as_notice(action):
    """A button's handler that shows its outcome, a refusal included, in the tab's notice line: an error raised by
    an event outside the queue never reaches the page. (Not functools.wraps: the API name stays the action's.)"""
    def notice(run: str, request: gr.Request = None) -> str:
        try:
            return action(run, request)
        except gr.Error as err:
            return str(err.message)
    return notice


def status_markdown(status: RunStatus) -> str:
    return f"**{status.id}** — **{status.state}**. {status.message}"


class RunsHandlers:
    """The tab's plain handlers: callable from tests with any object that has a ``username``."""

    def __init__(self, manager: RunManager, shared: bool = False):
        self.manager = manager
        self.shared = shared

    def _viewer(self, request: gr.Request | None) -> str | None:
        """Whose runs the caller may see: their own, or everyone's (None) on a --shared-runs server."""
        return None if self.shared else owner_of(request)

    def runs(self, request: gr.Request | None) -> list[RunStatus]:
        """The runs the caller may see, newest first."""
        return self.manager.list_runs(self._viewer(request))

    def details(self, run_id: str, request: gr.Request | None) -> RunView:
        """Status, loss curve, samples and log of a run the caller may see."""
        run_dir = self.manager.find(run_id, self._viewer(request))
        status = self.manager.status(run_dir)
        return RunView(status, loss_curves(run_dir), sample_files(run_dir), log_text(run_dir, status.state))

    @user_errors
    def run_status(self, run: str, request: gr.Request) -> dict:
        """State, step, max_steps, last loss and message of one of the caller's runs (``use_case/name`` or name)."""
        return self.manager.status(self.manager.find(run, self._viewer(request))).to_dict()

    @user_errors
    def cancel(self, run: str, request: gr.Request = None) -> str:
        """Cancel one of the caller's own runs."""
        run_dir = self.manager.find(run, owner_of(request))  # acting needs ownership even when runs are shared
        self.manager.cancel(run_dir)
        return f"Cancelled {run}."

    @user_errors
    def resume(self, run: str, request: gr.Request = None) -> str:
        """Resume one of the caller's own failed or cancelled runs from its latest checkpoint."""
        run_dir = self.manager.find(run, owner_of(request))
        self.manager.resume(run_dir)
        return f"Resumed {run} from its latest checkpoint."

    @user_errors
    def restart(self, run: str, request: gr.Request = None) -> str:
        """Start a new run with the settings of one of the caller's own runs (same use case, data and settings)."""
        owner = owner_of(request)
        status = self.manager.status(self.manager.restart(self.manager.find(run, owner), owner))
        verb = "Queued" if status.state == "queued" else "Started"
        return f"{verb} **{status.id}** with the settings of {run}."

    @user_errors
    def refresh(self, selected: str | None, shown: dict | None, request: gr.Request = None) -> tuple:
        """Every output of the tab; parts that did not change since the last tick are skipped."""
        shown = shown or {}
        runs = self.runs(request)
        ids = [r.id for r in runs]
        selected = selected if selected in ids else (ids[0] if ids else None)
        view = self.details(selected, request) if selected else None
        status = view.status if view else None
        new = {
            "table": table_rows(runs),
            "choices": [ids, selected],
            "loss": [selected, sum(map(len, view.loss.values()))] if view else None,
            "samples": [selected, [str(p) for p in view.samples]] if view else None,
            "log": [selected, view.log] if view else None,
        }


        def fresh(key: str, value: Any) -> Any:
            return gr.skip() if shown.get(key) == new[key] else value

        return (
            fresh("table", new["table"]),
            fresh("choices", gr.Dropdown(choices=ids, value=selected)),
            status_markdown(status) if status else "No runs yet: start one in the Train tab.",
            progress_html(status) if status else "",
            fresh("loss", loss_figure(view.loss) if view and any(view.loss.values()) else None),
            gr.skip() if shown.get("samples") == new["samples"] else sample_images(view.samples) if view else [],
            fresh("log", view.log if view else ""),
            gr.Button(interactive=bool(status) and status.state in ("queued", "running")),
            gr.Button(interactive=bool(status) and status.state in ("failed", "cancelled")),
            gr.Button(interactive=bool(status) and status.state in ("done", "failed", "cancelled")),
            new,
        )

    def select(self, shown: dict | None, evt: gr.SelectData, request: gr.Request = None) -> tuple:
        """A click on a table row shows that run."""
        return self.refresh(evt.row_value[0], shown, request)


def build(manager: RunManager, shared: bool = False) -> None:
    """Lay out the tab inside the current Blocks."""
    h = RunsHandlers(manager, shared)
    with gr.Tab("Runs") as tab:
        timer = gr.Timer(POLL_SECONDS)
        table = gr.Dataframe(headers=HEADERS, interactive=False, elem_id="runs-table", max_height=300)
        with gr.Row():
            run = gr.Dropdown(label="Run", choices=[], elem_id="runs-selected", scale=3)
            cancel = gr.Button("Cancel", variant="stop", interactive=False, scale=1)
            resume = gr.Button("Resume", interactive=False, scale=1, elem_id="runs-resume")
            again = gr.Button("Start again with the same settings", interactive=False, scale=1,
                              elem_id="runs-start-again")
        notice = gr.Markdown(elem_id="runs-notice")
        state = gr.Markdown(elem_id="runs-state")
        progress = gr.HTML()
        with gr.Row():
            # matplotlib, not gr.LinePlot: the page fixes a LinePlot's series when it first draws it, so the
            # validation curve that starts later never showed, and its legend was cut off below the plot
            plot = gr.Plot(label="Loss", format="png", elem_id="runs-loss")
            gallery = gr.Gallery(label="Samples", format="png", columns=4, height=320,
                                 buttons=["download", "fullscreen"])
        log = gr.Textbox(label=f"Log (last {LOG_LINES} lines)", lines=12, max_lines=20, autoscroll=True,
                         interactive=False)
        shown = gr.State({})  # what this browser already shows, so unchanged images are not re-sent each tick
        outputs = [table, run, state, progress, plot, gallery, log, cancel, resume, again, shown]
        listen = dict(api_visibility="private", queue=False, show_progress="hidden")
        gr.on([timer.tick, tab.select, run.input], h.refresh, [run, shown], outputs, **listen)
        table.select(h.select, shown, outputs, **listen)
        cancel.click(as_notice(h.cancel), run, notice, **listen)
        resume.click(as_notice(h.resume), run, notice, **listen)
        again.click(as_notice(h.restart), run, notice, **listen)
        gr.api(h.run_status, api_name="run_status")
        gr.api(h.restart, api_name="restart")
