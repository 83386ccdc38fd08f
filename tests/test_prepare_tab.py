"""The Datasets tab's handlers, called as plain functions: uploads, the three use cases, the caption editor."""
from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest
from PIL import Image

from tabs import datasets
from tests.prepare_images import blurry, distinct_photos, photo, save, truncated
from training.runs.launcher import RunManager

MALLORY = SimpleNamespace(username="mallory")


@pytest.fixture
def tab(tmp_path, tiny_runtime):
    manager = RunManager(tmp_path / "runs", max_active=0, poll_seconds=None)
    prepare, save_captions = datasets.make_handlers(manager, tiny_runtime)
    yield SimpleNamespace(prepare=prepare, save=save_captions, manager=manager,
                          root=tmp_path / "uploads" / "local" / "datasets")
    manager.close()


def test_endpoints(tmp_path, tiny_runtime):
    with gr.Blocks() as demo:
        datasets.build(RunManager(tmp_path / "runs", max_active=0, poll_seconds=None), tiny_runtime)
    endpoints = demo.get_api_info()["named_endpoints"]
    assert [p["parameter_name"] for p in endpoints["/prepare"]["parameters"]] == [
        "use_case", "files", "zip_file", "captions_file", "min_size", "min_caption", "sample", "seed", "size",
        "duplicate_tolerance", "caption", "style_suffix", "deny_words", "drop_text", "crop_face", "rights_confirmed",
        "max_aspect", "min_sharpness"]
    assert [p["parameter_name"] for p in endpoints["/save_captions"]["parameters"]] == ["folder", "table"]


def test_fashion_folder_upload_then_edit_captions(tab, tmp_path):
    # A browser folder upload: a flat list of files, two of them with the same name from different folders.
    names = ["a.png", "a.png", "b.png", "c.png"]
    files = [save(photo(i), tmp_path / "browser" / f"{i}" / name) for i, name in enumerate(names)]
    captions = tmp_path / "browser" / "captions.json"
    captions.write_text(json.dumps({"a.png": "a red circle dress", "b.png": "a blue square coat",
                                    "c.png": "a green triangle hat"}))
    summary, report, gallery, rows, folder = tab.prepare("fashion", [str(f) for f in files] + [str(captions)])
    assert summary.startswith("**fashion: kept 2, dropped 3 (2 no caption, 1 ambiguous)")
    assert f"Dataset **{folder}**" in summary and str(tab.root) not in summary  # a name, never a server path
    dataset = tab.root / folder
    assert dataset.parent.parent == tab.root and not (dataset.parent / "input").exists()
    from tabs.common import owned_folder

    assert owned_folder(tab.manager, "local", folder) == dataset.resolve()  # what the Train tab takes
    assert "a.png matches 2 images (same-name-1/a.png, same-name-2/a.png)" in report[0][2]
    assert [r[1] for r in report] == ["dropped"] * 3 + ["kept"] * 2
    assert rows == [["b.png", "a blue square coat"], ["c.png", "a green triangle hat"]]
    assert [caption for _, caption in gallery] == ["b.png: a blue square coat", "c.png: a green triangle hat"]

    edited = [["b.png", "a blue square coat,\n edited"], rows[1]]
    message = tab.save(folder, {"headers": ["file_name", "text"], "data": edited})
    assert message == "Saved the captions of 2 images to metadata.jsonl, fashion_data.csv."
    first = json.loads((dataset / "metadata.jsonl").read_text().splitlines()[0])
    assert first == {"file_name": "b.png", "text": "a blue square coat, edited"}
    with (dataset / "fashion_data.csv").open(newline="") as f:
        assert next(csv.DictReader(f))["text"] == "a blue square coat, edited"

    with pytest.raises(gr.Error, match="not an image of this dataset"):
        tab.save(folder, [["../../secret.png", "x"]])
    with pytest.raises(gr.Error, match="not one of your prepared datasets"):
        tab.save(folder, rows, MALLORY)
    for elsewhere in (str(tmp_path), f"../{folder}", str(dataset.parent)):
        with pytest.raises(gr.Error, match="not one of your prepared datasets"):
            tab.save(elsewhere, rows)


def test_ghibli_zip_with_tiny_blip(tab, tmp_path):
    archive = tmp_path / "stills.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i, color in enumerate(["red", "blue", "green"]):
            z.write(save(photo(i, (64, 64), color=color, shape="circle"), tmp_path / f"{i}.png"), f"stills/{i}.png")
    # no min_size given: the tiny profile's default lets the toy model's 64 px pictures through
    summary, report, gallery, rows, folder = tab.prepare("ghibli", None, str(archive), size=64,
                                                         caption=True, style_suffix="in toy style",
                                                         deny_words="Totoro\n")
    assert summary.startswith("**ghibli: kept 3, dropped 0")
    assert all(text.endswith("in toy style") for _, text in rows)
    with (tab.root / folder / "captions.csv").open(newline="") as f:
        assert next(csv.reader(f)) == ["image", "text"]
    assert all(isinstance(image, Image.Image) for image, _ in gallery)


def error(fn, *args, **kwargs) -> str:
    with pytest.raises(gr.Error) as info:
        fn(*args, **kwargs)
    return info.value.message


def test_errors_are_one_sentence_and_leave_nothing(tab, tmp_path):
    blank = [str(save(image, tmp_path / f"{i}.png")) for i, image in enumerate(distinct_photos(3))]  # no faces
    assert error(tab.prepare, "ghibli", blank[:1], str(tmp_path / "x.zip")) == \
        "Upload either a folder or a ZIP, not both."
    assert error(tab.prepare, "ghibli") == "Upload a folder of images or a ZIP first."
    assert error(tab.prepare, "dreambooth", blank) == \
        "Tick “I have the right to use these photos” before preparing photos of people."
    summary, report, *_ = tab.prepare("dreambooth", blank, crop_face=True, rights_confirmed=True)
    assert summary.startswith("**Only 0 of 3 photos are usable, and DreamBooth needs at least 5; not usable: "
                              "0.png: no face found")
    assert [row[:2] for row in report] == [[f"{i}.png", "dropped"] for i in range(3)]
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    assert error(tab.prepare, "ghibli", None, str(tmp_path / "bad.zip")) == "bad.zip is not a readable ZIP file."
    assert list(tab.root.iterdir()) == []


def test_messages_name_the_upload_and_the_form_fields_never_a_server_path_or_flag(tab, tmp_path):
    photos = [str(save(photo(i), tmp_path / "up" / f"{i}.png")) for i in range(2)]
    assert error(tab.prepare, "fashion", photos) == (
        "Your upload has no captions; add a caption file (JSON, CSV or metadata.jsonl) or a .txt beside each image, "
        "or give one with “Captions (JSON, CSV or metadata.jsonl; else the one in the upload)”.")
    assert error(tab.prepare, "fashion", photos, min_size=0) == "“Min size (px)” must be at least 1, not 0."
    assert error(tab.prepare, "ghibli", photos, size=4) == \
        "“Output size (Ghibli, DreamBooth)” 4 is outside 8-4096 pixels."

    captions = tmp_path / "up" / "captions.json"
    captions.write_text(json.dumps({"0.png": "a red circle dress", "1.png": "a blue square coat"}))
    summary, report, *_ = tab.prepare("fashion", photos, captions_file=str(captions), min_size=400)
    assert summary == "**No usable images: 2 were dropped (2 too small); see the report for each file's reason.**"
    assert report[0] == ["0.png", "dropped",
                         "0.png is 320x320, smaller than “Min size (px)” 400 on its shorter side."]

    # Ghibli with every image dropped: no dedupe of nothing, the report says why for each file.
    dropped = [str(save(blurry(i), tmp_path / "still" / f"b{i}.png")) for i in range(2)]
    dropped.append(str(truncated(tmp_path / "still" / "cut.jpg")))
    summary, report, gallery, rows, folder = tab.prepare("ghibli", dropped, caption=False)
    assert summary == "**No usable images: 3 were dropped (2 blurry, 1 unreadable); see the report for each file's " \
                      "reason.**"
    assert (gallery, rows, folder) == ([], [], "")
    assert report[0][0] == "b0.png" and "under “Min sharpness” 50" in report[0][2]
    assert not any("--" in row[2] or str(tmp_path) in row[2] for row in report)
    assert list(tab.root.iterdir()) == []


def test_prepare_over_the_api(served_app, tmp_path):
    from gradio_client import Client, handle_file

    archive = tmp_path / "stills.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i in range(2):
            z.write(save(photo(i, shape="square", color=["red", "blue"][i]), tmp_path / f"{i}.png"), f"{i}.png")
    client = Client(served_app, verbose=False)
    summary, report, gallery, rows, folder = client.predict(
        "ghibli", zip_file=handle_file(str(archive)), size=64, caption=False, api_name="/prepare")
    assert summary.startswith("**ghibli: kept 2") and len(gallery) == 2
    assert rows["data"] == [["0.png", "in Ghibli style"], ["1.png", "in Ghibli style"]]
    assert client.predict(folder, {"headers": ["file_name", "text"], "data": [["0.png", "a red square"]]},
                          api_name="/save_captions") == "Saved the captions of 2 images to metadata.jsonl, " \
                                                        "captions.txt, captions.csv."


def test_captioning_is_off_where_the_captioner_is_untrained_and_the_form_says_why(tmp_path, tiny_runtime):
    from pipelines.models.runtime import Runtime

    def caption_box(runtime):
        with gr.Blocks() as demo:
            datasets.build(RunManager(tmp_path / "runs", max_active=0, poll_seconds=None), runtime)
        box = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "data-caption")
        default = next(p for p in demo.get_api_info()["named_endpoints"]["/prepare"]["parameters"]
                       if p["parameter_name"] == "caption")["parameter_default"]
        return box, default

    box, default = caption_box(tiny_runtime)  # the tiny profile's BLIP is built with random weights
    assert box.value is False and default is False and "untrained model that writes gibberish" in box.info
    trained = Runtime(profile=tiny_runtime.profile, overrides={"captioner": str(tmp_path)},
                      cache_dir=tiny_runtime.cache_dir)
    box, default = caption_box(trained)
    assert box.value is True and default is True and "always kept" in box.info


def test_uploaded_captions_are_kept_with_the_form_defaults(tab, tmp_path):
    files = [str(save(image, tmp_path / "up" / f"{i}.png")) for i, image in enumerate(distinct_photos(3))]
    (tmp_path / "up" / "metadata.jsonl").write_text('{"file_name": "1.png", "text": "a blue square, my words"}\n')
    summary, report, gallery, rows, folder = tab.prepare("ghibli", files + [str(tmp_path / "up" / "metadata.jsonl")],
                                                         size=64)
    assert dict(rows) == {"0.png": "in Ghibli style", "1.png": "a blue square, my words in Ghibli style",
                          "2.png": "in Ghibli style"}
