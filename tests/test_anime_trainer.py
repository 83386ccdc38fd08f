"""``python -m training.anime`` in the tiny profile: the run folder, its checkpoints, and clear data errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pipelines.anime.stylize import Stylizer
from pipelines.anime.model import read_checkpoint
from training.anime.cli import main
from training.anime.data import DataError, splits


def write_images(folder, n, seed, size=(40, 32)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype("uint8")).save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("anime")
    content = write_images(root / "CelebA" / "train", 4, 0)
    write_images(root / "CelebA" / "val", 2, 1)
    style = write_images(root / "AnimeFace", 3, 2)
    run = root / "run"
    code = main(["--content", str(content.parent), "--style", str(style), "--output", str(run), "--epochs", "2",
                 "--profile", "tiny", "--set", "batch_size=2", "--set", "checkpoint_every=1",
                 "--set", "style_loss=gram", "--set", "lambda_tv=0.1", "--set", "scheduler=cosine"])
    return code, run


def test_cli_writes_the_run_folder(trained):
    code, run = trained
    assert code == 0
    for name in ("config.toml", "events.jsonl", "train.log", "report.json", "loss.png", "final/model.safetensors"):
        assert (run / name).is_file(), name
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    kinds = [e["kind"] for e in events]
    assert kinds.count("train") == 4 and kinds.count("val") == 2 and kinds[-1] == "done"
    assert {e["max_steps"] for e in events if e["kind"] == "train"} == {4}
    assert [(e["stage"], e["step"]) for e in events if e["kind"] == "stage"] == [  # the Runs tab's stage
        ("loading", 0), ("training", 0), ("saving", 4)]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-2", "step-4"]
    assert len(list((run / "samples").glob("*.png"))) == 2
    assert 'style_loss = "gram"' in (run / "config.toml").read_text()


def test_validation_grid_has_content_style_output_columns(trained):
    _, run = trained
    grid = Image.open(sorted((run / "samples").glob("*.png"))[-1])
    assert grid.size == (3 * 224 + 4 * 2, 2 * 224 + 3 * 2)  # 3 columns, 2 validation rows, 2 px padding


def test_final_weights_are_decoder_safetensors_and_stylize(trained, tiny_runtime):
    _, run = trained
    state, config = read_checkpoint(run / "final" / "model.safetensors")
    assert state and all(k.startswith("decoder.") for k in state)
    assert config["decoder_widths"] == [32, 16, 16, 8]
    out = Stylizer(tiny_runtime)(run / "final" / "model.safetensors", Image.new("RGB", (90, 60), "white"),
                                 Image.new("RGB", (30, 30), "blue"))
    assert out.size == (90, 60)


def test_empty_folder_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="content folder .*empty has no images"):
        splits(tmp_path / "empty", "content", 0.1)


def test_cli_reports_an_unreadable_image_and_exits_2(tmp_path, capsys):
    content = write_images(tmp_path / "c", 2, 0)
    (content / "broken.png").write_text("not an image")
    style = write_images(tmp_path / "s", 2, 1)
    code = main(["--content", str(content), "--style", str(style), "--output", str(tmp_path / "run"),
                 "--epochs", "1", "--profile", "tiny"])
    assert code == 2
    error = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()][-1]
    assert error["kind"] == "error" and "broken.png" in error["message"]


def test_cli_refuses_bad_settings_in_one_line(tmp_path, capsys):
    code = main(["--content", str(tmp_path), "--style", str(tmp_path), "--output", str(tmp_path / "r"),
                 "--set", "lambda_style=lots"])
    assert code == 2
    assert "lambda_style must be a number, not 'lots'" in capsys.readouterr().err


def test_nan_loss_stops_with_a_message(tmp_path):
    content, style = write_images(tmp_path / "c", 2, 0), write_images(tmp_path / "s", 2, 1)
    code = main(["--content", str(content), "--style", str(style), "--output", str(tmp_path / "run"),
                 "--epochs", "1", "--profile", "tiny", "--set", "lambda_content=nan"])
    assert code == 2
    error = json.loads((tmp_path / "run" / "events.jsonl").read_text().splitlines()[-1])
    assert "The loss became nan at epoch 1" in error["message"]


def test_resume_latest_continues_from_the_next_epoch(tmp_path):
    content, style = write_images(tmp_path / "c", 2, 0), write_images(tmp_path / "s", 2, 1)
    base = ["--content", str(content), "--style", str(style), "--output", str(tmp_path / "run"), "--profile", "tiny",
            "--set", "batch_size=2", "--set", "scheduler=cosine"]
    assert main([*base, "--epochs", "1"]) == 0
    assert main([*base, "--epochs", "2", "--resume", "latest"]) == 0
    events = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    assert [(e["epoch"], e["step"]) for e in events if e["kind"] == "train"] == [(1, 1), (2, 2)]
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step-1", "step-2"]


def test_resume_without_a_checkpoint_is_named(tmp_path):
    content, style = write_images(tmp_path / "c", 2, 0), write_images(tmp_path / "s", 2, 1)
    code = main(["--content", str(content), "--style", str(style), "--output", str(tmp_path / "run"),
                 "--profile", "tiny", "--resume", "latest"])
    assert code == 2
    error = json.loads((tmp_path / "run" / "events.jsonl").read_text().splitlines()[-1])
    assert "has no checkpoint to resume from" in error["message"]


def test_a_style_folder_smaller_than_a_batch_trains(tmp_path):
    # the shipped style set has 5 images and the default batch is 8
    content, style = write_images(tmp_path / "c", 6, 0), write_images(tmp_path / "s", 2, 1)
    code = main(["--content", str(content), "--style", str(style), "--output", str(tmp_path / "run"),
                 "--epochs", "1", "--profile", "tiny", "--set", "batch_size=4", "--set", "val_fraction=0"])
    assert code == 0, (tmp_path / "run" / "train.log").read_text()
