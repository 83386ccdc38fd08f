"""The tiny profile's hair inpainting base and default try-on model (assets/toy-hair), judged from pixels."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.hair import model as hair_model
from pipelines.models.registry import TOY_HAIR
from training.hair.toy import TRYON_FILE, judged_accuracy, tryon_accuracy


@pytest.fixture(scope="module")
def base():
    from diffusers import StableDiffusionXLInpaintPipeline

    pipe = StableDiffusionXLInpaintPipeline.from_pretrained(TOY_HAIR)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_the_shipped_toy_model_is_small_and_sdxl_shaped(base):
    size = sum(p.stat().st_size for p in TOY_HAIR.rglob("*") if p.is_file())
    assert size <= 30_000_000
    assert base.unet.config.in_channels == 9 and base.unet.config.addition_embed_type == "text_time"
    assert base.text_encoder_2 is not None and (TOY_HAIR / TRYON_FILE).is_file()


def test_our_text_conditioning_is_the_pipelines(base):
    from pipelines.hair.inpaint import encode_text

    prompts = ["long normal golden brown curly hairstyle", "short normal black straight hairstyle"]
    ids = [tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True,
               return_tensors="pt").input_ids for tok in (base.tokenizer, base.tokenizer_2)]
    ours = encode_text((base.text_encoder, base.text_encoder_2), ids)
    theirs = base.encode_prompt(prompts, do_classifier_free_guidance=False)
    assert torch.allclose(ours[0], theirs[0]) and torch.allclose(ours[1], theirs[2])


def test_the_base_paints_the_colour_and_texture_it_is_asked_for(base):
    """Held-out portraits, asked for another colour and another texture than their own (issue 16: >= 0.9 / 0.8)."""
    judged = judged_accuracy(base, count=32)
    assert judged["color"] >= 0.9 and judged["texture"] >= 0.8, judged


def test_the_try_on_model_takes_the_hair_of_a_reference_the_base_cannot(base):
    from diffusers import StableDiffusionXLInpaintPipeline

    without = tryon_accuracy(base, None, reference=True, count=32)
    pipe = StableDiffusionXLInpaintPipeline.from_pretrained(TOY_HAIR)
    pipe.set_progress_bar_config(disable=True)
    model = hair_model.load(TOY_HAIR / TRYON_FILE)
    hair_model.install(pipe, model)
    with_reference = tryon_accuracy(pipe, model, reference=True, count=32)
    assert with_reference["color"] >= 0.8 and with_reference["color"] >= without["color"] + 0.3, (with_reference,
                                                                                                  without)
    report = json.loads((TOY_HAIR / "training_report.json").read_text())
    assert report["tryon"]["reference"]["color"] >= 0.8


def test_the_recipe_writes_a_base_and_a_try_on_model_the_pipeline_loads(tmp_path):
    from diffusers import StableDiffusionXLInpaintPipeline

    from training.hair.cli import main

    out = tmp_path / "toy-hair"
    assert main(["toy", "--output", str(out), "--num-images", "64", "--vae-steps", "3", "--unet-steps", "3",
                 "--batch-size", "8", "--adapter-portraits", "24", "--adapter-steps", "2", "--judge-count", "4"]) == 0
    report = json.loads((out / "training_report.json").read_text())
    assert {"base_judged", "tryon", "vae_mse"} <= set(report)
    assert set(report["tryon"]["reference"]) == {"color", "texture", "identity_cosine_before_blending"}
    pipe = StableDiffusionXLInpaintPipeline.from_pretrained(out)
    hair_model.install(pipe, hair_model.load(out / TRYON_FILE))
    assert pipe.unet.config.encoder_hid_dim_type == "ip_image_proj"


def test_blending_keeps_every_pixel_outside_the_mask_and_paints_inside(base):
    from pipelines.hair import toy_hair
    from pipelines.hair.tryon import blend
    from training.hair.toy import inpainting_mask

    p = toy_hair.random_portrait(random.Random(3), color="블랙", curl="생머리")
    original, mask = toy_hair.render(p), inpainting_mask(p)
    painted = base(prompt="long normal golden brown curly hairstyle", image=original,
                   mask_image=Image.fromarray(mask.astype(np.uint8) * 255), height=64,
                   width=64, num_inference_steps=20, guidance_scale=4.0,
                   generator=torch.Generator().manual_seed(0)).images[0]
    out = np.asarray(blend(painted, original, mask))
    assert (np.asarray(painted)[~mask] != np.asarray(original)[~mask]).any()  # the pipeline alone changes the face
    assert (out[~mask] == np.asarray(original)[~mask]).all()
    assert toy_hair.judge(Image.fromarray(out), toy_hair.hair_mask(p)).color == "황갈색"
