"""The toy world: the judge reads rendered ground truth, and the shipped toy model draws what it is told."""
from __future__ import annotations

import random

import pytest

from pipelines import toy_world


def test_judge_reads_rendered_ground_truth():
    rng = random.Random(123)
    scenes = [toy_world.random_scene(rng) for _ in range(600)]
    right = sum(toy_world.judge(toy_world.render(s)).matches(s.color, s.shape, s.background) for s in scenes)
    assert right / len(scenes) >= 0.99


def test_judge_knows_the_new_concept_colour_only_when_asked():
    scene = toy_world.random_scene(random.Random(0), color="pink", shape="square", background="white")
    image = toy_world.render(scene)
    assert toy_world.judge(image).color != "pink"
    palette = {**toy_world.COLORS, **toy_world.NEW_CONCEPT_COLORS}
    assert toy_world.judge(image, palette).matches("pink", "square", "white")


def test_judge_sees_no_shape_on_a_blank_image():
    from PIL import Image

    verdict = toy_world.judge(Image.new("RGB", (64, 64), toy_world.BACKGROUNDS["gray"]))
    assert verdict == toy_world.Verdict(None, None, "gray")


def test_renderer_is_deterministic_and_within_spec():
    a = toy_world.random_scene(random.Random(5))
    assert a == toy_world.random_scene(random.Random(5))
    assert 0.40 <= a.size <= 0.70 and abs(a.cx - 0.5) <= 0.12 and abs(a.cy - 0.5) <= 0.12
    assert toy_world.render(a).size == (64, 64)


@pytest.mark.parametrize("color, shape, background", [
    ("red", "square", "white"), ("blue", "circle", "gray"), ("yellow", "triangle", "black"),
    ("green", "circle", "white"), ("purple", "square", "black"), ("orange", "triangle", "gray"),
])
def test_toy_model_draws_what_it_is_asked_for(tiny_runtime, color, shape, background):
    from pipelines.generate.text_to_image import GenerateSettings, defaults_for, generate

    d = defaults_for(tiny_runtime.profile.name)
    settings = GenerateSettings(toy_world.caption(color, shape, background), d.negative_prompt, d.steps,
                                d.cfg, seed=0, width=64, height=64, num_images=3)
    images, _ = generate(tiny_runtime, settings)
    verdicts = [toy_world.judge(image) for image in images]
    assert sum(v.matches(color, shape, background) for v in verdicts) >= 2, verdicts
