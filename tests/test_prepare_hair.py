"""``python -m training.prepare hair`` (seed 000) on a generated K-Hairstyle folder with every trap of the issue."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.hair import toy_hair
from training.prepare.hair import SUBSETS, HairOptions, prepare_hair

HANGUL = re.compile(r"[\uac00-\ud7a3]")


class NoFaces:
    """A face model that finds nobody, as dlib does on 64-px toy portraits."""

    def identities(self, image):
        return []


def make_folder(root: Path) -> tuple[Path, Path, list[toy_hair.Portrait]]:
    """12 good toy portraits, then one of each trap."""
    images, labels = root / "images", root / "labels"
    portraits = toy_hair.write_khairstyle(images, labels, 12, seed=7)
    g = images / "g0"
    (g / "TRAP-nolabel.jpg").write_bytes((g / "TOY0000-000.jpg").read_bytes())
    (labels / "g0" / "TRAP-noimage.json").write_text((labels / "g0" / "TOY0000-000.json").read_text())
    (g / "TRAP-text.jpg").write_text("not an image")
    (labels / "g0" / "TRAP-text.json").write_text((labels / "g0" / "TOY0000-000.json").read_text())
    def with_label(name: str, **changes) -> None:
        label = json.loads((labels / "g0" / "TOY0000-000.json").read_text())
        label.update(changes)
        (g / f"{name}.jpg").write_bytes((g / "TOY0000-000.jpg").read_bytes())
        (labels / "g0" / f"{name.replace('-', '_')}.json").write_text(json.dumps(label, ensure_ascii=False))
    with_label("TRAP-badpoly", polygon1="[[{\"x\": 3")
    with_label("TRAP-tinypoly", polygon1=json.dumps([[{"x": 1, "y": 1}, {"x": 2, "y": 1}, {"x": 2, "y": 2}]]))
    with_label("TRAP-newword", color="무지개색")
    Image.new("RGB", (64, 64), (245, 245, 245)).save(g / "TRAP-noface.jpg")
    (labels / "g0" / "TRAP-noface.json").write_text((labels / "g0" / "TOY0000-000.json").read_text())
    upright = toy_hair.render(portraits[0])
    upright.convert("CMYK").save(g / "TRAP-cmyk.jpg", quality=95)
    rotated = upright.transpose(Image.Transpose.ROTATE_90)  # stored sideways, EXIF says turn it back
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated.save(g / "TRAP-exif.png", exif=exif)
    import cv2

    cv2.imwrite(str(g / "TRAP-16bit.png"), np.asarray(upright, np.uint16)[:, :, ::-1] * 257)  # 16 bits a channel
    for name in ("TRAP-cmyk", "TRAP-exif", "TRAP-16bit"):
        (labels / "g0" / f"{name}.json").write_text((labels / "g0" / "TOY0000-000.json").read_text())
    return images, labels, portraits


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("khair")
    images, labels, portraits = make_folder(root)
    report = prepare_hair(HairOptions(images=images, labels_dir=labels, out=root / "out"), NoFaces())
    return root / "out", report, portraits


def test_every_trap_is_named_in_the_report_and_the_rest_goes_on(prepared):
    out, report, _ = prepared
    dropped = {Path(n.file).stem: n.kind for n in report.dropped}
    assert dropped == {"TRAP-nolabel": "no label", "TRAP-noimage": "no image", "TRAP-text": "unreadable",
                       "TRAP-badpoly": "bad label", "TRAP-tinypoly": "tiny hair", "TRAP-noface": "no face"}
    assert "TRAP-text.jpg" in next(n.message for n in report.dropped if "text" in n.file)
    assert report.untranslated == {"color=무지개색": 1}
    saved = json.loads((out / "report.json").read_text())
    assert saved["untranslated"] == {"color=무지개색": 1} and "무지개색" in (out / "report.md").read_text()
    assert len(report.kept) == 12 + 4  # the good ones, the new word, CMYK, EXIF-rotated and 16-bit, converted
    assert not list(out.parent.glob(".out.partial-*"))


def test_every_subset_is_written_per_image_and_prompts_are_english(prepared):
    out, _, portraits = prepared
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 16
    for row in rows:
        for folder in SUBSETS[:-1]:
            assert (out / row[folder]).is_file(), (row["id"], folder)
        assert not HANGUL.search(row["prompt"] + json.dumps(row["attributes"])), row
        assert row["patches"] == len(list((out / "hair_patches").glob(f"{row['id']}-*.png")))
        vector = np.load(out / row["identity_embeddings"], allow_pickle=False)
        assert vector.dtype == np.float32 and abs(np.linalg.norm(vector) - 1) < 1e-4
    first = next(r for r in rows if r["id"] == "TOY0000-000")
    p = portraits[0]
    assert first["prompt"].startswith(f"{toy_hair.LENGTHS[p.length]} normal {toy_hair.COLORS[p.color][0]} "
                                      f"{toy_hair.CURLS[p.curl]}")
    mask = np.asarray(Image.open(out / first["masks"])) > 0
    truth = toy_hair.hair_mask(p)
    assert (mask & truth).sum() / truth.sum() > 0.97  # the dilated polygon covers the hair
    bald = np.asarray(Image.open(out / first["bald_images"]), np.float32)
    hair_rgb = np.asarray(toy_hair.COLORS[p.color][1], np.float32)
    assert np.abs(bald[truth] - hair_rgb).sum(-1).mean() > 40  # the hair is painted over
    rgba = Image.open(out / first["hair_only_images"])
    assert rgba.mode == "RGBA" and (np.asarray(rgba)[..., 3] > 0).sum() == mask.sum()
    assert Image.open(out / first["style_vectors"]).size == (224, 224)


def test_odd_formats_are_converted_upright(prepared):
    out, _, portraits = prepared
    upright = np.asarray(toy_hair.render(portraits[0]), np.float32)
    exif = np.asarray(Image.open(out / "images" / "TRAP-exif.png"), np.float32)
    assert np.abs(exif - upright).mean() < 1  # turned back by its EXIF orientation
    sixteen = np.asarray(Image.open(out / "images" / "TRAP-16bit.png"), np.float32)
    assert np.abs(sixteen - upright).mean() < 1  # 16 bits a channel brought down to 8, colours kept
    assert Image.open(out / "images" / "TRAP-cmyk.png").mode == "RGB"


def test_the_command_line_writes_the_folder(tmp_path):
    from training.prepare.cli import main

    images, labels = tmp_path / "images", tmp_path / "labels"
    toy_hair.write_khairstyle(images, labels, 3, seed=2)
    code = main(["hair", "--images", str(images), "--labels", str(labels), "--out", str(tmp_path / "out"),
                 "--profile", "tiny"])
    assert code == 0 and len((tmp_path / "out" / "metadata.jsonl").read_text().splitlines()) == 3


def test_the_datasets_tab_prepares_a_zip_of_images_and_labels(tmp_path, tiny_runtime):
    import zipfile
    from types import SimpleNamespace

    import gradio as gr

    from tabs import datasets
    from training.runs.launcher import RunManager

    toy_hair.write_khairstyle(tmp_path / "k", tmp_path / "k", 4, seed=3)  # labels beside their images
    archive = tmp_path / "khair.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted((tmp_path / "k").rglob("*.*")):
            z.write(path, f"khair/{path.relative_to(tmp_path / 'k')}")
    manager = RunManager(tmp_path / "runs", max_active=0, poll_seconds=None)
    prepare, _ = datasets.make_handlers(manager, tiny_runtime)
    with pytest.raises(gr.Error, match="I have the right to use these photos"):
        prepare("hair", None, str(archive))
    summary, report, gallery, captions, name = prepare("hair", None, str(archive), rights_confirmed=True,
                                                       request=SimpleNamespace(username="ann"))
    assert summary.startswith("**hair: kept 4, dropped 0") and captions == []
    assert len(gallery) == 8 and "hairstyle" in gallery[0][1] and gallery[1][1].endswith(": bald")
    assert (tmp_path / "uploads" / "ann" / "datasets" / name / "metadata.jsonl").is_file()
    manager.close()


def test_worker_processes_write_the_same_dataset_and_report(prepared, tmp_path, monkeypatch):
    from training.prepare import hair

    monkeypatch.setattr(hair, "MIN_IMAGES_PER_WORKER", 1)  # a pool even for these few images
    out, report, _ = prepared
    images, labels = out.parent / "images", out.parent / "labels"
    options = HairOptions(images=images, labels_dir=labels, out=tmp_path / "out", workers=2)
    parallel = prepare_hair(options, NoFaces(), make_faces=NoFaces)  # each worker loads its own face model
    assert [(n.file, n.kind) for n in parallel.dropped] == [(n.file, n.kind) for n in report.dropped]
    assert (tmp_path / "out" / "metadata.jsonl").read_text() == (out / "metadata.jsonl").read_text()
    for path in sorted(out.rglob("*.npy")) + sorted(out.glob("masks/*.png")):
        assert (tmp_path / "out" / path.relative_to(out)).read_bytes() == path.read_bytes(), path
