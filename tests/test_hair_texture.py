"""Stage 1 of seed 000 on the toy hair world: the texture encoder's probe beats its random init; exact resume."""
from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from tests.conftest import prepared_toy_hair
from training.hair.cli import main


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("hair-texture")
    return prepared_toy_hair(root, 60, seed=11)


def test_the_trained_encoder_tells_curls_apart_better_than_its_random_init(prepared, tmp_path):
    code = main(["texture", "--data", str(prepared), "--output", str(tmp_path / "run"), "--set", "steps=150",
                 "--set", "val_fraction=0.3"])
    assert code == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    probe = report["probe"]
    assert probe["held_out_patches"] >= 10
    assert probe["knn_accuracy_trained"] >= 0.8 and probe["knn_accuracy_trained"] > probe["knn_accuracy_random_init"]
    assert (tmp_path / "run" / "final" / "texture.safetensors").is_file()
    kinds = {json.loads(line)["kind"] for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()}
    assert {"train", "checkpoint", "done"} <= kinds


def test_a_resumed_run_equals_an_uninterrupted_one(prepared, tmp_path):
    common = ["texture", "--data", str(prepared), "--set", "checkpointing_steps=5", "--set", "batch_size=16"]
    assert main([*common, "--output", str(tmp_path / "whole"), "--set", "steps=10"]) == 0
    assert main([*common, "--output", str(tmp_path / "cut"), "--set", "steps=5"]) == 0
    assert main([*common, "--output", str(tmp_path / "cut"), "--set", "steps=10", "--resume", "latest"]) == 0
    whole = load_file(tmp_path / "whole" / "final" / "texture.safetensors")
    cut = load_file(tmp_path / "cut" / "final" / "texture.safetensors")
    assert all((whole[k] == cut[k]).all() for k in whole)


def test_bad_usage_is_one_line(tmp_path, capsys):
    assert main(["texture", "--data", str(tmp_path), "--output", str(tmp_path / "r")]) == 2
    assert "not a prepared hair folder" in capsys.readouterr().err
    assert main(["texture", "--data", str(tmp_path), "--output", str(tmp_path / "r"), "--set", "steps=0"]) == 2
