"""Duplicate detection: exact copies by MD5; JPEG re-encodes, 0.5-2x resizes and small crops by perceptual hash,
without merging different toy-world images (precision and recall both at least 0.95)."""
from __future__ import annotations

import io
import itertools
import random
import shutil

from PIL import Image

from pipelines import toy_world
from training.prepare.dedupe import exact_duplicates, fingerprint, near_duplicates

VARIANTS = ("jpeg", "smaller", "larger", "crop")


def variant(image: Image.Image, kind: str, rng: random.Random) -> Image.Image:
    """One way the same picture reaches a collection twice."""
    if kind == "jpeg":
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=rng.randint(50, 95))
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    if kind in ("smaller", "larger"):
        scale = rng.uniform(0.5, 0.95) if kind == "smaller" else rng.uniform(1.05, 2.0)
        return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    w, h = image.size  # crop: up to 3% off each side
    left, top, right, bottom = (rng.uniform(0, 0.03) for _ in range(4))
    return image.crop((round(w * left), round(h * top), w - round(w * right), h - round(h * bottom)))


def test_near_duplicates_precision_and_recall(capsys):
    # One original per (colour, shape, background) of the toy world: 54 different pictures. Two renders of the
    # same triple can be as alike as a crop of one, so that would measure the world, not the detector.
    rng = random.Random(0)
    originals = [toy_world.render(toy_world.random_scene(rng, *triple), 256) for triple in toy_world.all_prompts()]
    images = {}
    for i, original in enumerate(originals):
        images[(i, "original")] = original
        images.update({(i, kind): variant(original, kind, rng) for kind in VARIANTS})
    repeats = near_duplicates({key: fingerprint(im) for key, im in images.items()})

    group = {key: repeats.get(key, key) for key in images}  # each image -> the image kept for it
    pairs = list(itertools.combinations(images, 2))
    predicted = {(a, b) for a, b in pairs if group[a] == group[b]}
    actual = {(a, b) for a, b in pairs if a[0] == b[0]}
    precision = len(predicted & actual) / max(1, len(predicted))
    recall = len(predicted & actual) / len(actual)
    missed = sorted(key for key in images if group[key] != group[(key[0], "larger")])
    with capsys.disabled():  # shown with or without -s
        print(f"\nnear duplicates: precision {precision:.3f}, recall {recall:.3f} over {len(images)} images "
              f"({len(actual)} duplicate pairs)")
    assert precision >= 0.95 and recall >= 0.95, f"precision {precision:.3f} recall {recall:.3f}; not grouped {missed}"
    # the largest copy (the upscaled one) is the one kept
    assert sum(group[(i, "original")] == (i, "larger") for i in range(len(originals))) >= 0.95 * len(originals)


def test_exact_duplicates_keep_the_first_name(tmp_path):
    toy_world.render(toy_world.random_scene(random.Random(1))).save(tmp_path / "b.png")
    shutil.copy(tmp_path / "b.png", tmp_path / "a.png")
    shutil.copy(tmp_path / "b.png", tmp_path / "c.png")
    toy_world.render(toy_world.random_scene(random.Random(2))).save(tmp_path / "d.png")
    assert exact_duplicates(sorted(tmp_path.iterdir())) == {tmp_path / "b.png": tmp_path / "a.png",
                                                           tmp_path / "c.png": tmp_path / "a.png"}


def test_the_largest_of_a_group_is_kept_and_distance_zero_still_matches_identical_pictures():
    image = toy_world.render(toy_world.random_scene(random.Random(5)), 128)
    prints = {"small": fingerprint(image.resize((64, 64))), "big": fingerprint(image.resize((256, 256))),
              "same": fingerprint(image)}
    assert near_duplicates(prints, max_distance=6) == {"small": "big", "same": "big"}
    assert near_duplicates({"a": fingerprint(image), "b": fingerprint(image.copy())}, max_distance=0) == {"b": "a"}


def test_no_images_have_no_duplicates():
    assert near_duplicates({}) == {}
