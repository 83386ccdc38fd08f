"""Every training command refuses a bad command line with one line on stderr and exit code 2, before it trains."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, free_port
from test_app_cli import assert_one_line_error, run_app


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.fixture
def blocked(tmp_path):
    """A path no one can create a folder at, even root: its parent is a regular file."""
    (tmp_path / "a-file").write_text("not a folder")
    return tmp_path / "a-file" / "out"


def lora(*args):
    return ["training.lora", "--preset", "fashion", "--data", ".", *args]


def anime(*args):
    return ["training.anime", "--content", ".", "--style", ".", *args]


@pytest.mark.parametrize("command, words", [
    (lora("--output", "{tmp}/r", "--max-steps", "-5"), ["max_steps must be at least 1, not -5"]),
    (lora("--output", "{tmp}/r", "--profile", "bogus"), ["--profile", "'bogus'", "auto"]),
    (lora("--output", "{blocked}"), ["output folder", "{blocked}", "not writable", "--output"]),
    (anime("--output", "{tmp}/r", "--profile", "bogus"), ["--profile", "'bogus'"]),
    (anime("--output", "{blocked}"), ["output folder", "{blocked}", "not writable", "--output"]),
    (["training.prepare", "dreambooth", "--images", ".", "--out", "{blocked}"], ["--out", "not writable"]),
    (["training.prepare", "dreambooth", "--images", ".", "--out", "{tmp}/o", "--profile", "bogus"], ["'bogus'"]),
    (["training.toy", "--bogus"], ["unrecognized arguments: --bogus"]),
    (["training.toy", "--output", "{blocked}"], ["output folder", "{blocked}", "not writable"]),
])
def test_bad_command_lines_are_one_line_and_exit_2(command, words, tmp_path, blocked):
    fill = {"tmp": str(tmp_path), "blocked": str(blocked)}
    result = run_module(*[part.format(**fill) for part in command])
    assert_one_line_error(result, *[word.format(**fill) for word in words])
    assert not (tmp_path / "r").exists()  # refused before anything is written


def test_toy_refuses_a_count_below_1_before_training(tmp_path, capsys):
    from training.toy.recipe import main as toy_main

    assert toy_main(["--unet-steps", "-1", "--output", str(tmp_path / "toy")]) == 2
    assert capsys.readouterr().err == "training.toy: --unet-steps must be positive, not -1.\n"
    assert not (tmp_path / "toy").exists()


def test_app_refuses_an_unwritable_runs_folder(blocked):
    result = run_app("--profile", "tiny", "--port", str(free_port()), env={"ATELIER_RUNS": str(blocked)})
    assert_one_line_error(result, "runs folder", str(blocked), "not writable", "ATELIER_RUNS")


def test_validation_steps_0_means_never(toy_dataset, tmp_path):
    from training.lora.cli import main

    out = tmp_path / "run"
    code = main(["--preset", "fashion", "--data", str(toy_dataset), "--output", str(out), "--profile", "tiny",
                 "--max-steps", "2", "--set", "val_fraction=0.2", "--set", "validation_steps=0",
                 "--set", "batch_size=2", "--set", "gradient_accumulation_steps=1", "--set", "sample_steps=0",
                 "--set", "sample_inference_steps=2"])
    assert code == 0, (out / "train.log").read_text()
    kinds = [json.loads(line)["kind"] for line in (out / "events.jsonl").read_text().splitlines()]
    assert "val" not in kinds and kinds[-1] == "done"
