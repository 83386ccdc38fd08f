"""Settings of the hair trainers (seed 000): dataclasses, defaults in TOML beside this file, ``--set`` overrides."""
from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class HairToySettings:
    """``python -m training.hair toy``: the tiny inpainting base (training/hair/toy.py)."""
    seed: int = 0
    num_images: int = 4_000
    vae_steps: int = 800
    vae_batch_size: int = 32
    vae_lr: float = 2e-3
    unet_steps: int = 2_000
    batch_size: int = 32
    max_lr: float = 6e-4
    caption_dropout: float = 0.1
    outside_weight: float = 0.25  # of the noise error outside the mask (inside counts 1)
    text_max_length: int = 24
    bf16_autocast: bool = True
    decoder_steps: int = 300  # the VAE decoder alone, after the UNet (its latents unchanged)
    decoder_lr: float = 5e-4
    hair_weight: float = 4.0  # how much a hair pixel counts in the decoder's error
    adapter_portraits: int = 400  # toy K-Hairstyle set stage 2 trains the default hair model on
    adapter_steps: int = 1_500  # 0: the base only, no default hair model (a first leg to go on from with base_from)
    judge_count: int = 48  # held-out try-ons the report's accuracies are judged on
    judge_guidance: float = 7.5  # their classifier-free guidance (the inpainting pipeline's default)
    base_from: str = ""  # an earlier toy base folder to go on training (its VAE kept) instead of starting afresh
    output: str = "assets/toy-hair"


@dataclass(frozen=True)
class InpaintSettings:
    """Stage 2 (``python -m training.hair inpaint``); seed 000's values in inpaint.toml, its [tiny] table for toys."""
    max_steps: int = 2_000
    batch_size: int = 1
    gradient_accumulation_steps: int = 4
    learning_rate: float = 1e-4  # the UNet's LoRA
    adapter_learning_rate: float = 1e-4  # the adapters' projections and key/value layers
    lr_scheduler: str = "constant"  # constant, cosine or cosine_with_restarts (diffusers' get_scheduler)
    lr_warmup_steps: int = 0
    rank: int = 32
    alpha: int = 32
    target_modules: list[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])
    full_unet: bool = False  # fine-tune every UNet weight instead of a LoRA (large GPUs; the file holds the UNet)
    resolution: int = 0  # 0 = the base model's native size (1024 for SDXL)
    mixed_precision: str = "auto"  # auto (fp16 on CUDA), no, fp16 or bf16
    gradient_checkpointing: bool = True
    use_8bit_adam: bool = True  # CUDA only
    outside_weight: float = 0.0  # MaskAwareLoss: the error outside the hair mask (seed 000: 0)
    identity_weight: float = 0.1  # IdentityCosineLoss
    texture_weight: float = 0.05  # TextureConsistencyLoss: VGG16 features inside the mask
    gram_weight: float = 0.05  # TextureConsistencyLoss: Gram matrices inside the mask
    low_noise_timestep: int = 400  # identity and texture losses on samples noised less than this
    caption_dropout: float = 0.05  # a dropped prompt is the zero embedding, as the pipeline's empty prompt
    adapter_dropout: float = 0.05  # each adapter's embedding dropped (zeroed) on its own
    # Each hair attribute left out of a prompt on its own (not in seed 000): a try-on that names only some of them
    # (a reference photo gives the rest) then asks what training showed.
    attribute_dropout: float = 0.0
    val_fraction: float = 0.1
    validation_steps: int = 250
    sample_steps: int = 250
    sample_images: int = 4
    sample_inference_steps: int = 30
    sample_guidance_scale: float = 5.0
    checkpointing_steps: int = 500
    checkpoints_total_limit: int = 3
    log_every: int = 10
    seed: int = 0


def inpaint_settings(overrides: dict[str, Any] | None = None, profile: str = "full") -> InpaintSettings:
    """inpaint.toml (and its table for ``profile``) over the defaults, then ``overrides``, every value checked."""
    s = from_toml(InpaintSettings, HERE / "inpaint.toml", overrides or {}, HairSettingsError, profile)
    for key in ("max_steps", "batch_size", "gradient_accumulation_steps", "rank", "alpha", "log_every",
                "sample_images", "sample_inference_steps"):
        if getattr(s, key) < 1:
            raise HairSettingsError(f"Setting {key} must be at least 1, not {getattr(s, key)}.")
    for key in ("validation_steps", "sample_steps", "checkpointing_steps", "checkpoints_total_limit", "resolution",
                "lr_warmup_steps", "low_noise_timestep", "outside_weight", "identity_weight", "texture_weight",
                "gram_weight"):
        if not getattr(s, key) >= 0:
            raise HairSettingsError(f"Setting {key} must be 0 or more, not {getattr(s, key)}.")
    if not (s.learning_rate > 0 and s.adapter_learning_rate > 0):
        raise HairSettingsError("Settings learning_rate and adapter_learning_rate must be positive.")
    for key in ("caption_dropout", "adapter_dropout", "attribute_dropout", "val_fraction"):
        if not 0 <= getattr(s, key) < 1:
            raise HairSettingsError(f"Setting {key} must be from 0 to below 1, not {getattr(s, key)}.")
    if s.mixed_precision not in ("auto", "no", "fp16", "bf16"):
        raise HairSettingsError(f"Setting mixed_precision must be auto, no, fp16 or bf16, not {s.mixed_precision!r}.")
    return s


@dataclass(frozen=True)
class Gate:
    """Seed 000's export gate: a model ships when the face stays (identity) and the hair looks right (LPIPS)."""
    min_identity: float = 0.90  # seed 000
    max_lpips: float = 0.20

    def passes(self, metrics: dict[str, float]) -> bool:
        return metrics["identity"] > self.min_identity and metrics["lpips"] < self.max_lpips


@dataclass(frozen=True)
class EvalOptions:
    """``python -m training.hair evaluate``: how the held-out portraits are painted."""
    steps: int = 30
    guidance: float = 5.0
    batch_size: int = 8
    limit: int = 0  # 0 = every usable portrait
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

