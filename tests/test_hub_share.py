"""Share: the folder to upload (card parses, weights load, no token anywhere), upload via a recording HfApi, pull."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest

from lora_runs import make_run
from pipelines import hub_share
from pipelines.hub_share import HubError

TOKEN = "hf_TESTtokenNEVERwrittenANYWHERE123"


@pytest.fixture(scope="module")
def run_dir(toy_dataset, tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("runs"), toy_dataset, name="share-me", trigger="sks")


class RecordingApi:
    """Stands in for HfApi: records calls, reaches nothing."""
    def __init__(self, fail: Exception | None = None):
        self.calls, self.fail, self.seen_files = [], fail, []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        if self.fail:
            raise self.fail
        return SimpleNamespace(url=f"https://huggingface.co/{repo_id}")

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs["repo_id"], kwargs))
        self.seen_files = sorted(str(p.relative_to(kwargs["folder_path"])) for p in Path(kwargs["folder_path"]).rglob("*")
                                 if p.is_file())


def test_built_folder_has_weights_samples_and_a_card_that_parses(run_dir, tmp_path):
    from huggingface_hub import ModelCard

    folder = hub_share.build_folder(run_dir, tmp_path / "repo", "alice/shapes-lora", license="mit")
    names = {p.name for p in folder.iterdir()}
    assert {"pytorch_lora_weights.safetensors", "share-me.safetensors", "README.md", "samples"} <= names
    assert list((folder / "samples").glob("*.png"))
    card = ModelCard.load(folder / "README.md")
    data = card.data.to_dict()
    assert {"lora", "diffusers", "text-to-image", "fashion"} <= set(data["tags"])
    assert data["license"] == "mit" and data["instance_prompt"] == "sks"
    assert data.get("base_model") is None  # the toy model is a local path: it must not be published
    assert data["widget"][0]["output"]["url"].startswith("samples/")
    assert "Trigger word: `sks`" in card.text and "| rank | 12 |" in card.text
    assert str(Path.home()) not in card.content and "/tmp" not in card.content


def test_push_uses_the_token_only_in_calls_and_writes_it_nowhere(run_dir, tmp_path, monkeypatch, caplog):
    from tabs import share

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    api = RecordingApi()
    manager = SimpleNamespace(find=lambda run_id, owner: run_dir, runs_root=tmp_path / "runs")
    push, _ = share.make_handlers(manager, api_factory=lambda: api)
    caplog.set_level("DEBUG")
    message = push("fashion/share-me", "alice/shapes-lora", TOKEN, "mit", True, SimpleNamespace(username="alice"))
    assert message == "Uploaded to https://huggingface.co/alice/shapes-lora (private)."
    (create, repo, kwargs), (upload, _, up_kwargs) = api.calls
    assert (create, repo, kwargs["private"], kwargs["token"]) == ("create_repo", "alice/shapes-lora", True, TOKEN)
    assert upload == "upload_folder" and up_kwargs["token"] == TOKEN and "README.md" in api.seen_files
    assert not Path(up_kwargs["folder_path"]).exists()  # the staging folder is gone
    assert TOKEN not in caplog.text
    for root in (run_dir, tmp_path):
        for path in root.rglob("*"):
            if path.is_file():
                assert TOKEN.encode() not in path.read_bytes(), path


def test_push_errors_are_one_sentence(run_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    folder = hub_share.build_folder(run_dir, tmp_path / "repo", "alice/x")
    with pytest.raises(HubError, match="No Hugging Face token"):
        hub_share.push(RecordingApi(), folder, "alice/x", hub_share.token_from(""))
    with pytest.raises(HubError, match="refused the upload to alice/x \\(403 Forbidden\\)"):
        hub_share.push(RecordingApi(fail=RuntimeError("403 Forbidden")), folder, "alice/x", TOKEN)
    with pytest.raises(HubError, match="not a Hub repo id"):
        hub_share.build_folder(run_dir, tmp_path / "r2", "no spaces allowed/x y")
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    assert hub_share.token_from("") == "hf_env" and hub_share.token_from(" hf_box ") == "hf_box"


def test_pull_puts_the_repo_in_the_lora_list(run_dir, tmp_path):
    from pipelines.generate import lora_library
    from tabs import share

    calls = []

    def fake_snapshot(repo_id, local_dir, token, allow_patterns):
        calls.append((repo_id, allow_patterns))
        shutil.copytree(run_dir / "final", local_dir, dirs_exist_ok=True)
        return local_dir
    manager = SimpleNamespace(runs_root=tmp_path / "runs")
    _, pull = share.make_handlers(manager, download=fake_snapshot)
    assert "hub/bob/shapes" in pull("bob/shapes", "", request=SimpleNamespace(username="alice"))
    assert calls == [("bob/shapes", ["*.safetensors", "README.md"])]  # never pickles
    known = lora_library.catalogue([], tmp_path / "loras", "alice")
    assert "hub/bob/shapes" in known and lora_library.resolve("hub/bob/shapes", known)[0][0].trigger_word == "sks"
    assert lora_library.catalogue([], tmp_path / "loras", "carol") == {}


def test_pull_errors_missing_unreachable_and_not_a_lora(tmp_path):
    from huggingface_hub.errors import RepositoryNotFoundError

    def missing(*a, **k):
        raise RepositoryNotFoundError("404", response=SimpleNamespace(status_code=404, headers={}, request=None))

    def offline(*a, **k):
        raise ConnectionError("Network is unreachable")

    def pickles(repo_id, local_dir, **k):
        os.makedirs(local_dir, exist_ok=True)
        Path(local_dir, "model.safetensors").write_bytes(b"\x80\x04junk")

    with pytest.raises(HubError, match="There is no Hub repo bob/none"):
        hub_share.pull("bob/none", tmp_path / "a", download=missing)
    with pytest.raises(HubError, match="Could not download bob/x from the Hub \\(Network is unreachable\\)"):
        hub_share.pull("bob/x", tmp_path / "b", download=offline)
    with pytest.raises(HubError, match="bob/p: model.safetensors is a pickle file"):
        hub_share.pull("bob/p", tmp_path / "c", download=pickles)
    assert not (tmp_path / "c").exists()


def test_the_servers_token_serves_only_a_one_person_server(run_dir, tmp_path, monkeypatch):
    """With logins or on a public Space, a visitor without a token must not push as the operator."""
    from tabs import share

    monkeypatch.setenv("HF_TOKEN", "hf_operator")
    monkeypatch.delenv("SPACE_ID", raising=False)
    api = RecordingApi()
    manager = SimpleNamespace(find=lambda run_id, owner: run_dir, runs_root=tmp_path / "runs")
    push, _ = share.make_handlers(manager, api_factory=lambda: api)
    push("fashion/share-me", "me/x", "", "mit", True, SimpleNamespace(username=None))  # local, no logins
    assert api.calls[0][2]["token"] == "hf_operator"
    with pytest.raises(gr.Error, match="No Hugging Face token"):
        push("fashion/share-me", "operator/x", "", "mit", True, SimpleNamespace(username="bob"))
    monkeypatch.setenv("SPACE_ID", "operator/atelier")
    with pytest.raises(gr.Error, match="No Hugging Face token"):
        push("fashion/share-me", "operator/x", "", "mit", True, SimpleNamespace(username=None))
    assert len(api.calls) == 2  # the refused pushes reached nothing


@pytest.fixture()
def exported_hair(tmp_path, monkeypatch):
    """A hair model as `evaluate --export --force` leaves it: metrics and a failed gate in its metadata."""
    import json

    from pipelines.hair import model as hair_model
    from pipelines.models.registry import TOY_HAIR

    if not (TOY_HAIR / "hair_model.safetensors").is_file():
        pytest.skip("assets/toy-hair is not built (make toy-hair)")
    monkeypatch.setenv("ATELIER_MODELS", str(tmp_path / "models"))
    model = hair_model.load(TOY_HAIR / "hair_model.safetensors")
    model.metadata.update({"metrics": json.dumps({"lpips": 0.31, "identity": 0.42}), "gate_passed": "false",
                           "forced": "true", "base_model": str(TOY_HAIR)})
    hair_model.exported_dir().mkdir(parents=True)
    hair_model.save(hair_model.exported_dir() / "toy-curls.safetensors", model)
    return hair_model.exported_dir() / "toy-curls.safetensors"


def test_a_hair_model_is_pushed_with_its_card_metrics_and_verdict_and_no_secret(exported_hair, tmp_path, caplog):
    from huggingface_hub import ModelCard

    from pipelines.hair import model as hair_model
    from tabs import share

    api = RecordingApi()
    manager = SimpleNamespace(list_runs=lambda owner: [], runs_root=tmp_path / "runs")
    assert share.pushable(manager, "alice") == [("toy-curls (exported hair model)", "exported:toy-curls")]
    folder = share.build_for_push(manager, "exported:toy-curls", "alice", tmp_path / "repo", "alice/curls", "mit")
    card = ModelCard.load(folder / "README.md")
    assert {"hair", "inpainting", "ip-adapter"} <= set(card.data.to_dict()["tags"])
    assert "**failed the gate, exported with --force**" in card.text and "| lpips | 0.31 |" in card.text
    shared = hair_model.load(folder / "hair_model.safetensors")
    assert shared.metadata["base_model"] == "toy-hair" and str(tmp_path) not in card.content  # no server path
    push, _ = share.make_handlers(manager, api_factory=lambda: api)
    caplog.set_level("DEBUG")
    assert "Uploaded" in push("exported:toy-curls", "alice/curls", TOKEN, "mit", True, SimpleNamespace(username="alice"))
    assert "hair_model.safetensors" in api.seen_files and TOKEN not in caplog.text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    with pytest.raises(gr.Error, match="There is no exported hair model '../x'"):
        push("exported:../x", "alice/curls", TOKEN, "mit", True, SimpleNamespace(username="alice"))


def test_pulled_hair_and_anime_models_join_their_owners_lists_only(exported_hair, tmp_path, tiny_runtime):
    from pipelines.models.registry import ANIME_TINY
    from tabs import anime, hair, share
    from training.runs.launcher import RunManager

    def fake_snapshot(repo_id, local_dir, **kwargs):
        os.makedirs(local_dir, exist_ok=True)
        source = exported_hair if repo_id.endswith("curls") else ANIME_TINY
        shutil.copyfile(source, Path(local_dir) / source.name.replace("toy-curls", "hair_model"))
        return local_dir

    manager = RunManager(tmp_path / "runs", poll_seconds=None)
    _, pull = share.make_handlers(manager, download=fake_snapshot)
    alice, bob = SimpleNamespace(username="alice"), SimpleNamespace(username="bob")
    assert "Hair tab" in pull("bob/curls", "", "Hair model", alice)
    assert "Anime tab" in pull("bob/ghibli", "", "Anime model", alice)
    with pytest.raises(gr.Error, match="holds no hair_model.safetensors"):
        pull("bob/ghibli", "", "Hair model", alice)
    hair_choices, *_ = hair.make_handlers(manager, tiny_runtime)
    anime_choices, *_ = anime.make_handlers(manager, tiny_runtime)
    assert "hub bob__curls (failed the gate, exported with --force)" in [l for l, _ in hair_choices(alice)["choices"]]
    assert not [label for label, _ in hair_choices(bob)["choices"] if label.startswith("hub")]
    assert "hub bob__ghibli" in [label for label, _ in anime_choices(alice)["choices"]]
    assert "hub bob__ghibli" not in [label for label, _ in anime_choices(bob)["choices"]]
