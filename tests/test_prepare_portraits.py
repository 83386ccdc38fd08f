"""DreamBooth portraits (seed 004): the real face detector of the tiny profile (dlib) on blank
and real photos, the "fewer than 5 usable" error, face-crop geometry with a stand-in detector, EXIF, counts."""
from __future__ import annotations

import json

import pytest
from matplotlib import cbook
from PIL import Image, ImageEnhance, ImageOps

from tests.prepare_images import distinct_photos, exif_rotated, save, truncated
from training.prepare.cli import main
from training.prepare.common import PrepareError
from training.prepare.portraits import PortraitOptions, face_detector, prepare_dreambooth


class Faces:
    """A stand-in detector: a fixed list of boxes per image size, else one box."""

    def __init__(self, box=(180, 120, 40, 40), by_size=None):
        self.box, self.by_size = box, by_size or {}

    def detect(self, image):
        return self.by_size.get(image.size, [self.box])


@pytest.fixture(scope="module")
def faces(tiny_runtime):
    return face_detector(tiny_runtime)


def faceless_photos(folder, n, size=(400, 300)):
    """``n`` sharp, different pictures without a face."""
    for i, image in enumerate(distinct_photos(n, size)):
        save(image, folder / f"blank-{i}.png")
    return folder


def test_too_few_usable_photos_says_why_and_writes_nothing(tmp_path, faces):
    photos = faceless_photos(tmp_path / "me", 6)
    truncated(photos / "broken.jpg")
    with pytest.raises(PrepareError) as info:
        prepare_dreambooth(PortraitOptions(images=photos, out=tmp_path / "out", crop_face=True), faces)
    message = str(info.value)
    assert message.startswith("Only 0 of 7 photos are usable, and DreamBooth needs at least 5; not usable: ")
    assert str(tmp_path) not in message and len(info.value.report.dropped) == 7
    assert "blank-0.png: no face found, so it cannot be cropped around one face" in message
    assert "broken.jpg is truncated or corrupt" in message
    assert not (tmp_path / "out").exists()

    # Without --crop-face a photo with no detected face is kept with a warning (the detector may miss profiles).
    report = prepare_dreambooth(PortraitOptions(images=photos, out=tmp_path / "warned"), faces)
    assert len(report.kept) == 6 and {n.kind for n in report.warnings} == {"faces"}
    assert "blank-0.png: no face found; DreamBooth learns a person best" in report.warnings[0].message


def test_real_faces_are_found_and_cropped(tmp_path, faces):
    hopper = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    variants = [hopper, ImageOps.mirror(hopper), hopper.crop((60, 70, 460, 560)),
                ImageEnhance.Brightness(hopper).enhance(1.3), ImageEnhance.Contrast(hopper).enhance(0.8)]
    for i, image in enumerate(variants):
        save(image, tmp_path / "photos" / f"{i}.jpg", quality=92)
    report = prepare_dreambooth(PortraitOptions(images=tmp_path / "photos", out=tmp_path / "out", crop_face=True,
                                                size=128), faces)
    assert len(report.kept) == 5 and not report.warnings
    assert all(Image.open(tmp_path / "out" / name).size == (128, 128) for name in report.kept)
    rows = [json.loads(line) for line in (tmp_path / "out" / "metadata.jsonl").read_text().splitlines()]
    assert {row["text"] for row in rows} == {"a photo of sks person"}


def test_crop_geometry_and_several_faces(tmp_path):
    marks = [(40, 80, 220), (40, 180, 60), (235, 210, 40), (140, 60, 190), (240, 140, 30), (15, 15, 15)]
    for i, mark in enumerate(marks):
        image = Image.new("RGB", (400 + (i == 5), 300), "white")
        image.paste((220, 40, 40), (180, 120, 220, 160))  # the "face": a red 40x40 box
        image.paste(mark, (0, 0, 60, 60))  # far from the face: the photos are not duplicates of each other
        save(image, tmp_path / "photos" / ("group.png" if i == 5 else f"{i}.png"))
    detector = Faces(by_size={(401, 300): [(10, 10, 30, 30), (200, 100, 30, 30)]})
    report = prepare_dreambooth(PortraitOptions(images=tmp_path / "photos", out=tmp_path / "out", crop_face=True,
                                                size=88), detector)
    assert {n.file: n.message for n in report.dropped} == {
        "group.png": "group.png: 2 faces found, so it cannot be cropped around one face."}
    crop = Image.open(tmp_path / "out" / "0.png")
    # 2.2 x 40 = 88 pixels around the face's centre (200, 140): the red box sits in the middle 40 pixels
    assert crop.size == (88, 88) and crop.getpixel((44, 44)) == (220, 40, 40)
    assert crop.getpixel((20, 44)) == crop.getpixel((44, 20)) == (255, 255, 255)
    assert crop.getpixel((25, 25)) == (220, 40, 40) and crop.getpixel((23, 23)) == (255, 255, 255)


def test_exif_turned_shrunk_and_counted(tmp_path):
    folder = tmp_path / "photos"
    exif_rotated(folder / "phone.jpg", size=(800, 600))
    faceless_photos(folder, 21, size=(64, 64))
    report = prepare_dreambooth(PortraitOptions(images=folder, out=tmp_path / "out", size=300, min_size=64), Faces())
    assert Image.open(tmp_path / "out" / "phone.jpg").size == (300, 400)  # upright, shorter side 300
    assert (tmp_path / "out" / "blank-0.png").read_bytes() == (folder / "blank-0.png").read_bytes()  # copied
    assert any(n.kind == "count" and n.message.startswith("22 photos;") for n in report.warnings)


def test_command_line(tmp_path, capsys):
    photos = faceless_photos(tmp_path / "me", 3)
    args = ["dreambooth", "--images", str(photos), "--out", str(tmp_path / "out"), "--profile", "tiny"]
    assert main([*args, "--crop-face"]) == 1
    assert capsys.readouterr().err.splitlines()[-1].startswith("prepare: Only 0 of 3 photos are usable")
    assert main([*args, "--size", "2"]) == 2
    assert main([*args, "--profile", "huge"]) == 2
