"""The hair_segmenter role: the shipped tiny SegFormer finds toy hair; a model without a hair label is refused."""
from __future__ import annotations

import random

import pytest

from pipelines.hair import toy_hair
from pipelines.models import loaders, registry
from pipelines.models.loaders import ModelLoadError


@pytest.fixture(scope="module")
def segmenter():
    return loaders.load("hair_segmenter", registry.ROLES["hair_segmenter"].tiny)


def test_the_tiny_segmenter_finds_the_hair_of_held_out_portraits(segmenter):
    from training.hair.segmenter import iou

    score = iou(segmenter.model, segmenter.processor, random.Random(123_456), 60)
    print(f"tiny hair segmenter IoU on 60 held-out toy portraits: {score:.3f}")
    assert score >= 0.9


def test_the_mask_has_the_portraits_own_size(segmenter):
    portrait = toy_hair.render(toy_hair.random_portrait(random.Random(1))).resize((96, 80))
    assert segmenter.mask(portrait).shape == (80, 96)


def test_a_parser_without_a_hair_label_is_refused(tmp_path):
    from transformers import SegformerImageProcessor

    from training.hair.segmenter import tiny_model

    model = tiny_model()
    model.config.id2label = {0: "background", 1: "skin", 2: "hat"}
    model.save_pretrained(tmp_path, safe_serialization=True)
    SegformerImageProcessor().save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="no 'hair' label"):
        loaders.load("hair_segmenter", str(tmp_path))
