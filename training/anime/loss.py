"""Losses of the photo → anime trainer: VGG19 content and style (mean/std or Gram) losses, total variation."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGGFeatures(nn.Module):
    """Activations of a frozen VGG ``.features`` at the given ReLU indices, for [0, 1] RGB input."""

    def __init__(self, features: nn.Sequential, indices: list[int]):
        super().__init__()
        if max(indices) >= len(features) or not all(isinstance(features[i], nn.ReLU) for i in indices):
            raise ValueError(f"VGG layer indices {indices} must all be ReLU layers of the {len(features)}-layer net.")
        self.features = features[:max(indices) + 1].eval()
        self.features.requires_grad_(False)
        self.indices = set(indices)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):
        return super().train(False)  # the loss network stays in eval mode

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x, out = (images - self.mean) / self.std, []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.indices:
                out.append(x)
        return out


def mean_std(feat: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    flat = feat.flatten(2)
    return flat.mean(-1), (flat.var(-1, unbiased=False) + eps).sqrt()


def gram(feat: torch.Tensor) -> torch.Tensor:
    """Channel correlations normalised by the number of elements, so layers weigh alike."""
    b, c, h, w = feat.shape
    flat = feat.flatten(2)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def style_loss(generated: list[torch.Tensor], style: list[torch.Tensor], kind: str = "meanstd") -> torch.Tensor:
    total = generated[0].new_zeros(())
    for g, s in zip(generated, style):
        if kind == "gram":
            total = total + F.mse_loss(gram(g), gram(s))
        else:
            (gm, gs), (sm, ss) = mean_std(g), mean_std(s)
            total = total + F.mse_loss(gm, sm) + F.mse_loss(gs, ss)
    return total


def tv_loss(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels: penalises speckle."""
    return (images[..., 1:, :] - images[..., :-1, :]).abs().mean() + \
        (images[..., :, 1:] - images[..., :, :-1]).abs().mean()


def losses(vgg: VGGFeatures, generated: torch.Tensor, content: torch.Tensor, style: torch.Tensor,
           s) -> dict[str, torch.Tensor]:
    """content, style, tv and the weighted total; ``generated`` is the decoder's [-1, 1] output."""
    image = (generated + 1) / 2
    feats = vgg(image)
    with torch.no_grad():
        content_feats, style_feats = vgg(content), vgg(style)
    out = {"content": F.mse_loss(feats[s.content_layer], content_feats[s.content_layer]),
           "style": style_loss(feats, style_feats, s.style_loss),
           "tv": tv_loss(image) if s.lambda_tv > 0 else image.new_zeros(())}
    out["total"] = s.lambda_content * out["content"] + s.lambda_style * out["style"] + s.lambda_tv * out["tv"]
    return out
