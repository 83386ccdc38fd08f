"""DreamBooth on the toy model: a pink square (a colour the toy world never names) is learnt under the
identifier ``sks``, and prior preservation keeps other prompts as they were — all judged from pixels.

The instance prompt names the class as DreamBooth's do ("a photo of sks person" / "a photo of person"):
"a sks square on a white background" against the class prompt "a square on a white background". With
"a sks on a white background" the two prompts differ only in the subject word, so any prompt with another
word there ("a red circle …") reads as the subject: measured 0/8 red circles, with or without the prior.
"""
from __future__ import annotations

import pytest
import torch

from conftest import render_dataset
from pipelines import toy_world
from training.lora.cli import main

PALETTE = {**toy_world.COLORS, **toy_world.NEW_CONCEPT_COLORS}
SUBJECT = "a sks square on a white background"  # the dreambooth preset's [tiny] instance prompt
RED_CIRCLE = "a red circle on a white background"
SEEDS = 16
STRICT = 60  # RGB distance: a muddy mauve (180, 150, 150) is not pink (255, 105, 180)


def load_toy(lora_run=None):
    from diffusers import StableDiffusionPipeline

    from pipelines.models.registry import TOY_SD

    pipe = StableDiffusionPipeline.from_pretrained(TOY_SD, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    if lora_run:
        pipe.load_lora_weights(lora_run / "final", weight_name="pytorch_lora_weights.safetensors")
    return pipe


def count(pipe, prompt, color, shape, tolerance=None):
    images = pipe([prompt] * SEEDS, num_inference_steps=20, guidance_scale=2.5,  # the tiny profile's default CFG
                  generator=[torch.Generator().manual_seed(100 + i) for i in range(SEEDS)]).images
    return sum(toy_world.judge(image, PALETTE, tolerance).matches(color, shape, "white") for image in images)


def train(folder, prior: bool):
    """The dreambooth preset with its tiny-profile values; only prior preservation varies."""
    data = folder / "subject"
    if not data.exists():
        render_dataset(data, 10, color="pink", shape="square", background="white")
    run = folder / f"run-prior-{prior}"
    code = main(["--preset", "dreambooth", "--data", str(data), "--output", str(run), "--profile", "tiny",
                 "--set", f"with_prior_preservation={str(prior).lower()}", "--set", "sample_steps=0",
                 "--set", "checkpointing_steps=0"])
    assert code == 0, (run / "train.log").read_text()
    return run


@pytest.fixture(scope="module")
def base():
    return load_toy()


@pytest.fixture(scope="module")
def with_prior(tmp_path_factory):
    return train(tmp_path_factory.mktemp("dreambooth"), prior=True)


def test_dreambooth_learns_a_new_colour_and_prior_preservation_keeps_red_circles_red(with_prior, base):
    assert "generating 16 class images" in (with_prior / "train.log").read_text()
    tuned = load_toy(with_prior)
    # measured (16 seeds): base 0 pink, 16 red; tuned 5 pink (the rest the same mauve read as purple), 16 red
    assert count(base, SUBJECT, "pink", "square") <= 1  # the base model cannot draw pink at all
    assert count(tuned, SUBJECT, "pink", "square") >= 3
    assert count(base, RED_CIRCLE, "red", "circle") >= 14
    assert count(tuned, RED_CIRCLE, "red", "circle") >= 14


@pytest.mark.xfail(strict=True, reason="the toy VAE cannot draw pink: decode(encode(pink square)) is mauve "
                   "(172, 146, 157), so the learnt subject is nearest pink but 77-144 away from it (issue 14, point 5)")
def test_the_learnt_subject_is_pink_up_close(with_prior):
    assert count(load_toy(with_prior), SUBJECT, "pink", "square", tolerance=STRICT) >= 12


def test_without_prior_preservation_the_subject_leaks_into_other_prompts(tmp_path, base):
    tuned = load_toy(train(tmp_path, prior=False))  # measured: 11 pink; 0 red (the circles turn orange)
    assert count(tuned, SUBJECT, "pink", "square") >= 8
    assert count(tuned, RED_CIRCLE, "red", "circle") <= 4
