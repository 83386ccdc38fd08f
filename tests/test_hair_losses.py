"""Seed 000 stage 2 pieces: the 9-channel inpainting UNet and the mask-aware, identity and texture losses."""
from __future__ import annotations

import pytest
import torch

from pipelines.hair.inpaint import INPAINT_CHANNELS, masked_image, unet_input, widen_to_inpaint
from training.hair.losses import identity_loss, mask_aware_mse, texture_loss, x0_estimate


def small_unet(in_channels: int = 4):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(sample_size=8, in_channels=in_channels, out_channels=4, layers_per_block=1,
                                block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16,
                                attention_head_dim=(2, 4), norm_num_groups=8).eval()


def test_a_widened_unet_computes_what_it_did_until_it_learns_the_mask():
    unet = small_unet()
    latents, t, text = torch.randn(2, 4, 8, 8), torch.tensor([5, 500]), torch.randn(2, 3, 16)
    with torch.no_grad():
        before = unet(latents, t, encoder_hidden_states=text).sample
        widen_to_inpaint(unet)
        mask = (torch.rand(2, 1, 64, 64) > 0.5).float()
        after = unet(unet_input(latents, mask, torch.randn(2, 4, 8, 8)), t, encoder_hidden_states=text).sample
    assert unet.conv_in.in_channels == unet.config.in_channels == INPAINT_CHANNELS
    assert torch.allclose(before, after, atol=1e-6)
    with pytest.raises(ValueError, match="7 input channels"):
        widen_to_inpaint(small_unet(in_channels=7))


def test_the_masked_image_blanks_the_region_to_paint():
    image, mask = torch.ones(1, 3, 4, 4), torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1
    assert masked_image(image, mask)[..., :2, :].abs().sum() == 0 and masked_image(image, mask)[..., 2:, :].min() == 1


def test_mask_aware_mse_counts_only_the_hair_unless_told_otherwise():
    target, mask = torch.zeros(1, 4, 8, 8), torch.zeros(1, 1, 64, 64)
    mask[..., :32, :] = 1  # the top half is hair
    pred = torch.zeros(1, 4, 8, 8, requires_grad=True)
    wrong_outside = pred + torch.cat([torch.zeros(1, 4, 4, 8), torch.ones(1, 4, 4, 8)], dim=2)
    assert mask_aware_mse(wrong_outside, target, mask).item() == 0
    assert mask_aware_mse(wrong_outside, target, mask, outside_weight=1.0).item() == pytest.approx(0.5)
    wrong_inside = pred + torch.cat([torch.ones(1, 4, 4, 8), torch.zeros(1, 4, 4, 8)], dim=2)
    loss = mask_aware_mse(wrong_inside, target, mask)
    loss.sum().backward()
    assert loss.item() == pytest.approx(1.0) and pred.grad[..., 4:, :].abs().sum() == 0


def test_the_x0_estimate_inverts_the_noising():
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    x0, eps, t = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8), torch.tensor([10, 400, 900])
    noisy = sched.add_noise(x0, eps, t)
    assert torch.allclose(x0_estimate(noisy, eps, sched.alphas_cumprod[t]), x0, atol=1e-3)


def test_identity_loss_is_zero_for_the_same_face_and_reaches_only_the_face(tiny_runtime):
    face_id = tiny_runtime.model("face_id")
    original = torch.rand(1, 3, 64, 64) * 2 - 1
    generated = (original + 0.3 * torch.randn_like(original)).requires_grad_(True)
    box = [(16, 14, 48, 50)]
    assert identity_loss(face_id, original, original, box).item() == pytest.approx(0, abs=1e-5)
    loss = identity_loss(face_id, generated, original, box)
    loss.sum().backward()
    assert loss.item() > 0 and generated.grad[..., :, 56:].abs().sum() == 0


def test_texture_loss_looks_inside_the_mask_only(tiny_runtime):
    vgg = tiny_runtime.model("vgg16")
    torch.manual_seed(0)
    target, mask = torch.rand(1, 3, 64, 64) * 2 - 1, torch.zeros(1, 1, 64, 64)
    mask[..., :32, :] = 1
    outside_changed = target.clone()
    outside_changed[..., 40:, :] = -1
    feature, gram = texture_loss(vgg, outside_changed, target, mask)
    assert feature.item() < 1e-3 and gram.item() < 1e-3  # only the receptive fields at the edge see it
    inside_changed = target.clone()
    inside_changed[..., :24, :] = torch.rand(1, 3, 24, 64) * 2 - 1
    feature, gram = texture_loss(vgg, inside_changed, target, mask)
    assert feature.item() > 10 * 1e-3 and gram.item() > 0
