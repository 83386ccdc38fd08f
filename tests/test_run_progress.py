"""Honest progress (issue 14): estimates measured on this server, the stage and speed of a running run, a run
without a checkpoint that can be started again, and use cases named by what a user wants."""
from __future__ import annotations

import json
from datetime import datetime
from types import SimpleNamespace

import pytest

from test_launcher import data, make_manager, state_of, wait_for  # noqa: F401 (fixtures)
from training.lora.settings import resolve_settings
from training.runs.pace import Pace, clock, duration_range, estimate, speed

ALICE, MALLORY = SimpleNamespace(username="alice"), SimpleNamespace(username="mallory")


def wall_seconds(run_dir) -> float:
    """From the trainer's start to its "done" event: what the user waited."""
    started = datetime.fromisoformat(json.loads((run_dir / "process.json").read_text())["started"]).timestamp()
    done = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()][-1]
    assert done["kind"] == "done"
    return done["t"] - started


def test_estimate_is_a_labelled_range_measured_from_earlier_runs_or_says_it_is_a_guess():
    sixty = resolve_settings("fashion", {"max_steps": "60"})  # 60 steps x 4 images
    assert estimate(sixty, "tiny", [Pace(0.25, 30)], "fashion") == (  # 90 s
        "60 steps, about 1–2 minutes (measured from the last fashion run on this server)")
    slow_and_fast = [Pace(2.0, 60), Pace(3.0, 120)]  # 540 s and 840 s
    assert estimate(sixty, "tiny", slow_and_fast, "fashion").startswith("60 steps, about 7–18 minutes (measured "
                                                                      "from the last 2 fashion runs")
    guess = estimate(sixty, "tiny", [], "fashion")
    assert guess.startswith("60 steps, roughly ") and "a rough guess: no fashion run has finished" in guess
    with pytest.raises(ValueError, match="Unknown profile 'auto'"):
        estimate(sixty, "auto", [])
    assert [duration_range(30, 55), duration_range(70, 190), duration_range(5000, 9000)] == [
        "30–60 seconds", "1–4 minutes", "1–2.5 hours"]
    assert [clock(42), clock(725), clock(3723), speed(0.25), speed(1.5)] == [
        "0:42", "12:05", "1:02:03", "4 it/s", "1.5 s/it"]


def test_estimate_comes_from_the_last_runs_of_the_use_case_and_profile(make_manager, data, monkeypatch):
    from tabs.train import FORM_FIELDS, make_handlers, preset_form

    manager = make_manager()
    _, train, estimate_text = make_handlers(manager, "tiny", data_roots=(data,))
    values = dict(zip(FORM_FIELDS, preset_form("fashion", "tiny")), max_steps=24)
    assert "roughly" in estimate_text("fashion", *values.values())
    monkeypatch.setenv("FAKE_TRAINER_STEP_SECONDS", "0.1")
    monkeypatch.setenv("FAKE_TRAINER_LOAD_SECONDS", "0.3")  # time outside the steps counts too
    first = manager.submit("fashion", "first", data, {}, "alice", "tiny", max_steps=8)
    manager.submit("fashion", "other-profile", data, {}, "alice", "full", max_steps=2)
    manager.submit("ghibli", "other-use-case", data, {}, "alice", "tiny", max_steps=2)
    for run in manager.list_runs(None):
        wait_for(lambda r=run: state_of(manager, manager.find(r.id, None), "done"))
    [pace] = manager.paces("fashion", "tiny")  # neither the full-profile run nor the Ghibli one
    assert pace.seconds_per_image == pytest.approx(0.1 / 4, rel=0.5) and 0.3 <= pace.overhead < 5
    assert manager.paces("dreambooth", "tiny") == [] and manager.paces("../fashion", "tiny") == []

    text = estimate_text("fashion", *values.values())
    assert text.startswith("**Estimate** (tiny profile): 24 steps, about ") and "the last fashion run" in text
    message = train("fashion", str(data), None, "second", {"max_steps": 24}, False, ALICE)
    assert "measured from the last fashion run on this server" in message
    second = manager.find("fashion/second", "alice")
    wait_for(lambda: state_of(manager, second, "done"))
    predicted, actual = pace.overhead + 24 * 4 * pace.seconds_per_image, wall_seconds(second)
    assert 0.5 * predicted < actual < 2 * predicted, (predicted, actual, wall_seconds(first))


def test_a_running_run_shows_its_stage_speed_elapsed_and_eta(make_manager, data, monkeypatch):
    from tabs.runs import RunsHandlers, progress_line

    monkeypatch.setenv("FAKE_TRAINER_LOAD_SECONDS", "1.5")
    monkeypatch.setenv("FAKE_TRAINER_STEP_SECONDS", "0.1")
    manager = make_manager()
    run_dir = manager.submit("fashion", "watched", data, {}, "alice", "tiny", max_steps=40)
    loading = wait_for(lambda: (s := manager.status(run_dir)).stage == "loading" and s)
    assert loading.message == "Loading models and data." and loading.seconds_per_step is None
    training = wait_for(lambda: (s := manager.status(run_dir)).step >= 5 and s.step < 35 and s)
    assert training.stage == "training" and training.message.startswith(f"Training: step {training.step} of 40")
    assert training.seconds_per_step == pytest.approx(0.1, rel=0.5) and 0 < training.eta < 4
    assert training.elapsed >= 1.5
    line = progress_line(training)
    assert line.startswith(f"Training · step {training.step} of 40 · ") and " it/s · elapsed 0:0" in line
    assert line.endswith(" left")
    api = RunsHandlers(manager).run_status("watched", ALICE)
    assert {"stage", "seconds_per_step", "eta", "elapsed"} <= api.keys()
    done = wait_for(lambda: state_of(manager, run_dir, "done"))
    assert done.eta is None and done.elapsed >= 1.5 + 40 * 0.1
    assert "left" not in progress_line(done) and progress_line(done).startswith("step 40 of 40 · ")


def test_resume_without_a_checkpoint_says_so_and_the_run_starts_again_with_its_settings(make_manager, data,
                                                                                         monkeypatch):
    from tabs.runs import RunsHandlers, as_notice

    manager = make_manager()
    monkeypatch.setenv("FAKE_TRAINER_FAIL_AT", "1")  # before the first checkpoint (every 2 steps)
    failed = manager.submit("fashion", "nan", data, {"rank": "4"}, "alice", "tiny", max_steps=6)
    wait_for(lambda: state_of(manager, failed, "failed"))
    monkeypatch.delenv("FAKE_TRAINER_FAIL_AT")
    h = RunsHandlers(manager)
    assert as_notice(h.resume)("fashion/nan", ALICE) == (
        "fashion/nan has no checkpoint to resume from; start it again with the same settings instead.")
    again_enabled = h.refresh("fashion/nan", {}, ALICE)[9]
    assert again_enabled.interactive is True  # the "Start again with the same settings" button
    assert as_notice(h.restart)("fashion/nan", MALLORY) == "There is no run named 'fashion/nan' among your runs."

    assert as_notice(h.restart)("fashion/nan", ALICE) == "Started **fashion/nan-2** with the settings of fashion/nan."
    again = manager.find("fashion/nan-2", "alice")
    old, new = (json.loads((d / "request.json").read_text()) for d in (failed, again))
    for key in ("use_case", "data", "overrides", "profile", "max_steps", "owner"):
        assert new[key] == old[key], key
    assert wait_for(lambda: state_of(manager, again, "done", "failed")).state == "done"


def test_use_cases_are_named_by_what_a_user_wants(make_manager, tiny_runtime):
    import gradio as gr

    from tabs import runs, train

    manager = make_manager(max_active=0, poll_seconds=None)
    with gr.Blocks() as demo:
        train.build(manager, tiny_runtime)
        runs.build(manager)
    [radio] = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "train-use-case"]
    assert radio.choices == [("Fashion LoRA from captioned photos", "fashion"), ("Style LoRA (e.g. Ghibli)", "ghibli"),
                             ("Portrait of one person (DreamBooth)", "dreambooth")]
    endpoints = demo.get_api_info()["named_endpoints"]
    assert [p["parameter_name"] for p in endpoints["/restart"]["parameters"]] == ["run"]
    assert "seed" not in json.dumps(endpoints["/train"])
