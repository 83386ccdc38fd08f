"""Seed 000's texture encoder: a small convolutional autoencoder over hair patches whose pooled, normalised
embedding groups patches by texture (trained with SupConLoss in ``training/hair/texture.py``)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

MODEL_FILE = "texture.safetensors"


class TextureAutoencoder(nn.Module):
    """Encoder (two stride-2 convolutions and one more) → feature map → embedding; decoder back to pixels."""

    def __init__(self, width: int = 32, embedding: int = 64):
        super().__init__()
        self.width, self.embedding_size = width, embedding
        self.encoder = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1), nn.GELU())
        # mean and standard deviation of the features: texture statistics, position-free (Gram-like)
        self.project = nn.Linear(8 * width, embedding)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(4 * width, 2 * width, 4, stride=2, padding=1), nn.GELU(),
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(width, 3, 3, padding=1), nn.Tanh())

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """Unit-length texture embeddings of patches in [-1, 1] (N×3×H×W, H and W divisible by 4)."""
        return self._embed(self.encoder(pixels))

    def embed_masked(self, pixels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Unit-length texture embeddings of the hair inside ``mask`` (N×1×H×W, 1 = hair) of whole images."""
        features = self.encoder(pixels)
        weight = F.interpolate(mask.float(), size=features.shape[-2:], mode="area")
        area = weight.sum((2, 3)).clamp(min=1e-6)
        mean = (features * weight).sum((2, 3)) / area
        std = (((features - mean[..., None, None]) ** 2 * weight).sum((2, 3)) / area).clamp(min=0).sqrt()
        return F.normalize(self.project(torch.cat([mean, std], dim=1)), dim=1)

    def _embed(self, features: torch.Tensor) -> torch.Tensor:
        stats = torch.cat([features.mean((2, 3)), features.std((2, 3))], dim=1)
        return F.normalize(self.project(stats), dim=1)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction, embedding)."""
        features = self.encoder(pixels)
        return self.decoder(features), self._embed(features)


def save(model: TextureAutoencoder, path: Path, metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    meta = {"width": str(model.width), "embedding": str(model.embedding_size), **(metadata or {})}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata=meta)


def load(path: Path, device: str = "cpu") -> TextureAutoencoder:
    """A saved texture encoder (safetensors only: nothing is unpickled)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    return from_state(load_file(str(path), device=device), meta).to(device)


def from_state(state: dict[str, torch.Tensor], meta: dict[str, str]) -> TextureAutoencoder:
    """A texture encoder from its tensors and the ``width`` / ``embedding`` metadata ``save`` writes."""
    model = TextureAutoencoder(int(meta.get("width", 32)), int(meta.get("embedding", 64)))
    model.load_state_dict(state)
    return model.eval()
