"""Hair try-on on toy portraits (a briefly trained model on the tiny profile's base): the face and background kept,
words or a reference photo taken, and one sentence for every bad request."""
from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from pipelines.hair import toy_hair
from pipelines.hair.service import HairTryOn, Request, TryOnError, prompt_for
from tests.conftest import prepared_toy_hair
from training.hair.cli import main


@pytest.fixture(scope="module")
def tryon(tiny_runtime, tmp_path_factory):
    root = tmp_path_factory.mktemp("hair-service")
    data = prepared_toy_hair(root, 12, seed=5)
    assert main(["inpaint", "--data", str(data), "--output", str(root / "run"), "--profile", "tiny",
                 "--set", "max_steps=2", "--set", "batch_size=2", "--set", "sample_steps=0"]) == 0
    return HairTryOn(tiny_runtime, root / "run" / "final" / "hair_model.safetensors")


def portraits(n, seed, **fixed):
    rng = random.Random(seed)
    return [toy_hair.random_portrait(rng, **fixed) for _ in range(n)]


def test_prompts_take_english_or_korean_and_name_a_value_the_model_does_not_know():
    assert prompt_for(Request(Image.new("RGB", (8, 8)), color="황갈색", curl="curly")) == \
        "golden brown curly hairstyle"
    assert prompt_for(Request(Image.new("RGB", (8, 8)), length="long", text="shiny")) == "long hairstyle, shiny"
    with pytest.raises(TryOnError, match="The color 'plaid' is not one the model knows; choose one of: black"):
        prompt_for(Request(Image.new("RGB", (8, 8)), color="plaid"))


def test_the_face_and_background_come_back_unchanged_and_the_mask_is_shown(tryon):
    for p in portraits(3, 40, color="블랙", curl="생머리"):
        original = toy_hair.render(p)
        result = tryon(Request(original, color="golden brown", curl="곱슬", steps=3, seed=1))
        mask = np.asarray(result.mask) > 0
        assert result.image.size == original.size and mask[toy_hair.hair_mask(p)].mean() > 0.8
        assert (np.asarray(result.image)[~mask] == np.asarray(original)[~mask]).all()
        assert (np.asarray(result.image)[mask] != np.asarray(original)[mask]).any()
        assert -1 <= result.identity <= 1 and result.prompt == "golden brown curly hairstyle"


def test_words_set_the_portraits_own_style_aside_and_a_length_change_keeps_it(tryon, monkeypatch):
    from pipelines.hair import service

    seen = []
    monkeypatch.setattr(service, "paint", lambda *args: seen.append(args[5]) or [args[1][0]])
    portrait = toy_hair.render(portraits(1, 44)[0])
    tryon(Request(portrait, color="black", steps=2))
    tryon(Request(portrait, length="long", steps=2))
    assert not seen[0].any() and seen[1].abs().sum() > 0  # zeros when words ask a colour; the own hair's otherwise


def test_a_reference_photo_and_a_users_mask_are_taken(tryon):
    p, ref = portraits(1, 41, color="블랙")[0], portraits(1, 42, color="핑크브라운")[0]
    mask = toy_hair.hair_mask(p)
    result = tryon(Request(toy_hair.render(p), reference=toy_hair.render(ref), mask=mask, steps=3))
    assert ((np.asarray(result.mask) > 0) == mask).all()


@pytest.mark.parametrize("request_, words", [
    (dict(portrait=Image.new("RGB", (64, 64), (40, 120, 200))), "No face was found"),
    (dict(mask=np.zeros((64, 64), bool)), "The hair mask is empty"),
    (dict(mask=np.ones((64, 64), bool)), "covers almost the whole image"),
    (dict(mask=np.ones((32, 48), bool)), "The mask is 48x32 pixels but the portrait is 64x64"),
    (dict(portrait="missing.png"), "The portrait image: missing.png"),
    (dict(reference=Image.new("RGB", (64, 64), (245, 245, 245))), "No hair was found in the reference"),
])
def test_bad_requests_are_one_sentence(tryon, request_, words):
    values = {"portrait": toy_hair.render(portraits(1, 43)[0]), **request_}
    with pytest.raises(TryOnError, match=words):
        tryon(Request(**values))
