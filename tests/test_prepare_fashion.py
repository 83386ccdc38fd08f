"""Fashion (seed 001): caption matching, every filter, bad files, seeded sampling, staged output, the CLI."""
from __future__ import annotations

import csv
import json
import zipfile

import pytest
from PIL import Image

from tests.prepare_images import blurry, exif_rotated, photo, save, truncated
from training.prepare import captions_io
from training.lora.data import read_captioned
from training.prepare.cli import main
from training.prepare.common import PrepareError
from training.prepare.fashion import FashionOptions, prepare_fashion

CAPTION = "a model wearing a {} summer outfit"


@pytest.fixture
def shop(tmp_path):
    """A messy fashion folder and its captions.csv; returns the folder."""
    images = tmp_path / "images"
    good = {"a.png": 1, "tops/001.jpg": 2, "shoes/001.jpg": 3, "nocap.png": 4, "short.png": 5}
    for rel, seed in good.items():
        save(photo(seed), images / rel, **({"quality": 92} if rel.endswith(".jpg") else {}))
    save(photo(6, (200, 200)), images / "small.png")
    save(photo(7, (900, 300)), images / "wide.png")
    save(blurry(8), images / "blur.png")
    save(Image.merge("CMYK", [photo(9).convert("L")] * 4), images / "print.jpg", quality=92)
    exif_rotated(images / "phone.jpg", 10, (400, 300))
    (images / "empty.jpg").write_bytes(b"")
    (images / "notes.png").write_text("not a picture")
    truncated(images / "cut.jpg", 11)
    (images / "readme.pdf").write_bytes(b"%PDF-1.4")
    (images / ".DS_Store").write_bytes(b"\0")
    rows = [[rel, CAPTION.format(rel.split(".")[0])] for rel in
            ("a.png", "tops/001.jpg", "shoes/001.jpg", "small.png", "wide.png", "blur.png", "print.jpg",
             "phone.jpg", "empty.jpg", "notes.png", "cut.jpg", "missing.jpg", "001.jpg")]
    rows.append(["short.png", "dress"])
    captions_io.write_csv(tmp_path / "captions.csv", ["image", "caption"], rows)
    return tmp_path


def test_filters_and_bad_files(shop):
    out = shop / "out"
    report = prepare_fashion(FashionOptions(images=shop / "images", captions=shop / "captions.csv", out=out))
    assert sorted(report.kept.values()) == ["a.png", "phone.jpg", "print.jpg", "shoes/001.jpg", "tops/001.jpg"]
    kinds = {n.file: n.kind for n in report.dropped}
    assert kinds == {"small.png": "too small", "wide.png": "aspect ratio", "blur.png": "blurry",
                     "empty.jpg": "unreadable", "notes.png": "unreadable", "cut.jpg": "unreadable",
                     "missing.jpg": "no image", "001.jpg": "ambiguous", "short.png": "short caption",
                     "nocap.png": "no caption", "readme.pdf": "not an image"}
    messages = {n.file: n.message for n in report.dropped}
    assert messages["missing.jpg"] == ("captions.csv line 13 has a caption for missing.jpg, but no such image is "
                                       "in the folder.")
    assert "matches 2 images (shoes/001.jpg, tops/001.jpg)" in messages["001.jpg"]
    assert messages["empty.jpg"] == "empty.jpg is empty (0 bytes)."
    assert messages["small.png"] == "small.png is 200x200, smaller than --min-size 256 on its shorter side."
    assert all(f in messages[f] for f in kinds)  # every reason names its file
    assert {n.file for n in report.warnings if n.kind == "renamed"} == {"tops/001.jpg", "shoes/001.jpg"}

    # The output: what the LoRA trainer reads, with unique names, RGB, upright, untouched files copied.
    examples = {e.image.name: e.caption for e in read_captioned(out)}
    assert set(examples) == {"a.png", "tops_001.jpg", "shoes_001.jpg", "print.jpg", "phone.jpg"}
    assert examples["tops_001.jpg"] == CAPTION.format("tops/001")
    assert (out / "a.png").read_bytes() == (shop / "images" / "a.png").read_bytes()
    assert Image.open(out / "print.jpg").mode == "RGB"
    assert Image.open(out / "phone.jpg").size == (300, 400)
    with (out / "fashion_data.csv").open(newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["image", "text", "width", "height", "sharpness"] and len(table) == 5
    saved = json.loads((out / "report.json").read_text())
    assert saved["counts"]["kept"] == 5 and saved["counts"]["dropped"] == 11
    assert "- `missing.jpg` (no image): captions.csv line 13" in (out / "report.md").read_text()
    assert not [p for p in shop.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_seeded_sample(tmp_path):
    rows = []
    for i in range(8):
        save(photo(i), tmp_path / "images" / f"{i}.png")
        rows.append({"image": f"{i}.png", "caption": CAPTION.format(i)})
    (tmp_path / "images" / "captions.json").write_text(json.dumps(rows))  # found in the folder itself

    def sample(seed, out):
        options = FashionOptions(images=tmp_path / "images", out=tmp_path / out, sample=3, seed=seed)
        return sorted(prepare_fashion(options).kept)

    first = sample(1, "a")
    assert len(first) == 3 and sample(1, "b") == first
    assert any(sample(seed, f"s{seed}") != first for seed in (2, 3, 4))
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["counts"]["dropped_by_reason"] == {"not sampled": 5}


def test_empty_result_or_a_crash_writes_nothing(shop, monkeypatch):
    out = shop / "out"
    with pytest.raises(PrepareError) as info:
        prepare_fashion(FashionOptions(images=shop / "images", captions=shop / "captions.csv", out=out,
                                       min_size=5000))
    message, report = str(info.value), info.value.report
    assert message.startswith(f"No usable images: {len(report.dropped)} were dropped (") and "too small" in message
    assert message.endswith("; see the report for each file's reason.") and str(shop) not in message
    assert not out.exists()

    def crash(*args):
        raise RuntimeError("disk full")
    monkeypatch.setattr(captions_io, "write_fashion_csv", crash)
    with pytest.raises(RuntimeError):
        prepare_fashion(FashionOptions(images=shop / "images", captions=shop / "captions.csv", out=out))
    assert not out.exists() and not [p for p in shop.iterdir() if p.name.startswith(".")]


def test_existing_output_needs_overwrite_and_zip(shop):
    out = shop / "out"
    out.mkdir()
    (out / "old.txt").write_text("previous result")
    options = FashionOptions(images=shop / "images", captions=shop / "captions.csv", out=out, zip=True)
    with pytest.raises(PrepareError, match="already exists and is not empty"):
        prepare_fashion(options)
    options.overwrite = True
    prepare_fashion(options)
    assert not (out / "old.txt").exists() and (out / "metadata.jsonl").is_file()
    with zipfile.ZipFile(shop / "out.zip") as archive:
        assert {"metadata.jsonl", "fashion_data.csv", "report.json", "a.png"} <= set(archive.namelist())
    with pytest.raises(PrepareError, match="overlaps the input"):
        prepare_fashion(FashionOptions(images=shop / "images", captions=shop / "captions.csv",
                                       out=shop / "images" / "clean"))


def test_command_line(shop, capsys):
    args = ["fashion", "--images", str(shop / "images"), "--captions", str(shop / "captions.csv"),
            "--out", str(shop / "cli"), "--min-size", "128"]
    assert main(args) == 0
    assert "fashion: kept 6, dropped 10" in capsys.readouterr().out  # small.png passes at 128
    (shop / "bad.csv").write_text('image,text\na.png,"unclosed\n')
    assert main([*args[:3], "--captions", str(shop / "bad.csv"), "--out", str(shop / "cli2")]) == 1
    assert capsys.readouterr().err == ("prepare: bad.csv line 2 column 7 is not valid CSV (a quote opened here is "
                                       "never closed).\n")
    assert main([*args, "--sample", "0"]) == 2
    assert main(["fashion", "--images", "x", "--out", "y", "--min-size", "big"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "invalid int value: 'big'" in err[1]
