"""Duplicate detection: exact copies by MD5; JPEG re-encodes, 0.5-2x resizes and crops of up to 6 % by colour
layout, without merging different toy-world images (precision and recall both at least 0.95) or recoloured ones."""
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

    group = {key: repeats[key][0] if key in repeats else key for key in images}  # each image -> the one kept
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
    assert {k: v[0] for k, v in near_duplicates(prints).items()} == {"small": "big", "same": "big"}
    assert near_duplicates({"a": fingerprint(image), "b": fingerprint(image.copy())}, tolerance=0) == {"b": ("a", 0)}


def test_no_images_have_no_duplicates():
    assert near_duplicates({}) == {}


def crop(image: Image.Image, share: float, rng: random.Random) -> Image.Image:
    """``share`` of the width and of the height cut off, split at random between the two sides."""
    w, h = image.size
    left, top = rng.uniform(0, share), rng.uniform(0, share)
    return image.crop((round(w * left), round(h * top), w - round(w * (share - left)), h - round(h * (share - top))))


def test_a_six_percent_crop_is_a_duplicate_and_a_recolour_is_not(capsys):
    # Flat-coloured scenes are where hashes of brightness fail: a crop moves every edge, a recolour none.
    rng = random.Random(3)
    scenes = [toy_world.random_scene(rng, *triple) for triple in toy_world.all_prompts()[::2]]  # 27 scenes
    missed, merged, crops, recolours = [], [], 0, 0
    for i, scene in enumerate(scenes):
        original = toy_world.render(scene, 160)
        for j in range(4):
            copy = crop(original, 0.06, rng) if j else original.crop((10, 10, 160, 160))  # all of it off one corner
            crops += 1
            if not near_duplicates({"original": fingerprint(original), "crop": fingerprint(copy)}):
                missed.append((i, j))
        others = [(c, scene.background) for c in toy_world.COLORS if c != scene.color]
        others += [(scene.color, b) for b in toy_world.BACKGROUNDS if b != scene.background]
        for colour, background in others:
            other = toy_world.paint(scene, toy_world.COLORS[colour], toy_world.BACKGROUNDS[background], 160)
            recolours += 1
            if near_duplicates({"original": fingerprint(original), "recoloured": fingerprint(other)}):
                merged.append((i, colour, background))
    with capsys.disabled():
        print(f"\n6 % crops missed: {len(missed)} of {crops}; recolours merged: {len(merged)} of {recolours} "
              f"({len(scenes)} scenes)")
    assert not missed and not merged, (missed, merged)
