"""The LoRA trainer on the toy model: it learns, its outputs load, resume is exact, ranks agree."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT
from training.lora.cli import main

FAST = ["--set", "batch_size=2", "--set", "gradient_accumulation_steps=1", "--set", "sample_steps=0",
        "--set", "learning_rate=1e-3", "--set", "lr_warmup_steps=0", "--set", "log_every=1"]


def train(data, out, *extra, steps=8):
    code = main(["--preset", "fashion", "--data", str(data), "--output", str(out), "--profile", "tiny",
                 "--max-steps", str(steps), *FAST, *extra])
    assert code == 0, (out / "train.log").read_text()
    return out


def train_process(data, out, *extra, steps=8, launcher=(sys.executable, "-m", "training.lora")):
    args = [*launcher, "--preset", "fashion", "--data", str(data), "--output", str(out), "--profile", "tiny",
            "--max-steps", str(steps), *FAST, *extra]
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)


@pytest.fixture(scope="module")
def trained_run(toy_dataset, tmp_path_factory):
    return train(toy_dataset, tmp_path_factory.mktemp("runs") / "fashion-run", "--set", "checkpointing_steps=4",
                 "--set", "validation_steps=4", "--set", "sample_steps=4")


def toy_pipe():
    from diffusers import StableDiffusionPipeline

    from pipelines.models.registry import TOY_SD

    pipe = StableDiffusionPipeline.from_pretrained(TOY_SD, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def image(pipe, prompt="a red square on a white background"):
    return pipe(prompt, num_inference_steps=8, generator=torch.Generator().manual_seed(0),
                output_type="np").images[0]


def test_run_folder_is_complete(trained_run):
    for name in ("config.toml", "events.jsonl", "train.log", "report.json", "loss.png",
                 "final/pytorch_lora_weights.safetensors", "final/fashion-run.safetensors", "checkpoints/step-4"):
        assert (trained_run / name).exists(), name
    kinds = {json.loads(line)["kind"] for line in (trained_run / "events.jsonl").read_text().splitlines()}
    assert {"train", "val", "checkpoint", "sample", "done"} <= kinds
    report = json.loads((trained_run / "report.json").read_text())
    assert report["steps"] == 8 and report["steps_per_second"] > 0 and report["peak_rss_mb"] > 0


def test_loss_decreases_on_a_fixed_batch(toy_dataset, tmp_path):
    from accelerate import Accelerator

    from training.lora.batches import generator
    from training.lora.settings import resolve_settings
    from training.lora.trainer import LoraRun
    from training.runs.folder import RunFolder

    s = resolve_settings("fashion", {"learning_rate": 2e-3, "dropout": 0.0, "lr_warmup_steps": 0,
                                     "lr_scheduler": "constant"})
    run = LoraRun(s, toy_dataset, RunFolder(tmp_path), "tiny", Accelerator(cpu=True))
    latents, captions = run.latents[:4], [e.caption for e in run.train_set[:4]]
    losses = []
    for _ in range(30):
        loss = run._denoising_loss(latents, captions, generator(0)).mean()
        loss.backward()
        run.optimizer.step()
        run.optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_trained_lora_changes_the_image(trained_run):
    pipe = toy_pipe()
    before = image(pipe)
    pipe.load_lora_weights(trained_run / "final", weight_name="pytorch_lora_weights.safetensors")
    assert np.abs(image(pipe) - before).max() > 0.02


def test_kohya_file_and_diffusers_folder_give_the_same_image(trained_run):
    a, b = toy_pipe(), toy_pipe()
    a.load_lora_weights(trained_run / "final", weight_name="pytorch_lora_weights.safetensors")
    b.load_lora_weights(trained_run / "final" / "fashion-run.safetensors")
    np.testing.assert_allclose(image(a), image(b), atol=1e-5)
    header = load_file(trained_run / "final" / "fashion-run.safetensors")
    assert any(k.startswith("lora_unet_") and k.endswith(".alpha") for k in header)


def test_kohya_header_carries_the_settings(trained_run):
    from safetensors import safe_open

    with safe_open(trained_run / "final" / "fashion-run.safetensors", "pt") as f:
        meta = f.metadata()
    assert meta["ss_network_dim"] == "12" and meta["ss_network_alpha"] == "24.0"
    assert meta["atelier_preset"] == "fashion" and meta["atelier_steps"] == "8"
    assert meta["atelier_base_model"].endswith("toy-sd")


def test_killed_then_resumed_run_equals_an_uninterrupted_one(toy_dataset, tmp_path):
    extra = ("--set", "checkpointing_steps=4", "--set", "validation_steps=100")
    whole = train_process(toy_dataset, tmp_path / "whole", *extra, steps=14)
    assert whole.wait(timeout=300) == 0, whole.stderr.read()
    killed = train_process(toy_dataset, tmp_path / "killed", *extra, steps=14)
    deadline = time.monotonic() + 300
    while not (tmp_path / "killed" / "checkpoints" / "step-4").is_dir() and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=30)
    assert not (tmp_path / "killed" / "final").exists(), "the run finished before it could be killed"
    resumed = train_process(toy_dataset, tmp_path / "killed", *extra, "--resume", "latest", steps=14)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert "resuming from step" in (tmp_path / "killed" / "train.log").read_text()
    a = load_file(tmp_path / "whole" / "final" / "pytorch_lora_weights.safetensors")
    b = load_file(tmp_path / "killed" / "final" / "pytorch_lora_weights.safetensors")
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


def test_seed_intervals_scale_to_a_short_run_and_the_last_step_checkpoints_and_samples(toy_dataset, tmp_path):
    out = train(toy_dataset, tmp_path / "short", "--set", "sample_steps=500", "--set", "sample_inference_steps=2",
                "--set", "validation_prompts=a red circle on a white background", "--set", "log_every=10")
    config = tomllib.loads((out / "config.toml").read_text())  # 500 each: the seed's, longer than 8 steps
    assert [config[k] for k in ("validation_steps", "checkpointing_steps", "sample_steps")] == [2, 2, 2]
    assert config["requested_intervals"] == {"validation_steps": 500, "checkpointing_steps": 500, "sample_steps": 500}
    assert json.loads((out / "report.json").read_text())["settings"]["checkpointing_steps"] == 2
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    steps = {kind: [e["step"] for e in events if e["kind"] == kind] for kind in ("train", "val", "sample")}
    assert steps == {"train": [1, 8], "val": [2, 4, 6, 8], "sample": [2, 4, 6, 8]}  # step 1: a speed at once
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-4", "step-6", "step-8"]
    assert [e["stage"] for e in events if e["kind"] == "stage"] == ["loading", "caching", "training", "saving"]


def test_resume_with_nothing_to_resume_is_an_error(toy_dataset, tmp_path):
    code = main(["--preset", "fashion", "--data", str(toy_dataset), "--output", str(tmp_path / "r"),
                 "--profile", "tiny", "--max-steps", "2", "--resume", "latest", *FAST])
    assert code == 2
    events = [json.loads(line) for line in (tmp_path / "r" / "events.jsonl").read_text().splitlines()]
    assert events[-1]["kind"] == "error" and "has no checkpoint to resume from" in events[-1]["message"]
    assert not (tmp_path / "r" / "final").exists()


def test_bad_dataset_is_a_clear_error(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "captions.csv").write_text("path,caption\n")
    code = main(["--preset", "fashion", "--data", str(tmp_path / "data"), "--output", str(tmp_path / "r"),
                 "--profile", "tiny", "--max-steps", "2"])
    events = [json.loads(line) for line in (tmp_path / "r" / "events.jsonl").read_text().splitlines()]
    assert code == 2 and "captions.csv has columns path, caption" in events[-1]["message"]


@pytest.mark.parametrize("args, words", [
    (["--preset", "watercolor"], "Unknown preset 'watercolor'"),
    (["--preset", "fashion", "--set", "rank=big"], "Setting rank must be"),
    (["--preset", "fashion", "--set", "nonsense=1"], "Unknown setting 'nonsense'"),
])
def test_bad_command_lines(args, words, tmp_path, capsys):
    assert main([*args, "--data", str(tmp_path), "--output", str(tmp_path / "r")]) == 2
    assert words in capsys.readouterr().err


def test_two_processes_keep_identical_weights(toy_dataset, tmp_path):
    # torchrun starts the ranks; accelerate sees WORLD_SIZE=2 and uses gloo on the CPU
    launcher = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "training.lora")
    proc = train_process(toy_dataset, tmp_path / "ddp", launcher=launcher, steps=4)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()[-3000:]
    report = json.loads((tmp_path / "ddp" / "report.json").read_text())
    assert report["world_size"] == 2 and report["rank_weight_difference"] == 0.0


def test_early_stopping_and_the_latent_cache_reused_across_runs(toy_dataset, tmp_path, trained_run):
    out = train(toy_dataset, tmp_path / "early", "--set", "validation_steps=2", "--set", "early_stopping_patience=1",
                "--set", "early_stopping_min_delta=10", steps=20)
    report = json.loads((out / "report.json").read_text())
    assert report["stopped_early"] and report["steps"] == 4  # the first validation sets the best, the second stops
    assert (out / "best" / "pytorch_lora_weights.safetensors").exists()
    assert "11 images, 11 from the cache" in (out / "train.log").read_text()  # encoded by trained_run


def test_min_snr_and_noise_offset_change_the_loss(toy_dataset, tmp_path):
    from accelerate import Accelerator

    from training.lora.batches import generator
    from training.lora.settings import resolve_settings
    from training.lora.trainer import LoraRun
    from training.runs.folder import RunFolder

    run = LoraRun(resolve_settings("fashion", {"dropout": 0.0}), toy_dataset, RunFolder(tmp_path), "tiny",
                  Accelerator(cpu=True))
    latents, captions = run.latents[:4], [e.caption for e in run.train_set[:4]]

    def loss(**changes):
        for key, value in changes.items():
            setattr(run.s, key, value)
        with torch.no_grad():
            return run._denoising_loss(latents, captions, generator(5)).tolist()

    plain = loss(snr_gamma=0.0, noise_offset=0.0)
    assert loss(snr_gamma=0.0, noise_offset=0.0) == plain
    assert loss(snr_gamma=0.1) != plain  # a small gamma so that the sampled timesteps are affected
    assert loss(snr_gamma=0.0, noise_offset=0.1) != plain


def test_half_precision_run_samples_and_exports(toy_dataset, tmp_path):
    # bf16 on the CPU takes the path fp16 takes on CUDA: a half-precision base with fp32 LoRA layers. Sampling once
    # handed fp32 latents to the bf16 VAE ("Input type (float) and bias type (c10::BFloat16)"), found on a GPU.
    out = tmp_path / "bf16"  # its own process: accelerate keeps one precision per process
    process = train_process(toy_dataset, out, "--set", "mixed_precision=bf16", "--set", "sample_steps=2",
                            "--set", "sample_inference_steps=2", steps=2)
    assert process.wait(timeout=300) == 0, process.stderr.read()[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["mixed_precision"] == "bf16" and report["steps"] == 2
    assert len(list((out / "samples").glob("*.png"))) >= 1 and (out / "final").is_dir()
