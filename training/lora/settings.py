"""Settings of the LoRA trainer: one dataclass, defaults from the seeds, presets in ``training/lora/presets/*.toml``.

A preset overrides the defaults, its table for the live profile (``[tiny]``: values the toy model can show in
minutes) overrides the preset, and ``--set key=value`` overrides both. The resolved settings are what a run writes
to its ``config.toml``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from training.runs import settings as settings_io
from training.runs.cli import split_sets

PRESETS_DIR = Path(__file__).resolve().parent / "presets"
UNET_ATTENTION = ["to_k", "to_q", "to_v", "to_out.0"]
TEXT_ENCODER_ATTENTION = ["q_proj", "k_proj", "v_proj", "out_proj"]


class SettingsError(ValueError):
    """A preset or --set value is wrong; the message names the key."""


@dataclass
class LoraSettings:
    # what to train
    preset: str = "fashion"
    base_model: str = "sd15"  # a registry role, resolved through the live profile
    resolution: int = 0  # 0: the base model's native size (512 for SD 1.5, 64 for the toy model)
    trigger_word: str = ""
    # LoRA (seed 001: rank 12, alpha 24, dropout 0.1 on attention, projections and resnet convs)
    rank: int = 12
    alpha: float = 24.0
    dropout: float = 0.1
    target_modules: list[str] = field(default_factory=lambda: [*UNET_ATTENTION, "proj_in", "proj_out",
                                                                 "conv1", "conv2"])
    train_text_encoder: bool = False
    text_encoder_rank: int = 8
    text_encoder_alpha: float = 8.0
    text_encoder_lr: float = 5e-6
    text_encoder_target_modules: list[str] = field(default_factory=lambda: list(TEXT_ENCODER_ATTENTION))
    # optimisation
    max_steps: int = 2000
    batch_size: int = 1
    gradient_accumulation_steps: int = 4
    # Images per UNet forward. Accumulation saves memory, not results: one forward of 4 images costs far less than
    # four of 1 for the same update. 0 = auto: the whole update (batch_size x accumulation, class images included)
    # in one forward, halved on a CUDA out-of-memory error and the step retried.
    micro_batch_size: int = 0
    learning_rate: float = 1e-4
    lr_scheduler: str = "cosine_with_restarts"  # constant | cosine | cosine_with_restarts
    lr_restart_period: int = 500  # steps per cosine cycle (CosineAnnealingWarmRestarts' T_0)
    lr_warmup_steps: int = 100
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    weight_decay: float = 1e-2
    adam_epsilon: float = 1e-8
    use_8bit_adam: bool = True  # bitsandbytes on CUDA; falls back to AdamW with a note elsewhere
    max_grad_norm: float = 1.0
    mixed_precision: str = "auto"  # auto (fp16 on CUDA) | no | fp16 | bf16
    gradient_checkpointing: bool = False
    # torch.compile the UNet. Off: on the toy CPU a step got ~1.3x faster, but the first compile took minutes and
    # validation, sampling or a smaller micro-batch each compile again (bench/RESULTS.md, 2026-11-29).
    compile_unet: bool = False
    snr_gamma: float = 0.0  # 0 = plain MSE; 5.0 is the min-SNR paper's value
    noise_offset: float = 0.0
    seed: int = 42
    # data
    cache_latents: bool = True
    cache_text_embeddings: bool = True  # only when the text encoder is frozen
    val_fraction: float = 0.0  # fashion: 0.08
    latent_noise: float = 0.0  # std of Gaussian noise added to cached latents (fashion augmentation)
    hflip: float = 0.0  # probability of a horizontal flip
    random_crop_scale: float = 1.0  # < 1: random crop of at least this fraction, resized back
    caption_quality_terms: list[str] = field(default_factory=list)
    caption_augment_probability: float = 0.0
    # dreambooth
    instance_prompt: str = "a photo of sks person"
    class_prompt: str = "a photo of person"
    with_prior_preservation: bool = False
    prior_loss_weight: float = 1.0
    num_class_images: int = 200
    class_data_dir: str = ""  # default: <cache>/class-images/<base model>/<class prompt>
    crop_face: bool = False
    # bookkeeping
    validation_steps: int = 500
    early_stopping_patience: int = 10
    early_stopping_min_delta: float = 1e-4
    checkpointing_steps: int = 500
    checkpoints_total_limit: int = 3
    sample_steps: int = 500
    validation_prompts: list[str] = field(default_factory=list)
    sample_inference_steps: int = 25
    sample_guidance_scale: float = 0.0  # samples and class images; 0 = the Generate tab's default (7.5, tiny 2.5)
    log_every: int = 10


def field_types() -> dict[str, Any]:
    return get_type_hints(LoraSettings)


def coerce(key: str, raw: Any) -> Any:
    """Convert a TOML value or a ``--set`` string to the field's type, or say what was expected."""
    return settings_io.coerce(LoraSettings, key, raw, SettingsError)


def preset_path(name: str) -> Path:
    path = PRESETS_DIR / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.toml")))
        raise SettingsError(f"Unknown preset {name!r}; choose one of: {known}.")
    return path


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``key=value`` strings into typed overrides."""
    return {key: coerce(key, value) for key, value in split_sets(items, SettingsError)}


def resolve_settings(preset: str, overrides: dict[str, Any] | None = None, profile: str = "full") -> LoraSettings:
    """Defaults, then the preset, then the preset's table for ``profile``, then the overrides."""
    values = {**(overrides or {}), "preset": preset}
    return check(settings_io.from_toml(LoraSettings, preset_path(preset), values, SettingsError, profile))


# Counts that must be positive, and step counts where 0 has a meaning (never, no warm-up, keep all, native size).
_AT_LEAST_ONE = ("max_steps", "batch_size", "gradient_accumulation_steps", "rank", "log_every",
                 "sample_inference_steps")
_NOT_NEGATIVE = ("validation_steps", "checkpointing_steps", "sample_steps", "lr_warmup_steps",
                 "checkpoints_total_limit", "resolution", "micro_batch_size")


def check(s: LoraSettings) -> LoraSettings:
    """``s`` unchanged, or a SettingsError naming the first value no run can use."""
    for key in _AT_LEAST_ONE:
        if getattr(s, key) < 1:
            raise SettingsError(f"Setting {key} must be at least 1, not {getattr(s, key)}.")
    for key in _NOT_NEGATIVE:
        if getattr(s, key) < 0:
            raise SettingsError(f"Setting {key} must be 0 or more, not {getattr(s, key)}.")
    if not s.learning_rate > 0:  # also refuses NaN
        raise SettingsError(f"Setting learning_rate must be positive, not {s.learning_rate}.")
    return s


def to_dict(s: LoraSettings) -> dict[str, Any]:
    return dataclasses.asdict(s)


def from_dict(values: dict[str, Any]) -> LoraSettings:
    names = {f.name for f in fields(LoraSettings)}
    return LoraSettings(**{k: coerce(k, v) for k, v in values.items() if k in names})
