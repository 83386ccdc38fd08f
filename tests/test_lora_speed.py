"""The LoRA trainer's speed levers keep its results: fused accumulation, out-of-memory retries, the thread policy."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT
from training.lora.cli import main

# batch 1 x 4 accumulation as in every preset; a few cheap steps
QUICK = ["--set", "batch_size=1", "--set", "gradient_accumulation_steps=4", "--set", "learning_rate=1e-3",
         "--set", "lr_warmup_steps=0", "--set", "sample_steps=0", "--set", "checkpointing_steps=0",
         "--set", "sample_inference_steps=1", "--set", "log_every=1"]
# Adam divides each gradient by its own size, so float noise in a near-zero gradient may move a weight by a
# fraction of the learning rate: a tenth of it is the tolerance for "the same weights".
SAME_WEIGHTS = 1e-4


@pytest.fixture(autouse=True)
def one_thread():
    """pytest's torch loaded without passive waiting, so its threads spin against other work; one thread cannot."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train(data, out, *extra, steps=3, preset="ghibli"):
    code = main(["--preset", preset, "--data", str(data), "--output", str(out), "--profile", "tiny",
                 "--max-steps", str(steps), *QUICK, *extra])
    assert code == 0, (out / "train.log").read_text()
    return out


def weights(run_dir):
    return load_file(run_dir / "final" / "pytorch_lora_weights.safetensors")


def largest_difference(a, b) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def report(run_dir):
    return json.loads((run_dir / "report.json").read_text())


def test_fused_and_unfused_accumulation_give_the_same_weights(toy_dataset, tmp_path):
    # fashion: every augmentation and LoRA on convolutions too; dropout off, since masks depend on the batch shape
    fused = train(toy_dataset, tmp_path / "fused", "--set", "dropout=0", preset="fashion")
    unfused = train(toy_dataset, tmp_path / "unfused", "--set", "dropout=0", "--set", "micro_batch_size=1",
                    preset="fashion")
    assert report(fused)["micro_batch"] == {"images_per_forward": 4, "at_start": 4, "out_of_memory_retries": 0}
    assert report(unfused)["micro_batch"]["images_per_forward"] == 1
    assert "micro-batch: 4 image(s) per forward, 4 per update (batch 1 x 4 accumulation; auto)" in (
        fused / "train.log").read_text()
    assert 0 < largest_difference(weights(fused), weights(unfused)) <= SAME_WEIGHTS


def test_prior_preservation_fuses_class_images_into_the_same_update(tmp_path, toy_dataset):
    # dreambooth: class images in every batch, prior loss weighted, the text encoder trained too
    prior = ["--set", "num_class_images=4", "--set", "prior_loss_weight=0.5", "--set", "train_text_encoder=true",
             "--set", "text_encoder_lr=1e-3"]
    fused = train(toy_dataset, tmp_path / "fused", *prior, preset="dreambooth")
    unfused = train(toy_dataset, tmp_path / "unfused", *prior, "--set", "micro_batch_size=2", preset="dreambooth")
    assert "8 per update (batch 1 x 4 accumulation x 2 with class images; auto)" in (fused / "train.log").read_text()
    a, b = weights(fused), weights(unfused)
    assert any(k.startswith("text_encoder.") for k in a)
    assert 0 < largest_difference(a, b) <= SAME_WEIGHTS


def test_out_of_memory_halves_the_micro_batch_and_loses_nothing(toy_dataset, tmp_path, monkeypatch):
    from training.lora import trainer as lora_trainer

    real = lora_trainer.LoraRun._prediction_loss
    forwards = []

    def short_of_memory(self, noised):
        loss = real(self, noised)  # the failed try has drawn dropout masks, after a micro-batch's gradients
        forwards.append(len(noised))
        if len(forwards) == 2:  # the second forward of the first step
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return loss

    uninterrupted = train(toy_dataset, tmp_path / "whole", "--set", "dropout=0.1", "--set", "micro_batch_size=1")
    monkeypatch.setattr(lora_trainer.LoraRun, "_prediction_loss", short_of_memory)
    retried = train(toy_dataset, tmp_path / "retried", "--set", "dropout=0.1", "--set", "micro_batch_size=2")
    assert forwards[:3] == [2, 2, 1]
    assert report(retried)["micro_batch"] == {"images_per_forward": 1, "at_start": 2, "out_of_memory_retries": 1}
    assert "step 1: out of memory at 2 images per forward; retrying the step at 1" in (
        retried / "train.log").read_text()
    assert largest_difference(weights(uninterrupted), weights(retried)) <= 1e-6


def test_out_of_memory_at_one_image_per_forward_says_what_to_change(toy_dataset, tmp_path, monkeypatch):
    from training.lora import trainer as lora_trainer

    def no_memory(self, noised):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory.")

    monkeypatch.setattr(lora_trainer.LoraRun, "_prediction_loss", no_memory)
    run_dir = tmp_path / "oom"
    assert main(["--preset", "ghibli", "--data", str(toy_dataset), "--output", str(run_dir), "--profile", "tiny",
                 "--max-steps", "2", *QUICK]) == 2
    last = json.loads((run_dir / "events.jsonl").read_text().splitlines()[-1])
    assert last["kind"] == "error" and "turn gradient_checkpointing on" in last["message"]
    assert "at 2 images per forward; retrying the step at 1" in (run_dir / "train.log").read_text()


def test_training_command_sets_passive_waiting_before_torch_loads(tmp_path):
    from training.runs.threads import physical_cores

    code = ("import runpy, sys\n"
            f"sys.argv = ['training.lora', '--preset', 'nope', '--data', '.', '--output', {str(tmp_path / 'r')!r}]\n"
            "try:\n    runpy.run_module('training.lora', run_name='__main__')\n"
            "except SystemExit as end:\n    assert end.code == 2 and 'torch' not in sys.modules\n"
            "import os, torch\n"
            "print(os.environ['OMP_WAIT_POLICY'], os.environ['OMP_NUM_THREADS'], torch.get_num_threads())\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["PASSIVE", str(physical_cores()), str(physical_cores())]


def test_launcher_starts_trainers_with_the_thread_policy(tmp_path, monkeypatch):
    from training.runs import launcher
    from training.runs.threads import physical_cores, thread_env

    started = []

    def popen(command, **kwargs):
        started.append(kwargs["env"])
        raise OSError("not started in this test")

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the server's operator chose: kept
    monkeypatch.setattr(launcher.subprocess, "Popen", popen)
    (tmp_path / "data").mkdir()
    launcher.RunManager(tmp_path / "runs", poll_seconds=None).submit("ghibli", "t", tmp_path / "data", {}, "me", "tiny")
    assert started[0]["OMP_WAIT_POLICY"] == "PASSIVE" and started[0]["OMP_NUM_THREADS"] == "1"
    assert thread_env({"LOCAL_WORLD_SIZE": "2"})["OMP_NUM_THREADS"] == str(max(1, physical_cores() // 2))
