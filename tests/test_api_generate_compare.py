"""The served hub through gradio_client: /generate with LoRAs, /compare grids, /png_info; history on disk."""
from __future__ import annotations

import pytest
from PIL import Image

from conftest import serve
from lora_runs import make_run

PROMPT = "a red square on a white background"


@pytest.fixture(scope="module")
def hub(tiny_runtime, toy_dataset, tmp_path_factory):
    """The hub with one finished LoRA run of user "local"; yields (url, runs root)."""
    root = tmp_path_factory.mktemp("hub") / "runs"
    make_run(root, toy_dataset, name="api-lora", trigger="sks")
    demo, url = serve(tiny_runtime, root)
    yield url, root
    demo.close()


@pytest.fixture(scope="module")
def client(hub):
    from gradio_client import Client

    return Client(hub[0], verbose=False)


def test_generate_with_a_lora_sampler_and_batches_saves_pngs_with_infotext(client, hub):
    gallery, seed = client.predict(PROMPT, steps=3, seed=4, sampler="Euler", batch_count=2,
                                   loras="fashion/api-lora:0.6", api_name="/generate")
    assert seed == 4 and len(gallery) == 2
    with Image.open(gallery[1]["image"]) as im:
        text = im.info["parameters"]
    assert text.startswith(f"sks, {PROMPT} <lora:fashion/api-lora:0.6>") and "Seed: 5," in text
    assert 'Lora hashes: "fashion/api-lora: ' in text and "Sampler: Euler," in text
    saved = list((hub[1].parent / "outputs" / "local").glob("*/*.png"))
    assert len(saved) >= 2 and any("Seed: 5," in Image.open(p).info["parameters"] for p in saved)


def test_generate_with_an_unknown_lora_is_one_sentence(client):
    with pytest.raises(Exception, match="There is no LoRA named 'fashion/nope'; yours are: fashion/api-lora"):
        client.predict(PROMPT, steps=2, loras="fashion/nope", api_name="/generate")


def test_png_info_reads_parameters_and_refuses_a_png_without_them(client, tmp_path):
    from gradio_client import handle_file

    gallery, _ = client.predict(PROMPT, steps=2, seed=8, api_name="/generate")
    text = client.predict(handle_file(gallery[0]["image"]), api_name="/png_info")
    assert text.startswith(PROMPT) and "Seed: 8," in text
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    with pytest.raises(Exception, match="This image has no generation parameters"):
        client.predict(handle_file(str(tmp_path / "plain.png")), api_name="/png_info")


def test_compare_returns_a_grid_cells_and_judge_table(client):
    grid, cells, table = client.predict(PROMPT, x_axis="LoRA", x_values="none, fashion/api-lora",
                                        y_axis="Steps", y_values="2, 3", seed=3, api_name="/compare")
    with Image.open(grid) as im:
        assert im.size[0] > 128 and im.size[1] > 128
    assert len(cells) == 4 and cells[0]["caption"].startswith("none · 2: ")
    assert [row[:2] for row in table["data"]] == [["none", "2"], ["fashion/api-lora", "2"], ["none", "3"],
                                                  ["fashion/api-lora", "3"]]
    assert all(row[2] for row in table["data"])


def test_compare_over_64_cells_is_refused(client):
    with pytest.raises(Exception, match="the limit is 64"):
        client.predict(PROMPT, x_axis="Seed", x_values=",".join(map(str, range(9))), y_axis="CFG",
                       y_values=",".join(map(str, range(8))), api_name="/compare")


def test_restore_fills_generate_from_infotext_and_png_without_settings_is_refused():
    import gradio as gr

    from tabs.generate import restore

    text = ('sks, a red square <lora:fashion/a:0.8> <lora:file/b:-0.5>\nNegative prompt: blurry, dark\n'
            'Steps: 7, Sampler: DPM++ 2M, CFG scale: 6.5, Seed: 42, Size: 64x96, Model: toy-sd, '
            'Lora hashes: "fashion/a: 0123456789ab, file/b: ba9876543210"')
    assert restore(text) == ("sks, a red square", "blurry, dark", 7, 6.5, 42, 64, 96, "DPM++ 2M",
                             "fashion/a:0.8, file/b:-0.5")
    with pytest.raises(gr.Error, match="no settings line"):
        restore("just a prompt")


def test_base_vs_lora_slider_pair_uses_one_seed_and_lora_status_reports_layers(tiny_runtime, hub, monkeypatch):
    import numpy as np

    from pipelines.generate import lora_adapters
    from tabs.compare import make_ab
    from tabs.generate import lora_status
    from training.runs.launcher import RunManager

    base_vs_lora = make_ab(tiny_runtime, RunManager(hub[1]))
    base, with_lora = base_vs_lora(PROMPT, "fashion/api-lora", 1.0, 3, 3, None)
    assert base.size == with_lora.size == (64, 64)
    assert np.abs(np.asarray(base, float) - np.asarray(with_lora, float)).mean() > 0
    assert lora_status(tiny_runtime).startswith("✓ fashion/api-lora: applied to ")
    monkeypatch.setitem(lora_adapters.adapters_for(tiny_runtime.model("sd15")).modules,
                        next(iter(lora_adapters.adapters_for(tiny_runtime.model("sd15")).modules)), 0)
    assert "matched no layer — it changed nothing" in lora_status(tiny_runtime)
