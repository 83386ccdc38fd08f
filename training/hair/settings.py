"""Settings of the hair trainers (seed 000): dataclasses, defaults in TOML beside this file, ``--set`` overrides."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.runs.cli import split_sets
from training.runs.settings import from_toml

HERE = Path(__file__).resolve().parent


class HairSettingsError(ValueError):
    """A hair setting is unknown or has a bad value; the message names it."""


@dataclass(frozen=True)
class TextureSettings:
    steps: int = 300
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    temperature: float = 0.07  # SupConLoss (seed 000)
    supcon_weight: float = 1.0
    reconstruction_weight: float = 1.0
    label: str = "curl"  # the attribute whose values pull patches together
    width: int = 32  # encoder channels
    embedding: int = 64
    patch_px: int = 0  # 0 = the prepared patches' size (rounded down to a multiple of 4)
    val_fraction: float = 0.2  # of the images (never their patches): held out for the probe
    knn_k: int = 5
    checkpointing_steps: int = 100
    checkpoints_total_limit: int = 3
    log_every: int = 10
    seed: int = 0


@dataclass(frozen=True)
class SegmenterSettings:
    steps: int = 500
    batch_size: int = 16
    learning_rate: float = 2e-3
    eval_portraits: int = 200
    seed: int = 0


def parse_sets(items: list[str]) -> dict[str, Any]:
    return {key: value for key, value in split_sets(items, HairSettingsError)}


def texture_settings(overrides: dict[str, Any] | None = None) -> TextureSettings:
    """texture.toml over the defaults, then ``overrides``, every value checked."""
    s = from_toml(TextureSettings, HERE / "texture.toml", overrides or {}, HairSettingsError)
    for key in ("steps", "batch_size", "width", "embedding", "knn_k", "log_every", "checkpoints_total_limit"):
        if getattr(s, key) < 1:
            raise HairSettingsError(f"Setting {key} must be at least 1, not {getattr(s, key)}.")
    if not (s.learning_rate > 0 and s.temperature > 0):
        raise HairSettingsError("Settings learning_rate and temperature must be positive.")
    if not 0 < s.val_fraction < 1:
        raise HairSettingsError(f"Setting val_fraction must be between 0 and 1, not {s.val_fraction}.")
    if s.checkpointing_steps < 0 or s.patch_px < 0:
        raise HairSettingsError("Settings checkpointing_steps and patch_px must be 0 or more.")
    return s

