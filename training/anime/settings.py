"""Settings of the photo → anime trainer, with seed 002's defaults; ``--set key=value`` overrides them."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from training.runs import settings as settings_io
from training.runs.cli import split_sets

STYLE_LOSSES = ("meanstd", "gram")
SCHEDULERS = ("none", "cosine", "step")


class AnimeSettingsError(ValueError):
    """A setting is unknown or has a bad value; the message names it."""


@dataclass(frozen=True)
class AnimeSettings:
    epochs: int = 50
    batch_size: int = 8
    learning_rate: float = 1e-4  # AdamW
    weight_decay: float = 0.01
    scheduler: str = "none"  # none | cosine | step (halves the rate every step_epochs)
    step_epochs: int = 10
    lambda_content: float = 3.0
    lambda_style: float = 1.0
    lambda_tv: float = 0.0  # total-variation loss; 0 = off as in the seed
    style_loss: str = "meanstd"  # meanstd (seed) | gram
    content_layer: int = 2  # index into vgg_layers: relu3_1, as in the seed
    vgg_layers: str = "1,6,11,20,29"  # VGG19 ``.features`` ReLU indices
    train_encoder: bool = False  # fine-tune the ViT too (the checkpoint then holds it)
    decoder_widths: str = ""  # "" = full (512,256,128,64) or tiny (32,16,16,8) by profile
    checkpoint_every: int = 5  # epochs
    val_fraction: float = 0.1  # of a flat folder, when there is no val/ split
    val_images: int = 4  # rows of the validation grid
    max_images: int = 0  # 0 = all; caps the training images (quick trials)
    num_workers: int = 0
    mixed_precision: str = "auto"  # auto | no | fp16 | bf16
    seed: int = 0

    def layer_indices(self) -> list[int]:
        return [int(i) for i in self.vgg_layers.split(",") if i.strip()]


def coerce(key: str, raw: Any) -> Any:
    """A ``--set`` string (or form value) as the setting's type, or a sentence naming the key."""
    return settings_io.coerce(AnimeSettings, key, raw, AnimeSettingsError)


def parse_sets(items: list[str]) -> dict[str, Any]:
    return {key: coerce(key, value.strip()) for key, value in split_sets(items, AnimeSettingsError)}


def resolve(overrides: dict[str, Any] | None = None) -> AnimeSettings:
    """Defaults, then the overrides, then a check of every value."""
    s = replace(AnimeSettings(), **{k: coerce(k, v) for k, v in (overrides or {}).items()})
    check(s)
    return s


def check(s: AnimeSettings) -> None:
    if s.style_loss not in STYLE_LOSSES:
        raise AnimeSettingsError(f"style_loss must be one of {', '.join(STYLE_LOSSES)}, not {s.style_loss!r}.")
    if s.scheduler not in SCHEDULERS:
        raise AnimeSettingsError(f"scheduler must be one of {', '.join(SCHEDULERS)}, not {s.scheduler!r}.")
    for key in ("epochs", "batch_size", "checkpoint_every", "step_epochs", "val_images"):
        if getattr(s, key) < 1:
            raise AnimeSettingsError(f"{key} must be at least 1, not {getattr(s, key)}.")
    if s.learning_rate <= 0:
        raise AnimeSettingsError(f"learning_rate must be positive, not {s.learning_rate}.")
    try:
        layers = s.layer_indices()
    except ValueError:
        raise AnimeSettingsError(f"vgg_layers must be comma-separated integers, not {s.vgg_layers!r}.") from None
    if not layers or not 0 <= s.content_layer < len(layers):
        raise AnimeSettingsError(f"content_layer {s.content_layer} must index vgg_layers ({s.vgg_layers}).")
    if s.decoder_widths and not all(w.strip().isdigit() for w in s.decoder_widths.split(",")):
        raise AnimeSettingsError(f"decoder_widths must be 4 comma-separated integers, not {s.decoder_widths!r}.")


def to_dict(s: AnimeSettings) -> dict[str, Any]:
    return asdict(s)


def field_names() -> list[str]:
    return [f.name for f in fields(AnimeSettings)]
