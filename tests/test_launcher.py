"""Training runs: submit, queue, cancel, resume and restart with a fake trainer; owner isolation in the tabs;
safe ZIP extraction. The fake trainer (tests/fake_trainer.py) writes the real run folder in well under a second.
"""
from __future__ import annotations

import json
import stat
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from training.lora.settings import parse_sets
from training.runs.launcher import LaunchError, RunManager, build_command, trainer_args
from training.lora.settings import SettingsError, resolve_settings
from training.prepare.safe_zip import UnsafeZipError, safe_extract_zip

FAKE = "tests.fake_trainer"


def wait_for(check, timeout: float = 15.0, every: float = 0.05):
    """Poll ``check()`` until it returns something truthy; fail with the last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            assert value, f"timed out; last value {value!r}"
            return value
        time.sleep(every)


def pid_gone(pid: int) -> bool:
    """True when the process is gone or a zombie (init may be slow to reap orphans here)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.fixture
def data(tmp_path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"not really an image")
    return folder


@pytest.fixture
def make_manager(tmp_path):
    """RunManagers on one runs root; every trainer still alive at the end is killed."""
    made: list[RunManager] = []

    def make(max_active: int = 1, poll_seconds: float | None = 0.05) -> RunManager:
        manager = RunManager(tmp_path / "runs", max_active=max_active, module=FAKE, poll_seconds=poll_seconds)
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.close()
    if made:
        for run in made[-1].list_runs(None):
            if run.state in ("queued", "running"):
                made[-1].cancel(made[-1].find(run.id, None), grace=0.5)
    for manager in made:  # a closed manager still owns its children: collect them, as a server's exit would
        wait_for(lambda m=manager: (m._reap(), not m._children)[1], timeout=5)


def state_of(manager: RunManager, run_dir: Path, *states: str):
    status = manager.status(run_dir)
    return status if status.state in states else None


def test_command_line_is_built_from_the_request(tmp_path):
    args = trainer_args("ghibli", tmp_path / "d", tmp_path / "r", "tiny", 7, {"rank": "4"})
    command = build_command("py", {"args": args, "resume": True}, module="m")
    assert command == ["py", "-m", "m", "--preset", "ghibli", "--data", str(tmp_path / "d"), "--output",
                       str(tmp_path / "r"), "--profile", "tiny", "--max-steps", "7", "--set", "rank=4",
                       "--resume", "latest"]


def test_submit_runs_to_done_and_reads_events_back(make_manager, data):
    manager = make_manager()
    run_dir = manager.submit("fashion", "first", data, {"rank": "4"}, "local", "tiny", max_steps=3)
    assert manager.status(run_dir).state in ("running", "done")
    status = wait_for(lambda: state_of(manager, run_dir, "done", "failed"))
    assert status.state == "done", (status, (run_dir / "process.log").read_text())
    assert (status.step, status.max_steps, status.id) == (3, 3, "fashion/first")
    assert status.last_loss == pytest.approx(1 / 3)
    request = json.loads((run_dir / "request.json").read_text())
    assert request["owner"] == "local" and request["args"][-2:] == ["--set", "rank=4"]
    assert (run_dir / "config.toml").exists() and (run_dir / "samples").is_dir()
    assert [r.id for r in manager.list_runs("local")] == ["fashion/first"]
    from tabs.runs import loss_curves, sample_files, sample_images
    from training.runs.folder import loss_figure

    curves = loss_curves(run_dir)
    assert [step for step, _ in curves["train"]] == [1, 2, 3] and curves["validation"] == [(3, 0.5)]
    legend = loss_figure(curves).axes[0].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["train", "validation"]
    [(image, caption)] = sample_images(sample_files(run_dir))
    assert caption == "step-3-0" and image.getpixel((0, 0)) == (220, 40, 40)  # a picture, not a server path


def test_submit_refuses_bad_input_and_numbers_taken_names(make_manager, data):
    manager = make_manager(max_active=0)  # 0 pauses the queue: nothing starts
    with pytest.raises(LaunchError, match="letters, digits"):
        manager.submit("fashion", "../evil", data, {}, "local", "tiny")
    with pytest.raises(LaunchError, match="Unknown use case"):
        manager.submit("portraits", "x", data, {}, "local", "tiny")
    with pytest.raises(LaunchError, match="The hair dataset data has no images/ folder"):
        manager.submit("hair", "x", data, {}, "local", "tiny")
    with pytest.raises(LaunchError, match="does not exist"):
        manager.submit("fashion", "x", data / "missing", {}, "local", "tiny")
    with pytest.raises(SettingsError, match="rank"):
        manager.submit("fashion", "x", data, {"rank": "lots"}, "local", "tiny")
    names = [manager.submit("ghibli", "same", data, {}, "local", "tiny").name for _ in range(3)]
    assert names == ["same", "same-2", "same-3"]
    assert {r.state for r in manager.list_runs(None)} == {"queued"}


def test_second_run_waits_in_the_queue_until_the_first_ends(make_manager, data):
    manager = make_manager()
    first = manager.submit("fashion", "a", data, {}, "local", "tiny", max_steps=12)
    second = manager.submit("fashion", "b", data, {}, "local", "tiny", max_steps=2)
    assert manager.status(second).state == "queued"
    wait_for(lambda: state_of(manager, second, "done"))
    assert manager.status(first).state == "done"
    ended = max(json.loads(line)["t"] for line in (first / "events.jsonl").read_text().splitlines())
    started = json.loads(next(l for l in (second / "events.jsonl").read_text().splitlines()))["t"]
    assert started > ended


@pytest.mark.parametrize("ignore_term", [False, True])
def test_cancel_kills_the_whole_process_group(make_manager, data, monkeypatch, ignore_term):
    monkeypatch.setenv("FAKE_TRAINER_CHILD", "1")
    if ignore_term:  # only SIGKILL after the grace period stops it
        monkeypatch.setenv("FAKE_TRAINER_IGNORE_TERM", "1")
    manager = make_manager()
    run_dir = manager.submit("ghibli", "long", data, {}, "local", "tiny", max_steps=100_000)
    child = int(wait_for(lambda: (run_dir / "child.pid").exists() and (run_dir / "child.pid").read_text()))
    leader = json.loads((run_dir / "process.json").read_text())["pid"]
    manager.cancel(run_dir, grace=0.5)
    assert manager.status(run_dir).state == "cancelled"
    wait_for(lambda: pid_gone(leader) and pid_gone(child), timeout=10)
    with pytest.raises(LaunchError, match="only a queued or running run can be cancelled"):
        manager.cancel(run_dir)


def test_resume_continues_from_the_latest_checkpoint(make_manager, data, monkeypatch):
    manager = make_manager()
    run_dir = manager.submit("fashion", "r", data, {}, "local", "tiny", max_steps=30)
    wait_for(lambda: manager.status(run_dir).step >= 4)
    with pytest.raises(LaunchError, match="Only a failed or cancelled run can be resumed"):
        manager.resume(run_dir)
    manager.cancel(run_dir, grace=2)
    wait_for(lambda: not manager._alive(run_dir))
    monkeypatch.setenv("FAKE_TRAINER_STEP_SECONDS", "0.01")
    manager.resume(run_dir)
    status = wait_for(lambda: state_of(manager, run_dir, "done", "failed"))
    assert status.state == "done" and status.step == 30
    assert "resumed from step-" in (run_dir / "train.log").read_text()
    assert json.loads((run_dir / "process.json").read_text())["command"][-2:] == ["--resume", "latest"]


def test_a_trainer_error_fails_the_run_and_resume_needs_a_checkpoint(make_manager, data, tmp_path):
    manager = make_manager()
    other = tmp_path / "other"
    other.mkdir()
    blocker = manager.submit("fashion", "blocker", data, {}, "local", "tiny", max_steps=100_000)
    doomed = manager.submit("fashion", "doomed", other, {}, "local", "tiny")
    other.rmdir()  # gone before the queued run starts: the trainer reports it
    manager.cancel(blocker, grace=1)
    status = wait_for(lambda: state_of(manager, doomed, "failed", "done"))
    assert status.state == "failed" and "does not exist" in status.message and status.step == 0
    with pytest.raises(LaunchError, match="no checkpoint to resume from"):
        manager.resume(doomed)


def test_state_and_queue_survive_a_server_restart(make_manager, data):
    before = make_manager()
    first = before.submit("dreambooth", "one", data, {}, "local", "tiny", max_steps=100_000)
    second = before.submit("dreambooth", "two", data, {}, "local", "tiny", max_steps=2)
    wait_for(lambda: before.status(first).step >= 1)
    before.close()  # the old server goes away; its trainer keeps running
    after = make_manager()
    assert [(r.name, r.state) for r in after.list_runs("local")] == [("two", "queued"), ("one", "running")]
    after.cancel(first, grace=1)
    assert wait_for(lambda: state_of(after, second, "done", "failed")).state == "done"


def test_owners_see_and_act_on_their_own_runs_only(make_manager, data):
    import gradio as gr

    from tabs.runs import RunsHandlers

    manager = make_manager(max_active=0)
    alice = manager.submit("fashion", "mine", data, {}, "alice", "tiny")
    manager.submit("fashion", "theirs", data, {}, "bob", "tiny")
    as_alice, as_bob = SimpleNamespace(username="alice"), SimpleNamespace(username="bob")
    assert [r.id for r in manager.list_runs("alice")] == ["fashion/mine"]
    assert len(manager.list_runs(None)) == 2
    with pytest.raises(LaunchError, match="no run named"):
        manager.find("fashion/theirs", "alice")
    with pytest.raises(LaunchError, match="no run named"):
        manager.find("../../etc", "alice")

    private = RunsHandlers(manager, shared=False)
    assert [r.id for r in private.runs(as_alice)] == ["fashion/mine"]
    assert private.run_status("mine", as_alice)["owner"] == "alice"
    for handler in (private.run_status, private.cancel, private.resume):
        with pytest.raises(gr.Error, match="no run named 'fashion/theirs'"):
            handler("fashion/theirs", as_alice)
    with pytest.raises(LaunchError):
        private.details("theirs", as_alice)
    table = private.refresh(None, {}, as_alice)[0]
    assert [row[0] for row in table] == ["fashion/mine"]

    shared = RunsHandlers(manager, shared=True)  # everyone sees everything, but acts on their own runs only
    assert shared.run_status("fashion/theirs", as_alice)["owner"] == "bob"
    with pytest.raises(gr.Error, match="no run named"):
        shared.cancel("fashion/theirs", as_alice)
    assert shared.cancel("fashion/mine", as_alice) == "Cancelled fashion/mine."
    assert manager.status(alice).state == "cancelled" and private.run_status("theirs", as_bob)["state"] == "queued"


def test_train_tab_sends_only_changed_settings_and_requires_rights_for_dreambooth(make_manager, data, tmp_path):
    import gradio as gr

    from tabs.train import FORM_FIELDS, make_handlers, preset_form

    manager = make_manager(max_active=0)
    collect, train, estimate_text = make_handlers(manager, "tiny", data_roots=(data,))
    values = dict(zip(FORM_FIELDS, preset_form("ghibli", "tiny")))
    values.update(rank=16, validation_prompts="a red square\na blue circle", hflip=0.5)  # hflip: the preset's
    changes = collect("ghibli", *values.values())
    assert changes == {"rank": 16, "validation_prompts": ["a red square", "a blue circle"]}
    assert "200 steps, roughly" in estimate_text("ghibli", *values.values())  # the preset's [tiny] length

    message = train("ghibli", str(data), None, "look", changes, False, SimpleNamespace(username="carol"))
    assert message.startswith("Queued **ghibli/look**")
    request = json.loads((manager.runs_root / "ghibli" / "look" / "request.json").read_text())
    assert request["overrides"] == {"rank": "16", "validation_prompts": '["a red square", "a blue circle"]'}
    assert request["owner"] == "carol"

    with pytest.raises(gr.Error, match="I have the right to use these images"):
        train("dreambooth", str(data), None, "face", {}, False, None)
    train("ghibli", str(data), None, "comma", {"validation_prompts": ["a red, square"]}, False, None)
    request = json.loads((manager.runs_root / "ghibli" / "comma" / "request.json").read_text())
    assert parse_sets([f"validation_prompts={request['overrides']['validation_prompts']}"]) == \
        {"validation_prompts": ["a red, square"]}
    with pytest.raises(gr.Error, match="either a dataset folder or a ZIP"):
        train("ghibli", str(data), str(tmp_path / "d.zip"), "x", {}, False, None)

    archive = tmp_path / "faces.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("faces/1.png", b"x")
        z.writestr("__MACOSX/faces/._1.png", b"x")
    assert train("dreambooth", "", str(archive), "face", {}, True, None).startswith("Queued **dreambooth/face**")
    extracted = Path(json.loads((manager.runs_root / "dreambooth" / "face" / "request.json").read_text())["data"])
    assert extracted.name == "faces" and extracted.is_relative_to(manager.runs_root.parent / "uploads" / "local")
    with pytest.raises(gr.Error, match="is not one of your datasets"):
        train("dreambooth", str(extracted), None, "steal", {}, True, SimpleNamespace(username="mallory"))


def test_tabs_register_the_train_and_run_status_endpoints(make_manager, tiny_runtime):
    import gradio as gr

    from tabs import runs, train

    manager = make_manager(max_active=0, poll_seconds=None)
    with gr.Blocks() as demo:
        train.build(manager, tiny_runtime)
        runs.build(manager)
    endpoints = demo.get_api_info()["named_endpoints"]
    assert [p["parameter_name"] for p in endpoints["/train"]["parameters"]] == [
        "use_case", "data_dir", "dataset_zip", "run_name", "settings", "rights_confirmed"]
    assert [p["parameter_name"] for p in endpoints["/run_status"]["parameters"]] == ["run"]


def zip_with(path: Path, name: str, data: bytes = b"x", mode: int | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.external_attr = mode << 16
        z.writestr(info, data)
    return path


@pytest.mark.parametrize("name, mode, words", [
    ("../evil", None, "would land outside"),
    ("ok/../../evil", None, "would land outside"),
    ("/etc/evil", None, "absolute path"),
    ("C:/evil", None, "absolute path"),
    ("link", stat.S_IFLNK | 0o777, "symbolic link"),
])
def test_unsafe_zips_are_refused_by_name(tmp_path, name, mode, words):
    archive = zip_with(tmp_path / "evil.zip", name, b"/etc/passwd", mode)
    with pytest.raises(UnsafeZipError, match=rf"evil\.zip: member '{name}' .*{words}"):
        safe_extract_zip(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil").exists()


def test_zip_limits_and_a_good_zip(tmp_path):
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("set/a.png", b"a" * 1000)
        z.writestr("set/sub/b.txt", b"a caption")
    out = safe_extract_zip(good, tmp_path / "out")
    assert (out / "set" / "a.png").read_bytes() == b"a" * 1000 and (out / "set/sub/b.txt").exists()
    with pytest.raises(UnsafeZipError, match=r"good\.zip: it unpacks to more than 500 bytes .*'set/a.png'"):
        safe_extract_zip(good, tmp_path / "small", max_bytes=500)
    with pytest.raises(UnsafeZipError, match="more than the limit of 1"):
        safe_extract_zip(good, tmp_path / "few", max_members=1)
    (tmp_path / "fake.zip").write_text("not a zip")
    with pytest.raises(UnsafeZipError, match="fake.zip is not a readable ZIP file"):
        safe_extract_zip(tmp_path / "fake.zip", tmp_path / "x")
