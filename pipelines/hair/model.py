"""A trained hair try-on model (seed 000, stage 2): one ``.safetensors`` file holding the UNet's LoRA and the
identity and style IP-Adapters, with what it was trained on in its metadata.

Keys: ``unet_lora.<peft key>`` and ``<adapter>.image_proj.*`` / ``<adapter>.ip_adapter.*`` in the stock IP-Adapter
layout, so ``install`` puts it on any ``StableDiffusionXLInpaintPipeline`` of the same base with the library's own
loaders, and inference passes the embeddings as ``ip_adapter_image_embeds``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pipelines.hair import ip_adapters

KIND = "atelier-hair-tryon"
MODEL_FILE = "hair_model.safetensors"  # a run's final/ and a shared repo hold the model under this name
ADAPTERS = ("identity", "style")  # the order of ``ip_adapter_image_embeds``


def exported_dir() -> Path:
    """Where ``training.hair evaluate --export`` puts models for everyone on the server: $ATELIER_MODELS/hair."""
    return Path(os.environ.get("ATELIER_MODELS") or "models").expanduser().resolve() / "hair"


def read_metadata(path: Path) -> dict[str, str]:
    """A hair model file's metadata without reading its tensors; a HairModelError for anything else."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
    except (OSError, SafetensorError) as err:
        raise HairModelError(f"{Path(path).name} cannot be read as a hair model ({err}).") from None
    if metadata.get("kind") != KIND:
        raise HairModelError(f"{Path(path).name} is not a hair try-on model (made by training.hair inpaint).")
    return metadata


class HairModelError(ValueError):
    """The file is not a hair model this code can use; the message names it."""


@dataclass
class HairModel:
    adapters: dict[str, dict[str, dict[str, torch.Tensor]]]  # name -> stock IP-Adapter state
    lora: dict[str, torch.Tensor] = field(default_factory=dict)  # PEFT state of the UNet's LoRA
    unet: dict[str, torch.Tensor] = field(default_factory=dict)  # the whole UNet, when it was fine-tuned instead
    metadata: dict[str, str] = field(default_factory=dict)
    texture: dict[str, torch.Tensor] = field(default_factory=dict)  # stage-1 encoder, when it joins the style

    def texture_encoder(self):
        """The stage-1 texture encoder the style embedding includes, or None."""
        if not self.texture:
            return None
        from pipelines.hair.texture_model import from_state

        return from_state(self.texture, json.loads(self.metadata.get("texture_config", "{}")))

    @property
    def lora_config(self) -> dict:
        return json.loads(self.metadata.get("lora_config", "{}"))


def to_tensors(model: HairModel) -> dict[str, torch.Tensor]:
    """The model's tensors under the file's keys (fp32, on the CPU)."""
    tensors = {f"unet_lora.{k}": v for k, v in model.lora.items()}
    tensors.update({f"unet.{k}": v for k, v in model.unet.items()})
    tensors.update({f"texture.{k}": v for k, v in model.texture.items()})
    for name, state in model.adapters.items():
        for part, values in state.items():
            tensors.update({f"{name}.{part}.{k}": v for k, v in values.items()})
    return {k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}


def from_tensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> HairModel:
    lora = {k.removeprefix("unet_lora."): v for k, v in tensors.items() if k.startswith("unet_lora.")}
    texture = {k.removeprefix("texture."): v for k, v in tensors.items() if k.startswith("texture.")}
    unet = {k.removeprefix("unet."): v for k, v in tensors.items() if k.startswith("unet.")}
    adapters: dict[str, dict[str, dict[str, torch.Tensor]]] = {}
    for key, value in tensors.items():
        name, _, rest = key.partition(".")
        if name in ADAPTERS:
            part, _, inner = rest.partition(".")
            adapters.setdefault(name, {}).setdefault(part, {})[inner] = value
    return HairModel(adapters=adapters, lora=lora, unet=unet, metadata=dict(metadata or {}), texture=texture)


def save(path: Path, model: HairModel) -> None:
    """Write ``model`` as safetensors; metadata values must be strings."""
    from safetensors.torch import save_file

    save_file(to_tensors(model), str(path), metadata=file_metadata(model))


def file_metadata(model: HairModel) -> dict[str, str]:
    """The safetensors metadata of a hair model file (what ``load`` checks)."""
    return {"kind": KIND, **model.metadata}


def load(path: Path) -> HairModel:
    """Read a file written by ``save``; anything else is a HairModelError naming the file."""
    from safetensors.torch import load_file

    metadata = read_metadata(path)
    return from_tensors(load_file(str(path)), metadata)


def add_lora(unet, config: dict) -> None:
    """Give ``unet`` an (untrained) LoRA adapter as ``config`` describes (PEFT LoraConfig fields)."""
    from peft import LoraConfig

    unet.add_adapter(LoraConfig(**config))


def install(pipe, model: HairModel, scales: tuple[float, float] = (1.0, 1.0)) -> None:
    """Put the model's LoRA and adapters on ``pipe``'s UNet (in place); ``scales``: identity, style."""
    from peft.utils import set_peft_model_state_dict

    if model.unet:
        missing = set(model.unet) - set(pipe.unet.state_dict())
        if missing:
            raise HairModelError(f"The hair model's UNet does not fit this base ({sorted(missing)[0]} unknown); use "
                                 f"the base it was trained on ({model.metadata.get('base_model', 'unknown')}).")
        pipe.unet.load_state_dict(model.unet, strict=False)
    if model.lora:
        add_lora(pipe.unet, model.lora_config)
        set_peft_model_state_dict(pipe.unet, model.lora)
    ip_adapters.attach(pipe.unet, [model.adapters[name] for name in ADAPTERS], list(scales))
    pipe.unet.requires_grad_(False)


def adapter_embeds(identity: torch.Tensor, style: torch.Tensor, guidance: bool) -> list[torch.Tensor]:
    """``ip_adapter_image_embeds`` for the pipeline: per adapter B×1×D, with zeros first when CFG doubles the batch."""
    embeds = [identity[:, None], style[:, None]]
    return [torch.cat([torch.zeros_like(e), e]) if guidance else e for e in embeds]
