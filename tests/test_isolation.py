"""Users stay in their own space: folders named in forms, path-like settings, served files, several logins.

The served test logs two real users in (``--auth alice:…,bob:…``) and has bob try every cross-user route on
alice's uploads, outputs and runs.
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from PIL import Image

from app import check_data_roots, hash_password, login_checker, parse_auth
from conftest import serve
from tabs.common import FolderError, owned_folder, private_roots
from training.runs.cli import UsageError
from training.runs.launcher import LaunchError, RunManager

LOGINS = "alice:alice-secret,bob:bob-secret"


def alice_space(runs_root: Path) -> dict[str, Path]:
    """What alice left on the server: a prepared dataset, a generated image and a finished run with a sample."""
    base = runs_root.parent
    dataset = base / "uploads" / "alice" / "datasets" / "set1" / "dataset"
    dataset.mkdir(parents=True)
    Image.new("RGB", (64, 64), (220, 40, 40)).save(dataset / "a.png")
    (dataset / "metadata.jsonl").write_text('{"file_name": "a.png", "text": "a red square"}\n')
    outputs = base / "outputs" / "alice" / "2026-11-29"
    outputs.mkdir(parents=True)
    Image.new("RGB", (64, 64), (40, 80, 220)).save(outputs / "000-00.png")
    run = runs_root / "fashion" / "alice-run"
    (run / "samples").mkdir(parents=True)
    Image.new("RGB", (64, 64), (40, 180, 60)).save(run / "samples" / "step-4-0.png")
    (run / "config.toml").write_text('learning_rate = 0.0001\n')
    (run / "request.json").write_text(json.dumps({"use_case": "fashion", "owner": "alice", "max_steps": 4,
                                                  "created": "2026-11-29T00:00:00Z"}))
    (run / "process.json").write_text(json.dumps({"pid": 2**22 + 7, "returncode": 0}))
    return {"dataset": dataset, "outputs": outputs.parent, "samples": run / "samples",
            "sample": run / "samples" / "step-4-0.png", "config": run / "config.toml"}


@pytest.fixture
def manager(tmp_path):
    made = RunManager(tmp_path / "runs", max_active=0, poll_seconds=None)
    yield made
    made.close()


def test_a_typed_folder_must_be_the_users_own_after_resolving_links(manager, tmp_path):
    alice = alice_space(manager.runs_root)
    assert owned_folder(manager, "alice", "set1/dataset") == alice["dataset"].resolve()  # by name
    assert owned_folder(manager, "alice", str(alice["dataset"])) == alice["dataset"].resolve()
    bob_uploads = manager.runs_root.parent / "uploads" / "bob"
    bob_uploads.mkdir(parents=True)
    (bob_uploads / "link").symlink_to(alice["dataset"], target_is_directory=True)
    elsewhere = tmp_path / "server-data"
    elsewhere.mkdir()
    for typed in (str(alice["dataset"]), str(alice["outputs"]), str(alice["samples"]), "../../alice/datasets/set1/dataset",
                  str(bob_uploads / "link"), "/etc", str(elsewhere), str(manager.runs_root)):
        with pytest.raises(FolderError, match="is not one of your datasets"):
            owned_folder(manager, "bob", typed)
    # a server folder the operator allowed with --data-root is open to everyone
    assert owned_folder(manager, "bob", str(elsewhere), (elsewhere,)) == elsewhere.resolve()


def test_data_roots_may_not_overlap_users_folders(tmp_path):
    runs = tmp_path / "runs"
    for folder in (runs, tmp_path / "data"):
        folder.mkdir()
    assert check_data_roots([tmp_path / "data"], private_roots(runs)) == ((tmp_path / "data").resolve(),)
    for bad in (tmp_path, runs / "fashion", tmp_path / "uploads" / "alice"):
        bad.mkdir(parents=True, exist_ok=True)
        with pytest.raises(UsageError, match="holds users' own files"):
            check_data_roots([bad], private_roots(runs))
    with pytest.raises(UsageError, match="is not a folder"):
        check_data_roots([tmp_path / "missing"], private_roots(runs))


def test_settings_that_name_a_server_folder_are_refused_from_the_hub(manager, tmp_path):
    data = alice_space(manager.runs_root)["dataset"]
    with pytest.raises(LaunchError, match="class_data_dir names a folder on the server"):
        manager.submit("dreambooth", "x", data, {"class_data_dir": str(tmp_path / "anywhere")}, "alice", "tiny")
    assert not (tmp_path / "anywhere").exists() and not (manager.runs_root / "dreambooth" / "x").exists()


def test_several_logins_from_flags_env_style_lists_and_a_hash_file(tmp_path):
    logins = parse_auth(["alice:pa,bob:pb", "carol:p:c"])
    assert logins == {"alice": "pa", "bob": "pb", "carol": "p:c"}
    file = tmp_path / "users.txt"
    file.write_text(f"# team\ndave:{hash_password('d,ave')}\n\n")
    check = login_checker(parse_auth(["alice:pa"], file))
    assert check("alice", "pa") and check("dave", "d,ave")
    assert not check("alice", "pb") and not check("dave", "dave") and not check("eve", "pa")
    assert login_checker({}) is None
    with pytest.raises(UsageError) as err:
        parse_auth(["alice:pa,bob-secret-password"])
    assert "login 2" in str(err.value) and "secret" not in str(err.value)
    file.write_text("erin:plain-text-password\n")
    with pytest.raises(UsageError, match="line 1 is not USER:HASH") as err:
        parse_auth([], file)
    assert "plain-text" not in str(err.value)


def test_app_takes_several_logins_and_checks_data_roots_at_start(tmp_path):
    from test_app_cli import assert_one_line_error, run_app

    result = run_app("--profile", "tiny", "--auth", "alice:pa,bob", "--port", "1")
    assert_one_line_error(result, "--auth login 2")
    runs = tmp_path / "runs"
    runs.mkdir()
    result = run_app("--profile", "tiny", "--data-root", str(tmp_path), env={"ATELIER_RUNS": str(runs)})
    assert_one_line_error(result, "--data-root", "holds users' own files")


@pytest.fixture(scope="module")
def two_users(tiny_runtime, tmp_path_factory):
    runs_root = tmp_path_factory.mktemp("shared-server") / "runs"
    runs_root.mkdir()
    alice = alice_space(runs_root)
    bobs = runs_root.parent / "uploads" / "bob" / "datasets" / "mine"
    bobs.mkdir(parents=True)
    demo, url = serve(tiny_runtime, runs_root, parse_auth([LOGINS]))
    yield url, alice
    demo.close()


def client_for(url: str, user: str):
    from gradio_client import Client

    return Client(url, auth=(user, f"{user}-secret"), verbose=False)


def test_a_second_user_reaches_nothing_of_the_first(two_users):
    from gradio_client.exceptions import AppError

    url, alice = two_users
    bob = client_for(url, "bob")
    attempts = {
        "/train": [("fashion", str(alice[key]), None, "steal", {}, False) for key in ("dataset", "outputs", "samples")]
        + [("fashion", "../../alice/datasets/set1/dataset", None, "steal", {}, False)],
        "/anime_train": [(str(alice["outputs"]), None, "", None, True, "steal", {}, True)],
    }
    for api_name, calls in attempts.items():
        for args in calls:
            with pytest.raises(AppError, match="is not one of your datasets"):
                bob.predict(*args, api_name=api_name)
    with pytest.raises(AppError, match="class_data_dir"):  # path settings, even with a dataset of bob's own
        bob.predict("dreambooth", "mine", None, "s", {"class_data_dir": str(alice["outputs"])}, True,
                    api_name="/train")
    with pytest.raises(AppError, match="no run named"):
        bob.predict("fashion/alice-run", api_name="/run_status")
    for folder in (str(alice["dataset"]), "../../alice/datasets/set1/dataset"):
        with pytest.raises(AppError, match="not one of your prepared datasets"):
            bob.predict(folder, {"headers": ["file_name", "text"], "data": [["a.png", "mine now"]]},
                        api_name="/save_captions")
    assert "mine now" not in (alice["dataset"] / "metadata.jsonl").read_text()
    from gradio_client import handle_file

    with pytest.raises(AppError, match="not one of your anime runs"):
        bob.predict(str(alice["sample"]), handle_file(str(alice["sample"])), handle_file(str(alice["sample"])),
                    api_name="/stylize")
    assert client_for(url, "alice").predict("fashion/alice-run", api_name="/run_status")["owner"] == "alice"
    assert not list((alice["samples"].parents[2]).glob("*/steal*"))  # no run was created


def test_run_files_are_never_served_by_path(two_users):
    url, alice = two_users
    with httpx.Client(base_url=url) as anonymous:
        for file in (alice["sample"], alice["config"]):
            assert anonymous.get(f"gradio_api/file={file}").status_code in (401, 403)
    for user in ("bob", "alice"):  # not even to the owner: the Runs tab sends copies
        with httpx.Client(base_url=url) as session:
            assert session.post("login", data={"username": user, "password": f"{user}-secret"}).status_code == 200
            for file in (alice["sample"], alice["config"], next(alice["outputs"].glob("*/*.png"))):
                assert session.get(f"gradio_api/file={file}").status_code == 403, (user, file)


def test_the_runs_tab_shows_samples_as_pictures(two_users):
    from tabs.runs import RunsHandlers

    url, alice = two_users
    manager = RunManager(alice["samples"].parents[2], max_active=0, poll_seconds=None)
    outputs = RunsHandlers(manager).refresh("fashion/alice-run", {}, SimpleNamespace(username="alice"))
    [(picture, caption)] = outputs[5]
    assert isinstance(picture, Image.Image) and caption == "step-4-0"
    manager.close()


def test_an_unexpected_error_shows_one_sentence_without_the_librarys_text():
    import gradio as gr

    from tabs.common import user_errors

    @user_errors
    def handler():
        raise RuntimeError("cannot open /srv/atelier/uploads/alice/secret.png: reshape of size 0")

    with pytest.raises(gr.Error) as err:
        handler()
    assert "RuntimeError" in err.value.message and "/srv" not in err.value.message
    assert "reshape" not in err.value.message
