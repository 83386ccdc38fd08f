"""Hair try-on data (seed 000): the toy hair world and its judge, the vocabulary, the K-Hairstyle reader."""
from __future__ import annotations

import json
import random
import re
from pathlib import PurePosixPath

import numpy as np
import pytest

from pipelines.hair import toy_hair
from pipelines.hair.vocabulary import load
from training.prepare.khairstyle import (LabelError, check_hair_area, hair_mask, pair_files, polygon_rings,
                                         read_label)

HANGUL = re.compile(r"[\uac00-\ud7a3\u3131-\u318e]")


def test_the_judge_reads_every_colour_and_texture_back():
    rng = random.Random(3)
    for color in toy_hair.COLORS:
        for curl in toy_hair.CURLS:
            for _ in range(4):
                p = toy_hair.random_portrait(rng, color=color, curl=curl)
                verdict = toy_hair.judge(toy_hair.render(p), toy_hair.hair_mask(p))
                assert verdict.matches(color, curl), (p, verdict)


def test_portraits_follow_the_world_and_other_hair_keeps_the_face():
    rng = random.Random(4)
    p = toy_hair.random_portrait(rng, length="여숏")
    image = np.asarray(toy_hair.render(p))
    face = toy_hair.face_mask(p)
    skin = np.asarray(toy_hair.SKINS[p.skin])
    assert (np.abs(image[face] - skin).sum(1) < 3).mean() > 0.9  # the face is drawn over the hair
    bottoms = [np.nonzero(toy_hair.hair_mask(p.with_hair(length=n)).any(1))[0].max()
               for n in ("여숏", "단발", "장발")]
    assert bottoms[0] < bottoms[1] < bottoms[2] == 63
    other = p.with_hair(color="핑크브라운", curl="곱슬", length="장발")
    changed = toy_hair.hair_mask(p) | toy_hair.hair_mask(other)
    assert np.array_equal(image[~changed], np.asarray(toy_hair.render(other))[~changed])


def test_the_label_polygon_redraws_the_hair_mask():
    rng = random.Random(5)
    for _ in range(10):
        p = toy_hair.random_portrait(rng)
        label = toy_hair.label(p, "A-001.jpg")
        assert isinstance(label["polygon1"], str)
        drawn = hair_mask(polygon_rings(label), (64, 64)) > 0
        truth = toy_hair.hair_mask(p)
        assert (drawn & truth).sum() / (drawn | truth).sum() > 0.9  # IoU: long hair's hole (the face) stays out
        assert not (drawn & toy_hair.face_mask(p)).sum() > 0.05 * toy_hair.face_mask(p).sum()


def test_prompts_are_english_and_unknown_words_are_reported():
    vocab = load()
    for attribute, words in vocab.words.items():
        for korean in words:
            prompt, untranslated = vocab.prompt({attribute: korean})
            assert not HANGUL.search(prompt) and not untranslated, (attribute, korean, prompt)
    prompt, untranslated = vocab.prompt({"length": "장발", "hair-width": "굵음", "color": "핑크브라운", "curl": "곱슬",
                                         "basestyle": "허쉬", "bang": "풀뱅"})
    assert prompt == "long thick pink brown curly hush cut hairstyle, with full bangs" and not untranslated
    prompt, untranslated = vocab.prompt({"color": "무지개색", "curl": "곱슬", "bang": "없음", "basestyle": "기타"})
    assert prompt == "curly hairstyle" and untranslated == [("color", "무지개색")]
    assert vocab.english("color", "pink brown") == "pink brown"  # English input is taken as it is
    for korean, (english, _) in toy_hair.COLORS.items():  # the toy world's words are all known
        assert vocab.english("color", korean) == english
    for korean, english in {**toy_hair.CURLS, **toy_hair.LENGTHS}.items():
        assert vocab.english("curl" if korean in toy_hair.CURLS else "length", korean) == english


def test_images_pair_with_labels_by_either_name_convention():
    images = [PurePosixPath(p) for p in ("a/CP1-001.jpg", "a/CP1-002.jpg", "b/CP2-001.jpg", "c/lonely.jpg")]
    labels = [PurePosixPath(p) for p in ("a/CP1_001.json", "a/CP1-002.json", "x/y/CP2_001.json", "a/orphan.json")]
    pairing = pair_files(images, labels)
    assert [(str(i), str(label)) for i, label in pairing.pairs] == [
        ("a/CP1-001.jpg", "a/CP1_001.json"), ("a/CP1-002.jpg", "a/CP1-002.json"), ("b/CP2-001.jpg", "x/y/CP2_001.json")]
    assert [str(p) for p in pairing.images_without_label] == ["c/lonely.jpg"]
    assert [str(p) for p in pairing.labels_without_image] == ["a/orphan.json"]


@pytest.mark.parametrize("content, reason", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "not a JSON object"),
    (json.dumps({"color": "블랙"}), "has no polygon1"),
    (json.dumps({"polygon1": "[[{\"x\": 1"}), "malformed polygon1 (not JSON)"),
    (json.dumps({"polygon1": [[{"x": 1}]]}), "malformed polygon1"),
    (json.dumps({"polygon1": "[]"}), "empty polygon1"),
])
def test_bad_labels_say_why(tmp_path, content, reason):
    path = tmp_path / "A_001.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(LabelError, match=re.escape(reason)):
        polygon_rings(read_label(path))


def test_polygons_as_lists_or_strings_and_tiny_ones_refused():
    ring = [{"x": 10, "y": 10}, {"x": 50, "y": 10}, {"x": 50, "y": 40}, {"x": 10, "y": 40}]
    as_list = hair_mask(polygon_rings({"polygon1": ring}), (64, 64))
    as_string = hair_mask(polygon_rings({"polygon1": json.dumps([ring])}), (64, 64))
    assert np.array_equal(as_list, as_string) and (as_list > 0).sum() > 1000
    grown = hair_mask(polygon_rings({"polygon1": [ring]}), (64, 64), dilate=3)
    assert (grown > 0).sum() > (as_list > 0).sum()
    check_hair_area(as_list)
    speck = [{"x": 5, "y": 5}, {"x": 6, "y": 5}, {"x": 6, "y": 6}]
    with pytest.raises(LabelError, match="too small"):
        check_hair_area(hair_mask(polygon_rings({"polygon1": [speck]}), (64, 64)))
