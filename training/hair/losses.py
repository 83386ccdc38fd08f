"""The losses of seed 000's stage 2, each per sample so that they can be weighted, masked and logged apart.

- ``mask_aware_mse``: the noise-prediction error counted inside the hair mask only (outside weight configurable).
- ``identity_loss``: 1 − cosine between the face identity vectors of the generated and the original face region
  (the ``face_id`` role), at low-noise timesteps where the x0 estimate is a face.
- ``texture_loss``: VGG16 feature and Gram distances inside the mask between the x0 estimate and the truth.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from pipelines.face_id import identity_cosine
from pipelines.hair.style import VGG16_RELUS, vgg_features


def mask_aware_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                   outside_weight: float = 0.0) -> torch.Tensor:
    """Per-sample MSE weighted 1 inside ``mask`` (N×1×h×w, any size) and ``outside_weight`` outside it."""
    small = F.interpolate(mask.float(), size=pred.shape[-2:], mode="area")
    weight = small + outside_weight * (1 - small)
    error = (pred.float() - target.float()) ** 2 * weight
    return error.sum(dim=(1, 2, 3)) / (weight.sum(dim=(1, 2, 3)) * pred.shape[1]).clamp(min=1e-8)


def x0_estimate(noisy: torch.Tensor, eps: torch.Tensor, alphas_cumprod_t: torch.Tensor) -> torch.Tensor:
    """The clean latent implied by an epsilon prediction: (x_t − √(1−ᾱ) ε̂) / √ᾱ."""
    a = alphas_cumprod_t.view(-1, 1, 1, 1).to(noisy.dtype)
    return (noisy - (1 - a).sqrt() * eps) / a.sqrt()


def identity_loss(face_id, generated: torch.Tensor, original: torch.Tensor,
                  face_boxes: Sequence[Sequence[float]]) -> torch.Tensor:
    """Per-sample 1 − cosine of the face identities; images in [-1, 1], boxes (x0, y0, x1, y1) in pixels."""
    return 1 - identity_cosine(face_id, generated, original.detach(), face_boxes)


def _gram(features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    flat = (features * weight).flatten(2)
    return flat @ flat.transpose(1, 2) / weight.flatten(2).sum(-1, keepdim=True).clamp(min=1.0)


def texture_loss(vgg, generated: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                 relus: Sequence[int] = VGG16_RELUS) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (feature, Gram) distances inside ``mask`` at VGG16's relu1_2, relu2_2 and relu3_3.

    ``vgg`` is the ``vgg16`` role's ``features``; images in [-1, 1], mask N×1×H×W (1 = hair).
    """
    feature = gram = torch.zeros(len(generated), device=generated.device)
    for (_, x), (_, y) in zip(vgg_features(vgg, generated, relus), vgg_features(vgg, target.detach(), relus)):
        weight = F.interpolate(mask.float(), size=x.shape[-2:], mode="area")
        area = weight.sum(dim=(1, 2, 3)).clamp(min=1e-8) * x.shape[1]
        feature = feature + ((x - y) ** 2 * weight).sum(dim=(1, 2, 3)) / area
        gram = gram + ((_gram(x, weight) - _gram(y, weight)) ** 2).mean(dim=(1, 2))
    return feature, gram
