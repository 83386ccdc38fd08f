"""``python -m training.toy`` on a few steps: it writes a loadable pipeline, and its decoder stage run alone
changes the decoder only, so the latents the UNet learnt keep their meaning."""
from __future__ import annotations

import json

import torch
from diffusers import StableDiffusionPipeline

from training.toy.recipe import ToySettings, train, tune_saved_decoder, tune_saved_guidance

QUICK = dict(num_images=64, vae_steps=3, vae_batch_size=8, unet_steps=3, batch_size=8, open_color_images=16,
             decoder_steps=3, guidance_steps=3)


def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_quick_recipe_saves_a_pipeline_and_the_decoder_stage_touches_only_the_decoder(tmp_path):
    first = train(ToySettings(**QUICK, output=str(tmp_path / "toy")))
    report = json.loads((first / "training_report.json").read_text())
    assert set(report["decoder_stage"]) >= {"palette_mse", "open_mse", "new_concept_judged_after"}
    before = StableDiffusionPipeline.from_pretrained(first, safety_checker=None, requires_safety_checker=False)
    image = before("a red circle on a white background", num_inference_steps=2, output_type="np").images[0]
    assert image.shape == (64, 64, 3)

    second = tune_saved_decoder(first, ToySettings(**QUICK, output=str(tmp_path / "tuned")))
    after = StableDiffusionPipeline.from_pretrained(second, safety_checker=None, requires_safety_checker=False)
    for name in ("unet", "text_encoder"):
        old, new = weights(getattr(before, name)), weights(getattr(after, name))
        assert all(torch.equal(old[k], new[k]) for k in old), name
    old, new = weights(before.vae), weights(after.vae)
    assert all(torch.equal(old[k], new[k]) for k in old if k.startswith(("encoder.", "quant_conv.")))
    assert not all(torch.equal(old[k], new[k]) for k in old if k.startswith("decoder."))
    assert json.loads((second / "training_report.json").read_text())["decoder_stage_settings"]["decoder_steps"] == 3


def test_the_guidance_stage_alone_touches_only_the_unet_and_text_encoder(tmp_path):
    first = train(ToySettings(**QUICK, output=str(tmp_path / "toy")))
    second = tune_saved_guidance(first, ToySettings(**QUICK, output=str(tmp_path / "guided")))
    before, after = (StableDiffusionPipeline.from_pretrained(p, safety_checker=None, requires_safety_checker=False)
                     for p in (first, second))
    old, new = weights(before.vae), weights(after.vae)
    assert all(torch.equal(old[k], new[k]) for k in old)
    for name in ("unet", "text_encoder"):
        old, new = weights(getattr(before, name)), weights(getattr(after, name))
        assert not all(torch.equal(old[k], new[k]) for k in old), name
    assert "final_loss" in json.loads((second / "training_report.json").read_text())["guidance_stage"]
