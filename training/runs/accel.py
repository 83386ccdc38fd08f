"""What every accelerate-based trainer shares: the accelerator, mixed precision, the optimizer class, RNG state."""
from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)
FUSED_ADAMW_DEVICES = ("cpu", "cuda")  # one fused kernel for all the trained tensors, not a Python loop over them


def make_accelerator(output: Path, mixed_precision: str, tracker: str = "tensorboard"):
    """An Accelerator that logs to ``output/tensorboard``; ``mixed_precision`` as in the settings ("auto" too)."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    project = ProjectConfiguration(project_dir=str(output), logging_dir=str(Path(output) / "tensorboard"))
    # cpu=True lets accelerate see a torchrun/MPI launch without GPUs as multi-CPU (gloo) training
    return Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=resolve_precision(mixed_precision),
                       log_with=tracker, project_config=project)


def resolve_precision(setting: str) -> str:
    """"auto" is fp16 on CUDA and full precision elsewhere; other values pass through."""
    if setting != "auto":
        return setting
    return "fp16" if torch.cuda.is_available() else "no"


def weight_dtype(accelerator) -> torch.dtype:
    """The dtype the frozen base model is held in under the accelerator's mixed precision."""
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)


def optimizer_class(use_8bit_adam: bool, device: torch.device):
    """bitsandbytes' 8-bit AdamW on CUDA when asked and installed, else torch's AdamW (fused where it can be)."""
    if use_8bit_adam and torch.cuda.is_available():
        try:
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit
        except ImportError:
            log.warning("8-bit Adam needs bitsandbytes, which is not installed; using torch AdamW.")
    elif use_8bit_adam:
        log.info("8-bit Adam runs on CUDA only; using torch AdamW on %s.", device)
    return functools.partial(torch.optim.AdamW, fused=device.type in FUSED_ADAMW_DEVICES)


def rng_state() -> dict[str, torch.Tensor]:
    """The global RNG states that dropout draws from."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():  # a CUDA run's checkpoint may resume on a CPU
        torch.cuda.set_rng_state(state["cuda"])


def rank_weight_difference(accelerator, params: list) -> float:
    """Largest difference of any trained tensor's sum between this rank and rank 0 (0.0 when in sync).

    A collective: every rank must call it.
    """
    sums = torch.stack([p.detach().float().sum() for p in params]).to(accelerator.device)
    gathered = accelerator.gather(sums[None])
    return (gathered - gathered[0]).abs().max().item()
