"""Stage 2 of seed 000 on the toy hair world: the 9-channel inpainting trainer with identity and style adapters."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pipelines.hair import model as hair_model
from pipelines.hair import toy_hair
from training.hair.cli import main
from training.prepare.hair import HairOptions, prepare_hair

SHORT = ["--profile", "tiny", "--set", "batch_size=4", "--set", "sample_images=2", "--set", "sample_inference_steps=3",
         "--set", "log_every=1"]


class NoFaces:
    def identities(self, image):
        return []


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("hair-inpaint")
    toy_hair.write_khairstyle(root / "images", root / "labels", 40, seed=21)
    prepare_hair(HairOptions(images=root / "images", labels_dir=root / "labels", out=root / "data"), NoFaces())
    return root / "data"


def events(run, kind):
    lines = (run / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["kind"] == kind]


def test_a_short_run_writes_its_folder_and_a_model_the_stock_pipeline_runs(prepared, tmp_path):
    run = tmp_path / "run"
    assert main(["inpaint", "--data", str(prepared), "--output", str(run), *SHORT, "--set", "max_steps=4"]) == 0
    train = events(run, "train")
    assert [e["step"] for e in train] == [1, 2, 3, 4]
    # every loss of seed 000 is logged apart; identity and texture only count at low-noise timesteps
    assert all({"mask_mse", "identity", "texture", "gram", "loss"} <= set(e) for e in train)
    assert events(run, "val") and events(run, "sample") and (run / "samples" / "step-4.png").is_file()
    assert (run / "checkpoints" / "step-4").is_dir() and (run / "loss.png").is_file()

    model = hair_model.load(run / "final" / "hair_model.safetensors")
    assert set(model.adapters) == {"identity", "style"} and model.lora
    assert model.metadata["base_model"].endswith("toy-hair") and json.loads(model.metadata["settings"])["max_steps"] == 4

    from diffusers import StableDiffusionXLInpaintPipeline

    pipe = StableDiffusionXLInpaintPipeline.from_pretrained(model.metadata["base_model"])
    hair_model.install(pipe, model)
    dims = int(model.metadata["identity_dim"]), int(model.metadata["style_dim"])
    embeds = hair_model.adapter_embeds(torch.randn(1, dims[0]), torch.randn(1, dims[1]), guidance=True)
    portrait = toy_hair.random_portrait(__import__("random").Random(0))
    out = pipe(prompt="long normal black straight hairstyle", image=toy_hair.render(portrait),
               mask_image=toy_hair.render(portrait).convert("L"), height=64, width=64, num_inference_steps=3,
               ip_adapter_image_embeds=embeds).images[0]
    assert out.size == (64, 64)


def test_a_resumed_run_equals_an_uninterrupted_one(prepared, tmp_path):
    common = ["inpaint", "--data", str(prepared), *SHORT, "--set", "checkpointing_steps=3", "--set",
              "validation_steps=0", "--set", "sample_steps=0"]
    assert main([*common, "--output", str(tmp_path / "whole"), "--set", "max_steps=6"]) == 0
    assert main([*common, "--output", str(tmp_path / "cut"), "--set", "max_steps=3"]) == 0
    assert main([*common, "--output", str(tmp_path / "cut"), "--set", "max_steps=6", "--resume", "latest"]) == 0
    whole = load_file(tmp_path / "whole" / "final" / "hair_model.safetensors")
    cut = load_file(tmp_path / "cut" / "final" / "hair_model.safetensors")
    assert whole.keys() == cut.keys() and all(torch.equal(whole[k], cut[k]) for k in whole)
    first = load_file(tmp_path / "cut" / "checkpoints" / "step-3" / "lora.safetensors")
    assert any(not torch.equal(first[k], whole[k]) for k in whole)  # the last 3 steps did change the weights


def test_bad_usage_is_one_line(tmp_path, capsys):
    assert main(["inpaint", "--data", str(tmp_path), "--output", str(tmp_path / "r"), "--profile", "tiny"]) == 2
    assert "not a prepared hair folder" in capsys.readouterr().err
    assert main(["inpaint", "--data", str(tmp_path), "--output", str(tmp_path / "r"), "--set", "rank=0"]) == 2
    assert "rank must be at least 1" in capsys.readouterr().err


def test_a_model_file_that_is_not_a_hair_model_is_named(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(hair_model.HairModelError, match="other.safetensors is not a hair try-on model"):
        hair_model.load(tmp_path / "other.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(hair_model.HairModelError, match="junk.safetensors cannot be read"):
        hair_model.load(tmp_path / "junk.safetensors")
