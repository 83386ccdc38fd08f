"""The 9-channel inpainting UNet of seed 000: noisy latent (4) + mask (1) + masked-image latent (4).

The layout is diffusers' SDXL inpainting pipeline's, so a trained model runs in the stock
``StableDiffusionXLInpaintPipeline``: the masked image is ``image × (mask < 0.5)`` and the mask is downsampled to
the latent grid.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

LATENT_CHANNELS = 4
INPAINT_CHANNELS = 2 * LATENT_CHANNELS + 1


def widen_to_inpaint(unet) -> None:
    """Give a 4-channel UNet the 9 input channels of inpainting, new input weights at zero, in place.

    With the mask and masked-image weights at zero the widened UNet computes exactly what it did, so any SDXL
    checkpoint can be the base and training starts from its behaviour (as the diffusers inpainting models did).
    """
    conv = unet.conv_in
    if conv.in_channels == INPAINT_CHANNELS:
        return
    if conv.in_channels != LATENT_CHANNELS:
        raise ValueError(f"The UNet takes {conv.in_channels} input channels; only 4 (text-to-image) or 9 "
                         "(inpainting) can be used.")
    wide = torch.nn.Conv2d(INPAINT_CHANNELS, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                           device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        wide.weight.zero_()
        wide.weight[:, :LATENT_CHANNELS] = conv.weight
        wide.bias.copy_(conv.bias)
    unet.conv_in = wide
    unet.register_to_config(in_channels=INPAINT_CHANNELS)


def masked_image(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The image with the region to paint blanked, as diffusers' inpainting pipelines make it (mask 1 = paint)."""
    return image * (mask < 0.5)


def unet_input(noisy_latents: torch.Tensor, mask: torch.Tensor, masked_latents: torch.Tensor) -> torch.Tensor:
    """The UNet's 9 channels, with ``mask`` (N×1×H×W at image size) downsampled to the latent grid."""
    small = F.interpolate(mask, size=noisy_latents.shape[-2:])
    return torch.cat([noisy_latents, small.to(noisy_latents.dtype), masked_latents], dim=1)


def encode_text(text_encoders, input_ids) -> tuple[torch.Tensor, torch.Tensor]:
    """(prompt embeddings, pooled embedding) as ``StableDiffusionXLInpaintPipeline.encode_prompt`` makes them.

    The penultimate hidden states of both CLIP encoders side by side, and the second one's pooled projection;
    ``input_ids`` holds one tensor per encoder.
    """
    hidden = []
    for encoder, ids in zip(text_encoders, input_ids):
        out = encoder(ids, output_hidden_states=True)
        hidden.append(out.hidden_states[-2])
    return torch.cat(hidden, dim=-1), out[0]


def time_ids(height: int, width: int, batch: int) -> torch.Tensor:
    """SDXL's size conditioning without aesthetics score: original size, crop top-left (0, 0), target size."""
    return torch.tensor([[height, width, 0, 0, height, width]], dtype=torch.float32).repeat(batch, 1)
