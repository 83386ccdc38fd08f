"""LoRA adapters on a Stable Diffusion UNet (and text encoder) with peft, and their export.

Export writes the two formats users load: the diffusers/PEFT folder (``save_lora_weights``) and one
kohya/A1111 ``.safetensors`` with metadata in its header.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers import StableDiffusionPipeline
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import save_file

from pipelines.generate.lora_files import DIFFUSERS_WEIGHTS, kohya_state
from training.lora.settings import LoraSettings


def add_adapters(pipe: StableDiffusionPipeline, s: LoraSettings) -> list[torch.nn.Parameter]:
    """Freeze the base model, add LoRA to the UNet (and text encoder); returns the trainable parameters."""
    for module in (pipe.unet, pipe.text_encoder, pipe.vae):
        module.requires_grad_(False)
    pipe.unet.add_adapter(LoraConfig(r=s.rank, lora_alpha=s.alpha, lora_dropout=s.dropout,
                                     init_lora_weights="gaussian", target_modules=list(s.target_modules)))
    if s.train_text_encoder:
        pipe.text_encoder.add_adapter(LoraConfig(r=s.text_encoder_rank, lora_alpha=s.text_encoder_alpha,
                                                 init_lora_weights="gaussian",
                                                 target_modules=list(s.text_encoder_target_modules)))
    return trainable(pipe.unet) + (trainable(pipe.text_encoder) if s.train_text_encoder else [])


def trainable(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


def lora_state(pipe: StableDiffusionPipeline, s: LoraSettings) -> dict[str, dict[str, torch.Tensor]]:
    """PEFT-format LoRA tensors per model, detached to fp32 on the CPU."""
    out = {"unet": get_peft_model_state_dict(pipe.unet)}
    if s.train_text_encoder:
        out["text_encoder"] = get_peft_model_state_dict(pipe.text_encoder)
    return {name: {k: v.detach().float().cpu().contiguous() for k, v in sd.items()} for name, sd in out.items()}


def load_lora_state(pipe: StableDiffusionPipeline, state: dict[str, dict[str, torch.Tensor]]) -> None:
    """Put saved LoRA tensors back into the adapters (used by resume)."""
    for name, sd in state.items():
        result = set_peft_model_state_dict(getattr(pipe, name), sd)
        if getattr(result, "unexpected_keys", None):
            raise ValueError(f"Checkpoint LoRA tensors do not match the {name}: {result.unexpected_keys[:3]}")


def export(pipe: StableDiffusionPipeline, s: LoraSettings, folder: Path, name: str,
           header: dict[str, Any]) -> tuple[Path, Path]:
    """Write the diffusers folder and the kohya file into ``folder``; returns both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    state = lora_state(pipe, s)
    text_encoder = state.get("text_encoder")
    # PEFT keys as they are: diffusers' older key format covers attention only, and a mix of both formats
    # loads without the attention LoRA (seed 001 also adapts proj_in/out and the resnet convs).
    StableDiffusionPipeline.save_lora_weights(
        folder, unet_lora_layers=state["unet"], text_encoder_lora_layers=text_encoder,
        unet_lora_adapter_metadata=_inference_config(pipe.unet),
        text_encoder_lora_adapter_metadata=_inference_config(pipe.text_encoder) if text_encoder else None,
        safe_serialization=True)
    kohya_path = folder / f"{name}.safetensors"
    save_file(kohya_state(state, s.alpha, s.text_encoder_alpha), kohya_path, metadata=kohya_metadata(s, header))
    return folder / DIFFUSERS_WEIGHTS, kohya_path


def _inference_config(model: torch.nn.Module) -> dict[str, Any]:
    """The adapter config to ship, without dropout: diffusers adds adapters in training mode, so a saved
    dropout would make every image generated with the LoRA random."""
    return {**model.peft_config["default"].to_dict(), "lora_dropout": 0.0}


def kohya_metadata(s: LoraSettings, header: dict[str, Any]) -> dict[str, str]:
    """The ``ss_*`` header fields kohya_ss writes and A1111/ComfyUI show, plus ours."""
    meta = {"ss_network_module": "networks.lora", "ss_network_dim": str(s.rank),
            "ss_network_alpha": str(s.alpha), "ss_base_model_version": "sd_v1",
            "modelspec.architecture": "stable-diffusion-v1/lora", "atelier_preset": s.preset,
            "atelier_trigger_word": s.trigger_word}
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in header.items()})
    return meta
