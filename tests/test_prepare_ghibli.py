"""Ghibli (seed 003): folder and ZIP import, MD5 and perceptual dedupe keeping the largest, blur and text
checks, BLIP captions (tiny BLIP: the plumbing and the cleaning, not the words) and the caption files."""
from __future__ import annotations

import csv
import itertools
import json
import os
import shutil
import stat
import zipfile

import pytest
from PIL import Image

from pipelines.captioning import runtime_captioner
from tests.prepare_images import blurry, photo, save, truncated, with_text
from training.prepare import captions_io
from training.prepare.cli import main
from training.prepare.common import PrepareError
from training.prepare.ghibli import GhibliOptions, prepare_ghibli

TRIPLES = [("red", "circle", "white"), ("blue", "square", "black"), ("green", "triangle", "gray"),
           ("yellow", "circle", "black"), ("purple", "square", "white"), ("orange", "triangle", "black")]


@pytest.fixture
def collection(tmp_path):
    """Six different stills plus a resized copy, a re-encode, a crop, a byte copy, a blurry, a broken and a
    captioned image; returns the folder."""
    folder = tmp_path / "ghibli"
    for i, (color, shape, background) in enumerate(TRIPLES):
        save(photo(i, (320, 320), color=color, shape=shape, background=background), folder / f"{i}.png")
    Image.open(folder / "0.png").resize((200, 200)).save(folder / "0-small.png")
    Image.open(folder / "1.png").save(folder / "1-again.jpg", quality=70)
    Image.open(folder / "2.png").crop((6, 4, 312, 318)).save(folder / "2-crop.png")
    shutil.copy(folder / "3.png", folder / "3-copy.png")
    save(blurry(20), folder / "blur.png")
    truncated(folder / "broken.jpg")
    save(with_text(photo(21, (320, 320), color="green", shape="circle", background="white")), folder / "poster.png")
    return folder


def test_every_image_dropped_is_one_sentence_with_the_report(tmp_path):
    folder = tmp_path / "stills"
    for i in range(2):
        save(blurry(i), folder / f"b{i}.png")
    truncated(folder / "cut.jpg")
    with pytest.raises(PrepareError) as info:
        prepare_ghibli(GhibliOptions(images=folder, out=tmp_path / "out"))
    assert str(info.value) == ("No usable images: 3 were dropped (2 blurry, 1 unreadable); see the report for each "
                               "file's reason.")
    assert sorted(n.file for n in info.value.report.dropped) == ["b0.png", "b1.png", "cut.jpg"]
    assert not (tmp_path / "out").exists()


def test_folder_import(collection, tmp_path):
    report = prepare_ghibli(GhibliOptions(images=collection, out=tmp_path / "out", size=128, min_size=128))
    assert sorted(report.kept) == ["0.png", "1.png", "2.png", "3-copy.png", "4.png", "5.png", "poster.png"]
    kinds = {n.file: n.kind for n in report.dropped}
    assert kinds == {"3.png": "exact duplicate", "0-small.png": "near duplicate", "1-again.jpg": "near duplicate",
                     "2-crop.png": "near duplicate", "blur.png": "blurry", "broken.jpg": "unreadable"}
    messages = {n.file: n.message for n in report.dropped}
    assert messages["3.png"] == "3.png has the same bytes as 3-copy.png."
    assert messages["0-small.png"].startswith("0-small.png looks like 0.png (their colours are at most ")
    assert [(n.file, n.kind) for n in report.warnings] == [("poster.png", "text")]

    out = tmp_path / "out"
    assert all(Image.open(out / name).size == (128, 128) for name in report.kept)
    with (out / "captions.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["image", "text"] and len(rows) == 8
    assert {text for _, text in rows[1:]} == {"in Ghibli style"}  # no --caption: the style alone
    assert len((out / "captions.txt").read_text().splitlines()) == 7

    report = prepare_ghibli(GhibliOptions(images=collection, out=tmp_path / "strict", size=128, drop_text=True,
                                          min_size=128))
    assert "poster.png" not in report.kept and {n.file: n.kind for n in report.dropped}["poster.png"] == "text"


def test_zip_import_refuses_escaping_members(collection, tmp_path):
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as archive:
        for name in ("0.png", "1.png", "0-small.png"):
            archive.write(collection / name, f"stills/{name}")
    report = prepare_ghibli(GhibliOptions(zip=good, out=tmp_path / "from-zip", size=64))
    assert report.kept == {"0.png": "0.png", "1.png": "1.png"}

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.write(collection / "0.png", "0.png")
        archive.write(collection / "1.png", "../outside.png")
    with pytest.raises(PrepareError, match="member '../outside.png' would land outside"):
        prepare_ghibli(GhibliOptions(zip=evil, out=tmp_path / "evil-out", size=64))
    linked = tmp_path / "link.zip"
    with zipfile.ZipFile(linked, "w") as archive:
        info = zipfile.ZipInfo("secret.png")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "/etc/passwd")
    with pytest.raises(PrepareError, match="is a symbolic link"):
        prepare_ghibli(GhibliOptions(zip=linked, out=tmp_path / "link-out", size=64))
    assert not (tmp_path / "evil-out").exists() and not (tmp_path / "outside.png").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_captions_are_cleaned(collection, tmp_path):
    (tmp_path / "deny.txt").write_text("chihiro\nspirited away\n")
    said = itertools.cycle(["arafed Chihiro walking with Haku in a forest", "a girl from Spirited Away",
                            "a boy flying with Kiki over Koriko", "Totoro"])
    options = GhibliOptions(images=collection, out=tmp_path / "out", size=128, caption=True,
                            deny_words=tmp_path / "deny.txt")
    prepare_ghibli(options, captioner=lambda images: [next(said) for _ in images])
    texts = [row["text"] for row in map(json.loads, (tmp_path / "out" / "metadata.jsonl").read_text().splitlines())]
    assert texts[:4] == ["walking with in a forest in Ghibli style", "a girl in Ghibli style",
                         "a boy flying with over in Ghibli style", "Totoro in Ghibli style"]


def test_tiny_blip_through_the_registry(collection, tmp_path, tiny_runtime):
    for name in ("blur.png", "broken.jpg", "poster.png", "4.png", "5.png"):
        os.remove(collection / name)
    prepare_ghibli(GhibliOptions(images=collection, out=tmp_path / "out", size=64, caption=True,
                                 style_suffix="in toy style"), runtime_captioner(tiny_runtime))
    with (tmp_path / "out" / "captions.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["image", "text"] and len(rows) == 4
    for row in rows:  # gibberish from a random tiny BLIP, but cleaned and suffixed
        words = row["text"].split()
        assert row["text"].endswith("in toy style") and not any(w[0].isupper() for w in words[1:-2])


def test_command_line_with_captions(collection, tmp_path, capsys):
    args = ["ghibli", "--images", str(collection), "--out", str(tmp_path / "cli"), "--size", "128", "--caption",
            "--profile", "tiny", "--drop-text"]
    assert main(args) == 0
    assert "ghibli: kept 6, dropped 7" in capsys.readouterr().out
    assert main(["ghibli", "--images", str(collection), "--zip", "x.zip", "--out", str(tmp_path / "x")]) == 2
    assert main(["ghibli", "--images", str(collection), "--out", str(tmp_path / "x"), "--duplicate-tolerance",
                 "300"]) == 2
    assert "--duplicate-tolerance 300 is outside 0-255 levels" in capsys.readouterr().err


def test_captions_the_user_gave_always_win(collection, tmp_path):
    (collection / "metadata.jsonl").write_text(
        '{"file_name": "0.png", "text": "a red circle by the sea"}\n'
        '{"file_name": "4.png", "text": "Totoro in the rain, in Ghibli style"}\n')
    (collection / "5.txt").write_text("a black triangle at night\n")
    seen = []

    def captioner(images):
        seen.extend(images)
        return ["arafed gibberish gibberish"] * len(images)

    report = prepare_ghibli(GhibliOptions(images=collection, out=tmp_path / "out", size=64, min_size=128,
                                          caption=True), captioner)
    texts = dict(captions_io.read_metadata(tmp_path / "out"))
    assert texts["0.png"] == "a red circle by the sea in Ghibli style"  # as written, the style appended once
    assert texts["4.png"] == "Totoro in the rain, in Ghibli style"  # a name the user wrote is theirs to keep
    assert texts["5.png"] == "a black triangle at night in Ghibli style"  # the .txt beside the image
    machine = {name for name in texts if name not in ("0.png", "4.png", "5.png")}
    assert machine and all(texts[name] == "gibberish gibberish in Ghibli style" for name in machine)
    assert len(seen) == len(machine) == len(report.kept) - 3  # BLIP only saw the images nobody captioned

    prepare_ghibli(GhibliOptions(images=collection, out=tmp_path / "plain", size=64, min_size=128))
    plain = dict(captions_io.read_metadata(tmp_path / "plain"))
    assert plain["5.png"] == texts["5.png"] and {plain[n] for n in machine} == {"in Ghibli style"}
