"""The style adapter's image encoder (seed 000, stage 2): what a reference hair looks like, as one vector.

The channel means and standard deviations inside the hair mask of the colours themselves and of VGG16 features
(relu1_2, relu2_2, relu3_3 of the ``vgg16`` role): the statistics that style transfer has used since Gatys et al.
and AdaIN, which hold a hair's colour and texture and not its shape or where it is. The colour level is there
because a hair's colour is most of what a try-on asks for, and an untrained network (the tiny profile's VGG16) keeps
little more than its brightness.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.nn import functional as F

VGG16_RELUS = (3, 8, 15)  # ``features`` indices of relu1_2, relu2_2, relu3_3
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def vgg_input(image: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] normalised as VGG was trained."""
    mean = torch.tensor(IMAGENET_MEAN, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
    return ((image + 1) / 2 - mean) / std


def vgg_features(vgg, image: torch.Tensor, relus: Sequence[int] = VGG16_RELUS) -> Iterator[tuple[int, torch.Tensor]]:
    """(layer index, activation) at each of ``relus``, for an image in [-1, 1]; stops after the last one."""
    x, last = vgg_input(image), max(relus)
    for index, layer in enumerate(vgg):
        x = layer(x)
        if index in relus:
            yield index, x
        if index == last:
            return


def style_dim(vgg, texture=None) -> int:
    """The length of ``style_embedding``'s vectors for this VGG (and texture encoder)."""
    probe = torch.zeros(1, 3, 16, 16, device=next(vgg.parameters()).device)
    return style_embedding(vgg, probe, torch.ones(1, 1, 16, 16, device=probe.device), texture).shape[1]


@torch.no_grad()
def style_embedding(vgg, image: torch.Tensor, mask: torch.Tensor, texture=None) -> torch.Tensor:
    """N×D: for the colours and per VGG level, the channels' mean and standard deviation inside ``mask``
    (N×1×H×W, 1 = hair), then the stage-1 texture encoder's embedding of the hair when ``texture`` is given.

    ``image`` N×3×H×W in [-1, 1].
    """
    stats = []
    for x in [vgg_input(image), *(x for _, x in vgg_features(vgg, image))]:
        weight = F.interpolate(mask.float(), size=x.shape[-2:], mode="area")
        area = weight.sum(dim=(2, 3)).clamp(min=1e-6)
        mean = (x * weight).sum(dim=(2, 3)) / area
        var = ((x - mean[..., None, None]) ** 2 * weight).sum(dim=(2, 3)) / area
        stats += [mean, var.clamp(min=0).sqrt()]
    if texture is not None:
        stats.append(texture.embed_masked(image.to(next(texture.parameters()).device), mask))
    return torch.cat(stats, dim=1).float()
