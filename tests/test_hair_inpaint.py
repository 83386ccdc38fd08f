"""Stage 2 of seed 000 on the toy hair world: the 9-channel inpainting trainer with identity and style adapters."""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from pipelines.hair import model as hair_model
from pipelines.hair import toy_hair
from pipelines.models.registry import TOY_HAIR
from tests.conftest import prepared_toy_hair
from training.hair.cli import main

SHORT = ["--profile", "tiny", "--set", "batch_size=4", "--set", "sample_images=2", "--set", "sample_inference_steps=3",
         "--set", "log_every=1"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("hair-inpaint")
    return prepared_toy_hair(root, 40, seed=21)


def events(run, kind):
    lines = (run / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["kind"] == kind]


@pytest.fixture(scope="module")
def short_run(prepared, tmp_path_factory):
    run = tmp_path_factory.mktemp("hair-short") / "run"
    assert main(["inpaint", "--data", str(prepared), "--output", str(run), *SHORT, "--set", "max_steps=4"]) == 0
    return run


def test_a_short_run_writes_its_folder_and_a_model_the_stock_pipeline_runs(short_run):
    run = short_run
    train = events(run, "train")
    assert [e["step"] for e in train] == [1, 2, 3, 4]
    # every loss of seed 000 is logged apart; identity and texture only count at low-noise timesteps
    assert all({"mask_mse", "identity", "texture", "gram", "loss"} <= set(e) for e in train)
    assert events(run, "val") and events(run, "sample") and (run / "samples" / "step-4.png").is_file()
    assert (run / "checkpoints" / "step-4").is_dir() and (run / "loss.png").is_file()

    model = hair_model.load(run / "final" / "hair_model.safetensors")
    assert set(model.adapters) == {"identity", "style"} and model.lora
    assert model.metadata["base_model"] == str(TOY_HAIR)  # the tiny profile's base
    assert json.loads(model.metadata["settings"])["max_steps"] == 4

    from diffusers import StableDiffusionXLInpaintPipeline

    pipe = StableDiffusionXLInpaintPipeline.from_pretrained(model.metadata["base_model"])
    hair_model.install(pipe, model)
    dims = int(model.metadata["identity_dim"]), int(model.metadata["style_dim"])
    embeds = hair_model.adapter_embeds(torch.randn(1, dims[0]), torch.randn(1, dims[1]), guidance=True)
    portrait = toy_hair.random_portrait(random.Random(0))
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


def test_evaluation_reports_masked_metrics_and_the_gate_refuses_or_marks(short_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ATELIER_MODELS", str(tmp_path / "models"))
    evaluate = ["evaluate", "--run", str(short_run), "--profile", "tiny", "--steps", "2", "--export", "toy-v1"]
    # a gate no 4-step model meets: refused with one sentence, nothing exported
    assert main([*evaluate, "--max-lpips", "0.0001"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # (after the pipeline's progress bars)
    assert err.startswith("training.hair: Not exported") and "--force" in err
    assert not (tmp_path / "models" / "hair" / "toy-v1.safetensors").exists()
    report = json.loads((short_run / "evaluation" / "report.json").read_text())
    assert report["count"] == 4 and report["gate"]["passed"] is False  # the run's 4 held-out portraits (of 40)
    assert 0 <= report["lpips"] and 0 < report["psnr"] and -1 <= report["ssim"] <= 1 and -1 <= report["identity"] <= 1
    assert (short_run / "evaluation" / "results.png").is_file()

    assert main([*evaluate, "--max-lpips", "0.0001", "--force"]) == 0
    exported = hair_model.load(tmp_path / "models" / "hair" / "toy-v1.safetensors")
    assert exported.metadata["gate_passed"] == "false" and exported.metadata["forced"] == "true"
    assert json.loads(exported.metadata["metrics"])["lpips"] == pytest.approx(report["lpips"], abs=1e-4)
    assert "token" not in json.dumps(exported.metadata).lower()


def test_all_runs_every_stage_once_and_resumes_where_it_stopped(prepared, tmp_path):
    images, labels, out = prepared.parent / "images", prepared.parent / "labels", tmp_path / "all"
    command = ["all", "--images", str(images), "--labels", str(labels), "--output", str(out), "--profile", "tiny",
               "--set", "texture.steps=4", "--set", "inpaint.max_steps=4", "--set", "inpaint.batch_size=2",
               "--set", "inpaint.checkpointing_steps=2", "--set", "inpaint.sample_steps=0",
               "--set", "inpaint.sample_inference_steps=2"]
    assert main(command) == 0
    assert (out / "texture" / "final" / "texture.safetensors").is_file()
    model = hair_model.load(out / "inpaint" / "final" / "hair_model.safetensors")
    assert model.texture  # the stage-1 encoder joined the style tokens, and travels with the model
    assert (out / "inpaint" / "evaluation" / "report.json").is_file()

    # an interrupted inpaint stage (no final weights, checkpoints left) resumes; finished stages are skipped
    for path in (out / "inpaint" / "final", out / "inpaint" / "evaluation", out / "inpaint" / "checkpoints" / "step-4"):
        shutil.rmtree(path)
    assert main(command) == 0
    log = (out / "train.log").read_text()
    assert "prepare is complete" in log and "texture is complete" in log
    assert "inpaint (resuming from its latest checkpoint)" in log
    assert (out / "inpaint" / "final" / "hair_model.safetensors").is_file()


def test_full_unet_fine_tuning_saves_the_whole_unet_and_installs_it(prepared, tmp_path):
    from diffusers import StableDiffusionXLInpaintPipeline

    run = tmp_path / "full"
    assert main(["inpaint", "--data", str(prepared), "--output", str(run), *SHORT, "--set", "max_steps=2", "--set",
                 "full_unet=true", "--set", "sample_steps=0", "--set", "validation_steps=0"]) == 0
    model = hair_model.load(run / "final" / "hair_model.safetensors")
    assert model.unet and not model.lora and not any("to_k_ip" in k for k in model.unet)
    pipe = StableDiffusionXLInpaintPipeline.from_pretrained(model.metadata["base_model"])
    before = pipe.unet.conv_in.weight.detach().clone()
    hair_model.install(pipe, model)
    assert not torch.equal(before, pipe.unet.conv_in.weight) and torch.equal(pipe.unet.conv_in.weight,
                                                                            model.unet["conv_in.weight"])


def test_two_processes_keep_identical_weights(prepared, tmp_path):
    # torchrun starts the ranks; accelerate sees WORLD_SIZE=2 and uses gloo on the CPU
    run = tmp_path / "ddp"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "training.hair", "inpaint", "--data", str(prepared), "--output", str(run), *SHORT,
                           "--set", "max_steps=3", "--set", "sample_steps=0"], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((run / "report.json").read_text())
    assert report["world_size"] == 2 and report["rank_weight_difference"] == 0.0
