"""The LoRA trainer's dataset reader: every accepted layout, and a clear sentence for each broken one."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from training.lora.data import DatasetError, read_captioned, read_instance_images


def images(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", (8, 8), "red").save(folder / name)


def test_metadata_jsonl(tmp_path):
    images(tmp_path, "a.png", "b.png")
    rows = [{"file_name": "a.png", "text": "a red square"}, {"file_name": "b.png", "text": "a blue circle"}]
    (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    assert [(e.image.name, e.caption) for e in read_captioned(tmp_path)] == [("a.png", "a red square"),
                                                                            ("b.png", "a blue circle")]


def test_csv_with_image_text_columns(tmp_path):
    images(tmp_path, "a.png")
    (tmp_path / "captions.csv").write_text("image,text\na.png,a red square\n")
    assert read_captioned(tmp_path)[0].caption == "a red square"


def test_txt_sidecars(tmp_path):
    images(tmp_path, "a.png")
    (tmp_path / "a.txt").write_text("a red square\n")
    assert read_captioned(tmp_path)[0].caption == "a red square"


def test_wrong_csv_columns_name_found_and_expected(tmp_path):
    images(tmp_path, "a.png")
    (tmp_path / "captions.csv").write_text("path,description\na.png,x\n")
    with pytest.raises(DatasetError, match=r"captions.csv has columns path, description; expected an image "
                                           r"column \(image or file_name"):
        read_captioned(tmp_path)


def test_images_without_captions_are_named(tmp_path):
    images(tmp_path, "a.png", "b.png")
    (tmp_path / "a.txt").write_text("a red square")
    with pytest.raises(DatasetError, match=r"1 image\(s\) .* have no caption \(b.png\)"):
        read_captioned(tmp_path)


def test_no_images(tmp_path):
    with pytest.raises(DatasetError, match="has no images"):
        read_captioned(tmp_path)
    with pytest.raises(DatasetError, match="has no images"):
        read_instance_images(tmp_path, "a photo of sks person")


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match=f"{tmp_path / 'nope'} does not exist"):
        read_captioned(tmp_path / "nope")


def test_bad_json_line_and_missing_image(tmp_path):
    images(tmp_path, "a.png")
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "a.png", "text": "x"}\n{"file_name": \n')
    with pytest.raises(DatasetError, match="metadata.jsonl line 2 is not valid JSON"):
        read_captioned(tmp_path)
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "gone.png", "text": "x"}\n')
    with pytest.raises(DatasetError, match="line 1: the image gone.png was not found"):
        read_captioned(tmp_path)


def test_paths_may_not_leave_the_folder(tmp_path):
    images(tmp_path, "a.png")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "metadata.jsonl").write_text('{"file_name": "../a.png", "text": "x"}\n')
    with pytest.raises(DatasetError, match="points outside"):
        read_captioned(tmp_path / "sub")
