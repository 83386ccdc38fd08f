"""One set of image checks for every use case: fashion, Ghibli and DreamBooth give a file the same verdict, under
the same name and in the same order, and every threshold a message cites is a field of the Datasets form."""
from __future__ import annotations

import json
import random
import re
import shutil
from types import SimpleNamespace

import gradio as gr
import pytest
from PIL import Image

from pipelines import toy_world
from tabs import datasets
from tests.prepare_images import blurry, distinct_photos, photo, save, truncated, with_text
from training.prepare.checks import CHECKS
from training.prepare.fashion import FashionOptions, prepare_fashion
from training.prepare.ghibli import GhibliOptions, prepare_ghibli
from training.prepare.portraits import PortraitOptions, prepare_dreambooth
from training.runs.launcher import RunManager

# What the checks must say about the files of the ``mixed`` folder, whatever they are prepared for; a file that
# fails several checks is named by the first in CHECKS order (a small blurry image is "too small").
EXPECTED = {"3.png": "exact duplicate", "broken.jpg": "unreadable", "cut.jpg": "exact duplicate",
            "tiny.png": "too small", "wide.png": "aspect ratio", "blur.png": "blurry", "0-crop.png": "near duplicate"}
KEPT = {"0.png", "1.png", "2.png", "3-copy.png", "4.png", "5.png", "flat.png", "poster.png"}


class OneFace:
    def detect(self, image):
        return [(image.width // 3, image.height // 3, image.width // 3, image.height // 3)]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Six different photos, a hard-edged flat toy picture and a poster with text (all usable), plus one file for
    each check to drop, every one captioned in metadata.jsonl."""
    folder = tmp_path_factory.mktemp("mixed")
    for i, image in enumerate(distinct_photos(6)):
        save(image, folder / f"{i}.png")
    save(toy_world.render(toy_world.random_scene(random.Random(1), "green", "triangle", "gray"), 320),
         folder / "flat.png")  # no noise, few edges: the kind of picture an edge-blind blur measure calls blurry
    save(with_text(photo(9, color="blue", shape="circle", background="white")), folder / "poster.png")
    shutil.copy(folder / "3.png", folder / "3-copy.png")
    save(blurry(2, (100, 100)), folder / "tiny.png")
    save(blurry(7, (900, 300)), folder / "wide.png")
    save(blurry(8), folder / "blur.png")
    Image.open(folder / "0.png").crop((10, 0, 310, 301)).save(folder / "0-crop.png")  # 6 % off, one side
    truncated(folder / "broken.jpg")
    shutil.copy(folder / "broken.jpg", folder / "cut.jpg")
    names = sorted(p.name for p in folder.iterdir())
    (folder / "metadata.jsonl").write_text("".join(json.dumps({"file_name": n, "text": f"a test picture, {n}"}) + "\n"
                                                   for n in names))
    return folder


def checked(report) -> tuple[dict[str, str], set[str], set[str]]:
    """(file -> the shared check that dropped it, files warned about text, kept sources)."""
    return ({n.file: n.kind for n in report.dropped if n.kind in CHECKS},
            {n.file for n in report.warnings if n.kind == "text"}, set(report.kept.values()))


def test_every_use_case_runs_the_same_checks_in_the_same_order(mixed, tmp_path):
    reports = {
        "fashion": prepare_fashion(FashionOptions(images=mixed, out=tmp_path / "fashion")),
        "ghibli": prepare_ghibli(GhibliOptions(images=mixed, out=tmp_path / "ghibli", size=64)),
        "dreambooth": prepare_dreambooth(PortraitOptions(images=mixed, out=tmp_path / "dreambooth", size=64),
                                         OneFace()),
    }
    for use_case, report in reports.items():
        assert checked(report) == (EXPECTED, {"poster.png"}, KEPT), use_case
    notes = {use_case: {n.file: n.message for n in r.dropped} for use_case, r in reports.items()}
    assert notes["fashion"] == notes["ghibli"] == notes["dreambooth"]  # word for word


def form_labels(manager, runtime) -> set[str]:
    with gr.Blocks() as demo:
        datasets.build(manager, runtime)
    return {block.label for block in demo.blocks.values() if getattr(block, "label", None)}


def test_every_threshold_a_message_cites_is_a_field_of_the_form(mixed, tmp_path, tiny_runtime):
    manager = RunManager(tmp_path / "runs", max_active=0, poll_seconds=None)
    labels = form_labels(manager, tiny_runtime)
    prepare, _ = datasets.make_handlers(manager, tiny_runtime)
    files = [str(p) for p in mixed.iterdir()]
    threshold = {"too small": "min_size", "aspect ratio": "max_aspect", "blurry": "min_sharpness",
                 "near duplicate": "duplicate_tolerance"}
    for use_case in ("fashion", "ghibli", "dreambooth"):
        # the seed's 256 px minimum (the tiny profile's form starts at 64, which this set's small file passes)
        summary, report, *_ = prepare(use_case, files, size=64, min_size=256, rights_confirmed=True,
                                      request=SimpleNamespace(username="checker"))
        messages = {row[0]: row[2] for row in report if row[1] == "dropped"}
        for file, kind in EXPECTED.items():
            if kind in threshold:
                assert f"“{datasets.LABELS[threshold[kind]]}”" in messages[file], (use_case, messages[file])
        for message in messages.values():
            assert "--" not in message and str(tmp_path) not in message
            for cited in re.findall(r"“([^”]+)”", message):
                assert cited in labels, (use_case, cited)
    manager.close()
