"""Photo → anime model of seed 002: timm ViT encoder, AdaIN, transposed-convolution decoder.

Images enter as RGB in [0, 1] (B, 3, 224, 224); each network normalises for itself (the encoder with its
timm ``pretrained_cfg`` mean/std), and the decoder's Tanh output is an image in [-1, 1].
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

IMAGE_SIZE = 224  # ViT-B/16 geometry: 14 x 14 patch tokens
MODEL_FILE = "model.safetensors"  # a run's weights, in final/ and in each checkpoint folder
FULL_DECODER_WIDTHS = (512, 256, 128, 64)
TINY_DECODER_WIDTHS = (32, 16, 16, 8)
PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP and torch.compile wrappers
SKIPPED_PREFIXES = ("vgg_loss_net.",)  # the seed saved its frozen loss network inside the model


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message names the file and says why."""


def adain(content: torch.Tensor, style: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Adaptive instance normalisation: content features with the per-channel mean/std of the style features."""
    c_mean, c_std = _mean_std(content, eps)
    s_mean, s_std = _mean_std(style, eps)
    return (content - c_mean) / c_std * s_std + s_mean


def _mean_std(feat: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    flat = feat.flatten(2)
    return flat.mean(-1)[..., None, None], (flat.var(-1, unbiased=False) + eps).sqrt()[..., None, None]


class ViTEncoder(nn.Module):
    """Patch tokens of a timm ViT after the last block and final norm, as a (B, C, H/16, W/16) map."""

    def __init__(self, vit: nn.Module):
        super().__init__()
        self.vit = vit
        cfg = getattr(vit, "pretrained_cfg", {}) or {}
        self.register_buffer("mean", torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1),
                             persistent=False)

    @property
    def channels(self) -> int:
        return self.vit.embed_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        # timm drops the prefix (class/register) tokens and reshapes to NCHW itself: no magic indices here
        return self.vit.forward_intermediates(x, indices=1, norm=True, output_fmt="NCHW",
                                              intermediates_only=True)[-1]


class Decoder(nn.Module):
    """The seed's decoder: 4 x (ConvTranspose2d stride 2, InstanceNorm, ReLU), Conv2d 3x3 to RGB, Tanh."""

    def __init__(self, in_channels: int, widths: tuple[int, ...] = FULL_DECODER_WIDTHS):
        super().__init__()
        layers: list[nn.Module] = []
        for width in widths:
            layers += [nn.ConvTranspose2d(in_channels, width, 4, stride=2, padding=1),
                       nn.InstanceNorm2d(width), nn.ReLU(inplace=False)]  # inplace breaks autograd here
            in_channels = width
        layers += [nn.Conv2d(in_channels, 3, 3, stride=1, padding=1), nn.Tanh()]
        self.layers = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


class AnimeStyleModel(nn.Module):
    """Encoder → AdaIN (blended with the content features by ``alpha``) → decoder."""

    def __init__(self, vit: nn.Module, decoder_widths: tuple[int, ...] = FULL_DECODER_WIDTHS):
        super().__init__()
        self.vit_encoder = ViTEncoder(vit)
        self.decoder_widths = tuple(decoder_widths)
        self.decoder = Decoder(self.vit_encoder.channels, self.decoder_widths)

    def stylised_features(self, content: torch.Tensor, style: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        """alpha 0 = the content features unchanged, 1 = fully re-normalised to the style's statistics."""
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be between 0 and 1, not {alpha}.")
        fc = self.vit_encoder(content)
        if alpha == 0.0:
            return fc  # exactly the content features, not a numerically near copy
        fs = self.vit_encoder(style)
        return alpha * adain(fc, fs) + (1.0 - alpha) * fc

    def forward(self, content: torch.Tensor, style: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        check_batch(content, "content")
        check_batch(style, "style")
        return self.decoder(self.stylised_features(content, style, alpha))

    def config(self) -> dict:
        return {"embed_dim": self.vit_encoder.channels, "decoder_widths": list(self.decoder_widths)}


def check_batch(images: torch.Tensor, name: str) -> None:
    """Refuse a batch the encoder cannot take, in one sentence."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"The {name} batch must be (B, 3, H, W) RGB, not shape {tuple(images.shape)}; convert "
                         "grayscale or RGBA images to RGB first.")
    if images.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"The {name} batch must be {IMAGE_SIZE}x{IMAGE_SIZE} pixels, not "
                         f"{images.shape[-1]}x{images.shape[-2]}.")


# ---- checkpoints ----------------------------------------------------------------------------------------

def trainable_state(model: AnimeStyleModel, include_encoder: bool) -> dict[str, torch.Tensor]:
    """The weights a checkpoint holds: the decoder, plus the encoder when it was trained."""
    state = model.state_dict()
    keep = ("decoder.",) + (("vit_encoder.",) if include_encoder else ())
    return {k: v.detach().cpu().contiguous() for k, v in state.items() if k.startswith(keep)}


def save_checkpoint(model: nn.Module, path: Path, include_encoder: bool = False) -> Path:
    """Write the model's weights as safetensors (unwrapping DataParallel/DDP), renamed into place when complete."""
    from safetensors.torch import save_file

    inner = getattr(model, "module", model)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(trainable_state(inner, include_encoder), str(tmp), metadata={"config": json.dumps(inner.config())})
    tmp.replace(path)
    return path


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict without wrapper prefixes, config) from ``.safetensors`` or an old ``.pt``/``.pth`` state dict."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"The checkpoint {path} does not exist.")
    if path.suffix == ".safetensors":
        state, config = _read_safetensors(path)
    elif path.suffix in (".pt", ".pth"):
        state, config = _read_torch(path), {}
    else:
        raise CheckpointError(f"The checkpoint {path.name} is not a .safetensors, .pt or .pth file.")
    return strip_prefixes(state), config


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error types for damaged headers
        raise CheckpointError(f"The checkpoint {path.name} is not a readable safetensors file ({err}).") from None
    return state, json.loads(meta.get("config", "{}"))


def _read_torch(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)  # never unpickle arbitrary objects
    except Exception as err:
        raise CheckpointError(f"The checkpoint {path.name} is not a plain PyTorch state dict ({err}).") from None
    for key in ("state_dict", "model_state_dict", "model"):  # common wrappers around the state dict
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointError(f"The checkpoint {path.name} does not hold a state dict of tensors.")
    return obj


def strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove ``module.``/``_orig_mod.`` wrapper prefixes and the seed's saved loss network."""
    out = {}
    for key, value in state.items():
        while key.startswith(PREFIXES):
            key = key.split(".", 1)[1]
        if not key.startswith(SKIPPED_PREFIXES):
            out[key] = value
    return out


def decoder_widths_of(state: dict[str, torch.Tensor]) -> tuple[int, ...]:
    """The decoder widths a state dict was trained with, read from its transposed-convolution weights."""
    convs = sorted((k for k in state if k.startswith("decoder.") and k.endswith(".weight")
                    and state[k].ndim == 4), key=lambda k: int(k.split(".")[-2]))
    return tuple(int(state[k].shape[1]) for k in convs[:-1])  # ConvTranspose2d weights are (in, out, kh, kw)


def load_into(model: AnimeStyleModel, state: dict[str, torch.Tensor], name: str) -> AnimeStyleModel:
    """Load a checkpoint's decoder (and encoder, when it has one) into ``model``, or say what does not fit."""
    # only the last two key parts (layer index, weight/bias) are kept: the seed nested its Sequential differently
    decoder = {"layers." + ".".join(k.split(".")[-2:]): v for k, v in state.items() if k.startswith("decoder.")}
    encoder = {k.removeprefix("vit_encoder."): v for k, v in state.items() if k.startswith("vit_encoder.")}
    if not decoder:
        raise CheckpointError(f"The checkpoint {name} has no decoder weights (no 'decoder.' keys).")
    try:
        model.decoder.load_state_dict(decoder)
        if encoder:
            if not any(k.startswith("vit.") for k in encoder):  # the seed stored the timm model directly
                encoder = {f"vit.{k}": v for k, v in encoder.items()}
            result = model.vit_encoder.load_state_dict(encoder, strict=False)
            # the seed replaced the classifier head by Identity, so a missing head is expected; nothing else is
            missing = [k for k in result.missing_keys if not k.startswith("vit.head.")]
            if missing or result.unexpected_keys:
                raise RuntimeError(f"encoder keys differ\n missing {missing[:3]}, unexpected "
                                   f"{result.unexpected_keys[:3]}")
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
        raise CheckpointError(f"The checkpoint {name} does not fit this model ({first[:200]}); it was trained "
                              "with another encoder width or decoder.") from None
    return model
