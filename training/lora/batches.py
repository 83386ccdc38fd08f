"""Deterministic batches and augmentation for the LoRA trainer.

Which examples a step sees, and every random choice made for them, depends only on the seed and the position
(step, micro-batch, rank) — so a resumed run sees exactly what an uninterrupted one would have.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

from training.lora.settings import LoraSettings


def generator(*parts: int) -> torch.Generator:
    """A CPU generator seeded from integers (seed, step, micro, rank, …)."""
    seed = 0
    for part in parts:
        seed = (seed * 1_000_003 + int(part)) % (2**63 - 1)
    return torch.Generator().manual_seed(seed)


@dataclass(frozen=True)
class Batches:
    n: int  # number of examples
    batch_size: int  # per process
    accumulation: int
    world: int
    seed: int

    @lru_cache(maxsize=4)
    def _epoch_order(self, epoch: int) -> tuple[int, ...]:
        return tuple(torch.randperm(self.n, generator=generator(self.seed, 7, epoch)).tolist())

    def indices(self, step: int, micro: int, rank: int) -> list[int]:
        """Example indices of this rank's micro-batch; consecutive micro-batches walk through epochs."""
        per_update = self.batch_size * self.world
        start = ((step * self.accumulation + micro) * per_update) + rank * self.batch_size
        return [self._epoch_order(i // self.n)[i % self.n] for i in range(start, start + self.batch_size)]


@dataclass
class Noised:
    """Noised latents ready for the UNet, one row per image, with each image's share of the update's loss."""
    noisy: torch.Tensor
    timesteps: torch.Tensor
    target: torch.Tensor
    captions: list[str]
    weights: torch.Tensor

    def __len__(self) -> int:
        return len(self.captions)

    def rows(self, part: slice) -> Noised:
        return Noised(self.noisy[part], self.timesteps[part], self.target[part], self.captions[part],
                      self.weights[part])

    @staticmethod
    def cat(parts: list[Noised]) -> Noised:
        return Noised(*(torch.cat([getattr(p, name) for p in parts]) for name in ("noisy", "timesteps", "target")),
                      [c for p in parts for c in p.captions], torch.cat([p.weights for p in parts]))


def micro_batches(n: int, size: int) -> list[slice]:
    """Rows 0..n in consecutive slices of at most ``size``."""
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def augment_latents(latents: torch.Tensor, s: LoraSettings, gen: torch.Generator) -> torch.Tensor:
    """Seed 001's latent augmentation: a random crop-and-resize, a horizontal flip, a little noise."""
    out = []
    for latent in latents:
        if s.random_crop_scale < 1.0:
            latent = _random_crop_resize(latent, s.random_crop_scale, gen)
        if s.hflip and torch.rand(1, generator=gen).item() < s.hflip:
            latent = latent.flip(-1)
        if s.latent_noise:
            latent = latent + s.latent_noise * torch.randn(latent.shape, generator=gen)
        out.append(latent)
    return torch.stack(out)


def _random_crop_resize(latent: torch.Tensor, min_scale: float, gen: torch.Generator) -> torch.Tensor:
    _, h, w = latent.shape
    scale = min_scale + (1 - min_scale) * torch.rand(1, generator=gen).item()
    ch, cw = max(1, round(h * scale)), max(1, round(w * scale))
    top = int(torch.randint(h - ch + 1, (1,), generator=gen))
    left = int(torch.randint(w - cw + 1, (1,), generator=gen))
    crop = latent[:, top:top + ch, left:left + cw]
    return F.interpolate(crop[None], size=(h, w), mode="bilinear", align_corners=False)[0]


def augment_caption(caption: str, s: LoraSettings, gen: torch.Generator) -> str:
    """Seed 001's caption augmentation: sometimes append a few quality terms."""
    terms = s.caption_quality_terms
    if not terms or torch.rand(1, generator=gen).item() >= s.caption_augment_probability:
        return caption
    count = int(torch.randint(1, min(3, len(terms)) + 1, (1,), generator=gen))
    picked = [terms[i] for i in torch.randperm(len(terms), generator=gen)[:count].tolist()]
    return ", ".join([caption, *picked])


def with_trigger(caption: str, trigger: str) -> str:
    """Make sure the trigger word is in the caption (appended when missing)."""
    return caption if not trigger or trigger.lower() in caption.lower() else f"{caption} {trigger}".strip()
