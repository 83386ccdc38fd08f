"""Painting hair with a trained hair model on the stock ``StableDiffusionXLInpaintPipeline`` (seed 000)."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from pipelines.hair.model import adapter_embeds


def paint(pipe, images: list[Image.Image], masks: list[Image.Image], prompts: list[str], identity: torch.Tensor,
          style: torch.Tensor, steps: int, guidance: float, seed: int, size: int) -> list[Image.Image]:
    """One result per portrait: the masked region (white = paint) repainted as the prompt and adapters ask.

    ``pipe`` carries a model from ``pipelines.hair.model.install``; ``identity`` and ``style`` are B×D embeddings;
    portrait ``i`` is painted with seed ``seed + i``.
    """
    unet = pipe.unet
    results = []
    # One portrait per call: the pipeline repeats ip_adapter_image_embeds for every prompt of a batch (it expects
    # one reference per call), so in a batch each portrait would attend to every portrait's identity and style.
    for i, (image, mask, prompt) in enumerate(zip(images, masks, prompts)):
        embeds = adapter_embeds(identity[i:i + 1], style[i:i + 1], guidance > 1)
        results += pipe(prompt=prompt, image=image, mask_image=mask, height=size, width=size,
                        num_inference_steps=steps, guidance_scale=guidance,
                        ip_adapter_image_embeds=[e.to(unet.device, unet.dtype) for e in embeds],
                        generator=torch.Generator().manual_seed(seed + i)).images
    return results


def to_pil(x: torch.Tensor) -> Image.Image:
    """A C×H×W tensor in [-1, 1] (C = 3, or 1 for a mask) as an image."""
    array = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


def comparison_grid(pixels: torch.Tensor, masks: torch.Tensor, results: list[Image.Image]) -> Image.Image:
    """Portrait | mask | result, a row per portrait (``pixels`` N×3×H×W in [-1, 1], ``masks`` N×1×H×W in [0, 1])."""
    rows = [np.concatenate([np.asarray(to_pil(x)), np.asarray(to_pil(m * 2 - 1).convert("RGB")),
                            np.asarray(r.convert("RGB"))], axis=1) for x, m, r in zip(pixels, masks, results)]
    return Image.fromarray(np.concatenate(rows, axis=0))


def blend(result: Image.Image, original: Image.Image, mask: np.ndarray, feather: float = 1.0) -> Image.Image:
    """``result`` inside the hair mask, ``original`` everywhere else: the face and background come back unchanged.

    The mask's edge is softened inward only (a Gaussian of ``feather`` pixels, kept inside the mask), so every
    pixel outside the mask is exactly the original's. ``mask``: H×W booleans or 0–255 at the images' size.
    """
    import cv2

    inside = (np.asarray(mask) > 0).astype(np.float32)
    weight = cv2.GaussianBlur(inside, (0, 0), feather) * inside if feather > 0 else inside
    weight = weight[..., None]
    made = np.asarray(result.convert("RGB").resize(original.size), np.float32)
    mixed = made * weight + np.asarray(original.convert("RGB"), np.float32) * (1 - weight)
    return Image.fromarray(mixed.round().clip(0, 255).astype(np.uint8))
