"""Runs that go wrong end in one sentence, an "error" event and no ``final/``: diverged training, damaged
checkpoints, a run folder that turns read-only mid-run."""
from __future__ import annotations

import errno
import json
import logging
import os

import pytest
from safetensors.torch import load_file

from training.runs import checkpoint
from training.runs.checkpoint import ResumeError
from training.runs.launcher import RunManager
from training.lora.cli import main
from training.runs.folder import RunFolder

FAST = ["--set", "batch_size=2", "--set", "gradient_accumulation_steps=1", "--set", "sample_steps=0",
        "--set", "lr_warmup_steps=0", "--set", "log_every=1", "--set", "checkpointing_steps=1"]
READ_ONLY = os.strerror(errno.EROFS)


def train(data, out, *extra, steps=3):
    return main(["--preset", "fashion", "--data", str(data), "--output", str(out), "--profile", "tiny",
                 "--max-steps", str(steps), *FAST, *extra])


def events(run_dir):
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def runs_tab_state(run_dir, returncode: int) -> tuple[str, str]:
    """(state, message) the Runs tab shows for this folder once its trainer exited with ``returncode``."""
    (run_dir / "request.json").write_text(json.dumps({"use_case": "fashion", "owner": "local", "max_steps": 3}))
    (run_dir / "process.json").write_text(json.dumps({"pid": 2**22 + 7, "returncode": returncode}))
    status = RunManager(run_dir.parent, poll_seconds=None).status(run_dir)
    return status.state, status.message


# ---- 5: a diverging run stops, says which setting to lower, and writes no final/ -----------------------------

def test_shared_guard_stops_with_one_sentence_and_exit_code_2(tmp_path):
    from training.runs.folder import NonFiniteLoss, check_finite, run_guarded

    with pytest.raises(NonFiniteLoss, match=r"The loss became nan at step 3; lower learning_rate and start again"):
        check_finite(float("nan"), "loss", "step 3", "learning_rate")
    check_finite(1e30, "loss", "step 3", "learning_rate")  # large but finite is the trainer's business

    def diverge():
        check_finite(float("inf"), "loss", "step 1", "learning_rate")

    folder = RunFolder(tmp_path / "run")
    assert run_guarded(folder, diverge, user_errors=()) == 2  # every trainer, without listing it
    last = events(folder.root)[-1]
    assert last["kind"] == "error" and last["message"] == ("The loss became inf at step 1; lower learning_rate and "
                                                           "start again.")


def test_lora_learning_rate_too_high_fails_without_final(toy_dataset, tmp_path):
    run_dir = tmp_path / "runs" / "diverged"
    assert train(toy_dataset, run_dir, "--set", "learning_rate=1e6", "--set", "checkpointing_steps=0", steps=4) == 2
    error = events(run_dir)[-1]
    assert error["kind"] == "error" and error["message"].startswith("The loss became "), error
    assert "lower learning_rate (now 1e+06)" in error["message"]
    assert not (run_dir / "final").exists() and "done" not in {e["kind"] for e in events(run_dir)}
    state, message = runs_tab_state(run_dir, 2)
    assert state == "failed" and "learning_rate" in message


def test_lora_weights_gone_nan_on_the_last_step_never_reach_final(toy_dataset, tmp_path, monkeypatch):
    from training.lora import trainer as lora_trainer

    def poisoned_update(self, step):  # the loss was fine, the update was not
        loss = real_update(self, step)
        next(iter(self.params)).data.fill_(float("nan"))
        return loss

    real_update = lora_trainer.LoraRun._update
    monkeypatch.setattr(lora_trainer.LoraRun, "_update", poisoned_update)
    run_dir = tmp_path / "nan-weights"
    assert train(toy_dataset, run_dir, "--set", "checkpointing_steps=0", steps=1) == 2
    assert "The largest trained weight became nan at step 1" in events(run_dir)[-1]["message"]
    assert not (run_dir / "final").exists()


def test_toy_recipe_stops_on_a_diverging_stage(tmp_path, caplog):
    from training.toy.recipe import main as toy_main

    out = tmp_path / "toy"
    code = toy_main(["--num-images", "16", "--vae-steps", "4", "--vae-batch-size", "4", "--vae-lr", "1e30",
                     "--unet-steps", "1", "--batch-size", "4", "--open-color-images", "4", "--decoder-steps", "1",
                     "--output", str(out)])
    assert code == 2 and "The VAE loss became" in caplog.text and "lower vae_lr (now 1e+30)" in caplog.text
    assert not (out / "model_index.json").exists()


# ---- 6: a damaged checkpoint is named and skipped; none intact is one sentence ------------------------------

def damage_header(path):
    path.write_bytes(b"\xff" * 8 + b"{}")  # a header length of 2**64-1: safetensors says "header too large"


def test_resume_latest_skips_damaged_checkpoints(toy_dataset, tmp_path, caplog):
    run_dir = tmp_path / "run"
    assert train(toy_dataset, run_dir) == 0
    assert [p.name for p in RunFolder(run_dir).checkpoint_dirs()] == ["step-1", "step-2", "step-3"]  # 3: the last
    damage_header(run_dir / "checkpoints" / "step-3" / checkpoint.LORA_FILE)

    with caplog.at_level(logging.WARNING, logger="training.runs.checkpoint"):
        assert train(toy_dataset, run_dir, "--resume", "latest") == 0
    assert any("step-3 is damaged" in r.getMessage() and "header too large" in r.getMessage()
               for r in caplog.records)
    assert [e for e in events(run_dir) if "resumed_from" in e][-1]["step"] == 2
    assert (run_dir / "final" / "pytorch_lora_weights.safetensors").exists()

    for step in ("step-1", "step-2", "step-3"):  # a crash while writing JSON leaves it cut short
        state = run_dir / "checkpoints" / step / checkpoint.STATE_FILE
        state.write_text(state.read_text()[:40])
    assert train(toy_dataset, run_dir, "--resume", "latest") == 2
    message = events(run_dir)[-1]["message"]
    assert "every checkpoint in" in message and "step-1, step-2, step-3" in message and "\n" not in message


def test_anime_resume_latest_skips_a_truncated_state_file(tmp_path, caplog):
    from test_anime_trainer import write_images
    from training.anime.cli import main as anime_main

    content, style = write_images(tmp_path / "c", 2, 0), write_images(tmp_path / "s", 2, 1)
    base = ["--content", str(content), "--style", str(style), "--output", str(tmp_path / "run"), "--profile", "tiny",
            "--set", "batch_size=2", "--set", "checkpoint_every=1"]
    assert anime_main([*base, "--epochs", "2"]) == 0
    state = tmp_path / "run" / "checkpoints" / "step-2" / "state.json"
    state.write_text(state.read_text()[:30])
    with caplog.at_level(logging.WARNING, logger="training.runs.checkpoint"):
        assert anime_main([*base, "--epochs", "3", "--resume", "latest"]) == 0
    assert "step-2 is damaged (JSONDecodeError" in caplog.text
    assert [e["epoch"] for e in events(tmp_path / "run") if e["kind"] == "train"] == [1, 2, 2, 3]


def test_resume_from_a_named_damaged_checkpoint_says_so(tmp_path):
    folder = tmp_path / "checkpoints" / "step-5"
    folder.mkdir(parents=True)
    (folder / checkpoint.STATE_FILE).write_text('{"step": 5, "optim')
    with pytest.raises(ResumeError, match=r"--resume .*step-5: the checkpoint is damaged \(JSONDecodeError"):
        checkpoint.read_intact(str(folder), [folder], tmp_path, checkpoint.load)


# ---- 7: the run folder turns read-only mid-run ----------------------------------------------------------------

def read_only_from_step_2(monkeypatch, run_dir, everything: bool):
    """Checkpoint writes fail from step 2 on, as on a disk remounted read-only; ``everything``: the log and events
    too."""
    real = checkpoint.write_tensors

    def write_tensors(tensors, path, metadata=None):
        if "step-1" not in str(path):
            if everything:
                monkeypatch.setattr(RunFolder, "event", refuse_event)
                for handler in logging.getLogger().handlers:
                    if getattr(handler, "baseFilename", "").startswith(str(run_dir)):  # train.log
                        handler.stream = open(os.devnull)  # read-only: the next record fails to write
            raise OSError(errno.EROFS, READ_ONLY, str(path))
        real(tensors, path, metadata)

    def refuse_event(self, kind, step, **fields):
        raise OSError(errno.EROFS, READ_ONLY, str(self.root / "events.jsonl"))

    monkeypatch.setattr(checkpoint, "write_tensors", write_tensors)


def assert_last_checkpoint_kept(run_dir):
    checkpoints = run_dir / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-1"]  # no step-2, no half-written step-2.tmp
    assert load_file(checkpoints / "step-1" / checkpoint.LORA_FILE)
    assert not (run_dir / "final").exists()


def test_read_only_output_mid_run_is_one_sentence_and_state_failed(toy_dataset, tmp_path, monkeypatch):
    run_dir = tmp_path / "runs" / "ro"
    read_only_from_step_2(monkeypatch, run_dir, everything=False)
    assert train(toy_dataset, run_dir) == 2
    message = events(run_dir)[-1]["message"]
    assert message == (f"Cannot write to {run_dir}: {READ_ONLY.lower()}; free space or fix permissions and resume "
                       "with --resume latest.")
    assert_last_checkpoint_kept(run_dir)
    assert runs_tab_state(run_dir, 2) == ("failed", message)


def test_read_only_output_where_nothing_can_be_written_any_more(toy_dataset, tmp_path, monkeypatch, capsys, caplog):
    run_dir = tmp_path / "ro"
    read_only_from_step_2(monkeypatch, run_dir, everything=True)
    assert train(toy_dataset, run_dir) == 2  # returns: no exception escapes while reporting the failure
    assert_last_checkpoint_kept(run_dir)
    assert "error" not in {e["kind"] for e in events(run_dir)}
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [f"Cannot write to {run_dir}: {READ_ONLY.lower()}; free space or fix permissions and resume "
                      "with --resume latest."]
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Logging error" not in err, err


def test_an_8bit_adamw_state_survives_a_checkpoint(tmp_path):
    # bitsandbytes nests its 8-bit state in a dict per parameter; that once broke the checkpoint's JSON on a GPU.
    import torch

    bnb = pytest.importorskip("bitsandbytes", reason="bitsandbytes is installed on Linux only (requirements.txt)")

    def optimizer(weights):
        return bnb.optim.AdamW8bit([weights], lr=1e-2)

    torch.manual_seed(0)
    weights = torch.nn.Parameter(torch.randn(64, 64))
    opt = optimizer(weights)
    grads = [torch.randn(64, 64) for _ in range(3)]
    weights.grad = grads[0]
    opt.step()
    folder = checkpoint.save(tmp_path / "step-1", {"w": weights.detach().clone()}, opt.state_dict(),
                             {"torch": torch.get_rng_state()}, {"step": 1})
    lora, saved, _, state = checkpoint.load(folder)
    resumed_weights = torch.nn.Parameter(lora["w"].clone())
    resumed = optimizer(resumed_weights)
    resumed.load_state_dict(saved)
    for grad in grads[1:]:
        for w, o in ((weights, opt), (resumed_weights, resumed)):
            w.grad = grad.clone()
            o.step()
    assert state["step"] == 1 and torch.equal(weights, resumed_weights)
