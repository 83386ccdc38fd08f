"""The Hair tab: ``hair_tryon`` through gradio_client on the served hub (with and without a mask), the automatic mask
in the editor, and a user's models kept from other users."""
from __future__ import annotations

import random
import shutil

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from pipelines.hair import toy_hair
from pipelines.models.registry import TOY_HAIR

pytestmark = pytest.mark.skipif(not (TOY_HAIR / "hair_model.safetensors").is_file(),
                                reason="assets/toy-hair is not built (make toy-hair)")


def portrait_file(folder, seed, **fixed):
    p = toy_hair.random_portrait(random.Random(seed), **fixed)
    path = folder / f"portrait-{seed}.png"
    toy_hair.render(p).save(path)
    return p, path


@pytest.fixture(scope="module")
def client(served_app):
    from gradio_client import Client

    return Client(served_app, verbose=False)


def test_the_api_repaints_inside_the_automatic_mask_and_keeps_the_rest(client, tmp_path):
    from gradio_client import handle_file

    p, path = portrait_file(tmp_path, 3, color="블랙", curl="생머리")
    result, mask, identity = client.predict(handle_file(str(path)), "황갈색", "curly", "", None, None, 5,
                                            api_name="/hair_tryon")
    image, used = Image.open(result).convert("RGB"), np.asarray(Image.open(mask).convert("L")) > 127
    original = np.asarray(toy_hair.render(p))
    assert image.size == (64, 64) and used[toy_hair.hair_mask(p)].mean() > 0.8
    assert (np.asarray(image)[~used] == original[~used]).all()
    assert (np.asarray(image)[used] != original[used]).any() and -1 <= identity <= 1
    assert "golden brown curly hairstyle" in Image.open(result).info["parameters"]


def test_the_api_takes_a_users_mask_and_says_what_is_wrong(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    p, path = portrait_file(tmp_path, 4)
    box = np.zeros((64, 64), np.uint8)
    box[10:30, 10:50] = 255
    Image.fromarray(box).save(tmp_path / "mask.png")
    _, mask, _ = client.predict(handle_file(str(path)), "", "", "", None, handle_file(str(tmp_path / "mask.png")), 1,
                                api_name="/hair_tryon")
    assert ((np.asarray(Image.open(mask).convert("L")) > 127) == (box > 0)).all()
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(AppError, match="The portrait image: notes.png"):
        client.predict(handle_file(str(tmp_path / "notes.png")), api_name="/hair_tryon")
    Image.new("RGB", (64, 64), (40, 120, 200)).save(tmp_path / "sky.png")
    with pytest.raises(AppError, match="No face was found"):
        client.predict(handle_file(str(tmp_path / "sky.png")), api_name="/hair_tryon")


def test_the_editor_shows_the_automatic_mask_and_an_erased_layer_is_what_is_sent(tiny_runtime, tmp_path):
    from tabs.hair import layer_mask, make_handlers
    from training.runs.launcher import RunManager

    manager = RunManager(tmp_path / "runs", poll_seconds=None)
    _, auto_mask, mask_of, _ = make_handlers(manager, tiny_runtime)
    p, path = portrait_file(tmp_path, 5)
    editor = auto_mask(str(path), 0)
    shown = layer_mask(editor)
    assert editor["background"].shape == (64, 64, 3) and shown[toy_hair.hair_mask(p)].mean() > 0.8
    assert layer_mask(auto_mask(str(path), 4)).sum() > shown.sum()  # grown
    editor["layers"][0][:, :32] = 0  # the user erases the left half
    sent = np.asarray(mask_of(editor, None)) > 0
    assert not sent[:, :32].any() and sent[:, 32:].sum() == shown[:, 32:].sum()


def test_a_users_hair_models_are_offered_to_them_only(tiny_runtime, tmp_path):
    import gradio as gr

    from tabs.common import pulled_folder
    from tabs.hair import make_handlers
    from training.runs.launcher import RunManager

    manager = RunManager(tmp_path / "runs", poll_seconds=None)
    choices, _, _, tryon = make_handlers(manager, tiny_runtime)
    mine = pulled_folder(manager, "ann", "hair") / "ann__curls"
    mine.mkdir(parents=True)
    shutil.copyfile(TOY_HAIR / "hair_model.safetensors", mine / "hair_model.safetensors")
    ann, bob = gr.Request(username="ann"), gr.Request(username="bob")
    assert [label for label, _ in choices(ann)["choices"]] == ["hub ann__curls", "Default model (toy)"]
    assert [label for label, _ in choices(bob)["choices"]] == ["Default model (toy)"]
    _, path = portrait_file(tmp_path, 6)
    with pytest.raises(gr.Error, match="is not one of yours"):
        tryon(str(path), model=str(mine / "hair_model.safetensors"), request=bob)
    assert tryon(str(path), steps=2, model=str(mine / "hair_model.safetensors"), request=ann)[0].size == (64, 64)


def test_a_short_hair_run_from_the_tab_shows_its_stages_in_runs_and_its_model_in_the_menu(tiny_runtime, tmp_path):
    import time

    from pipelines.hair.toy_hair import write_khairstyle
    from tabs.hair import make_handlers, make_train_handler
    from tabs.runs import loss_curves, sample_files
    from training.runs.launcher import RunManager, read_events

    data = tmp_path / "khair"
    write_khairstyle(data / "images", data / "labels", 12, seed=9)
    manager = RunManager(tmp_path / "runs", poll_seconds=None)
    train = make_train_handler(manager, tiny_runtime, data_roots=(tmp_path,))
    with pytest.raises(gr.Error, match="Tick"):
        train(str(data), None, "short", {}, False)
    settings = {"texture.steps": 2, "inpaint.max_steps": 2, "inpaint.batch_size": 2, "inpaint.sample_steps": 2,
                "inpaint.sample_inference_steps": 2, "inpaint.checkpointing_steps": 1}
    assert "hair/short" in train(str(data), None, "short", settings, True)
    deadline = time.time() + 600
    while (status := manager.status(manager.find("hair/short", "local"))).state in ("queued", "running"):
        assert time.time() < deadline, status
        manager.pump()
        time.sleep(1)
    assert status.state == "done", (status.message, (tmp_path / "runs/hair/short/process.log").read_text()[-2000:])
    assert status.message.startswith("Finished: identity") and "the gate" in status.message
    run_dir = manager.find("hair/short", "local")
    events = read_events(run_dir / "events.jsonl")
    assert [e["stage"] for e in events if e["kind"] == "stage" and e["stage"] in
            ("prepare", "texture", "inpaint", "evaluate")] == ["prepare", "texture", "inpaint", "evaluate"]
    curves = loss_curves(run_dir)
    assert status.step == status.max_steps == 4 and [s for s, _ in curves["train"]] == [2, 4]  # texture, inpaint
    assert [s for s, _ in curves["mask_mse"]] == [4]
    assert any(p.name == "results.png" for p in sample_files(run_dir))
    choices, *_ = make_handlers(manager, tiny_runtime)
    labels = [label for label, _ in choices()["choices"]]
    assert labels[0].startswith("run short (") and "run short · step-2" in labels and "run short · step-1" in labels
