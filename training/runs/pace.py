"""How fast a run goes and how long a new one will take, from the times in run events (no file access here)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from training.lora.settings import LoraSettings

# Used only when no run of the use case has finished on this server in this profile: seconds per training image
# (low, high) and seconds outside the steps (loading, caching, saving, final samples; low, high). Measured on a
# 2-core CPU (tiny: ~0.26 s an image, ~40 s around the steps) and guessed for one CUDA GPU at 512 px (full).
ROUGH = {"tiny": ((0.05, 0.4), (20, 120)), "full": ((0.05, 0.5), (30, 600))}
SPREAD = (0.8, 1.25)  # a measured estimate is widened by this much: two runs of one kind differed by 15 % here


@dataclass(frozen=True)
class Pace:
    """A finished run's measured pace."""
    seconds_per_image: float  # training time per image (batch x accumulation, class images included)
    overhead: float  # seconds of the run outside its training steps


def images_per_step(s: LoraSettings) -> int:
    """Images one optimizer step trains on; class images double every batch."""
    return s.batch_size * s.gradient_accumulation_steps * (2 if s.with_prior_preservation else 1)


def _timed_steps(events: list[dict[str, Any]]) -> list[tuple[float, int]]:
    """(time, step) of the last "training" stage event and every "train" event after it."""
    points: list[tuple[float, int]] = []
    for e in events:
        if not (isinstance(e.get("t"), (int, float)) and isinstance(e.get("step"), int)):
            continue
        if e.get("kind") == "stage" and e.get("stage") == "training":
            points = [(e["t"], e["step"])]  # a resumed run starts counting again
        elif e.get("kind") == "train":
            points.append((e["t"], e["step"]))
    return points


def seconds_per_step(events: list[dict[str, Any]], recent: int | None = None) -> float | None:
    """Seconds per step over the last ``recent`` intervals between timed steps (all when None); None before two."""
    points = _timed_steps(events)
    if recent is not None:
        points = points[-(recent + 1):]
    if len(points) < 2 or points[-1][1] <= points[0][1]:
        return None
    return (points[-1][0] - points[0][0]) / (points[-1][1] - points[0][1])


def remaining(events: list[dict[str, Any]], max_steps: int, now: float, recent: int | None = None) -> float | None:
    """Seconds of training left at ``now`` at the pace of ``seconds_per_step``; None until it is known."""
    per_step, points = seconds_per_step(events, recent), _timed_steps(events)
    if per_step is None:
        return None
    t, step = points[-1]
    return max(0.0, (max_steps - step) * per_step - (now - t))


def measured_pace(events: list[dict[str, Any]], started: float, images: int) -> Pace | None:
    """The pace of a run that finished ("done" event) and started at ``started`` (epoch seconds); else None."""
    done = [e for e in events if e.get("kind") == "done" and isinstance(e.get("t"), (int, float))]
    per_step = seconds_per_step(events)
    if not done or per_step is None:
        return None
    points = _timed_steps(events)
    first = points[0][1] if points and points[0][1] < done[-1]["step"] else 0
    overhead = done[-1]["t"] - started - (done[-1]["step"] - first) * per_step
    return Pace(per_step / max(1, images), max(0.0, overhead))


def estimate(settings: LoraSettings, profile: str, history: list[Pace], use_case: str = "") -> str:
    """How long a run of ``settings`` will take: a range measured from ``history`` when there is one, else a
    rough guess that says so."""
    images = settings.max_steps * images_per_step(settings)
    kind = f"{use_case} " if use_case else ""
    if history:
        times = [p.overhead + images * p.seconds_per_image for p in history]
        low, high = min(times) * SPREAD[0], max(times) * SPREAD[1]
        runs = f"the last {kind}run" if len(history) == 1 else f"the last {len(history)} {kind}runs"
        return f"{settings.max_steps} steps, about {duration_range(low, high)} (measured from {runs} on this server)"
    if profile not in ROUGH:
        raise ValueError(f"Unknown profile {profile!r}; use one of: {', '.join(ROUGH)}.")
    (fast, slow), (short, long) = ROUGH[profile]
    low, high = short + images * fast, long + images * slow
    return (f"{settings.max_steps} steps, roughly {duration_range(low, high)} (a rough guess: no {kind}run has "
            "finished on this server yet)")


def duration_range(low: float, high: float) -> str:
    """A span of seconds in words: "30–60 seconds", "2–5 minutes", "1.5–2 hours"."""
    if high < 100:
        return f"{max(10, math.floor(low / 10) * 10)}–{max(20, math.ceil(high / 10) * 10)} seconds"
    if high < 100 * 60:
        lo, hi = max(1, math.floor(low / 60)), math.ceil(high / 60)
        return f"{lo}–{max(hi, lo + 1)} minutes"
    lo, hi = math.floor(low / 1800) / 2, math.ceil(high / 1800) / 2
    return f"{lo:g}–{max(hi, lo + 0.5):g} hours"


def clock(seconds: float) -> str:
    """Seconds as a clock: "0:42", "12:05", "1:02:03"."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def speed(per_step: float) -> str:
    """Steps per second as tqdm shows them: "3.2 it/s" when fast, "1.5 s/it" when slow."""
    return f"{1 / per_step:.3g} it/s" if per_step < 1 else f"{per_step:.3g} s/it"
