"""Choose the live profile (``tiny`` or ``full``) and say why, without importing torch when there is no GPU."""
from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pipelines.models.registry import PROFILES, ROLES, RegistryError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProfileChoice:
    name: str  # "tiny" or "full"
    reason: str
    device: str  # "cuda" or "cpu"
    half: bool  # fp16 weights on the GPU

    @property
    def banner(self) -> str:
        return f"{self.name}: {self.reason}"


def cuda_device_name() -> str | None:
    """The first CUDA GPU's name, or None; torch is imported only when a driver is visible."""
    if not (Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi")):
        return None
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def hub_reachable(timeout: float = 3.0) -> bool:
    """True when the Hugging Face Hub answers (and offline mode is off)."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    import httpx
    from huggingface_hub import constants

    try:
        return httpx.head(constants.ENDPOINT, timeout=timeout).status_code < 500
    except httpx.HTTPError:
        return False


def base_weights_cached() -> bool:
    """True when the sd15 role's weights are already in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(ROLES["sd15"].full, "model_index.json"), str)


def choose_profile(requested: str, gpu_name: Callable[[], str | None] = cuda_device_name,
                   hub_up: Callable[[], bool] = hub_reachable,
                   cached: Callable[[], bool] = base_weights_cached) -> ProfileChoice:
    """Resolve ``auto``/``tiny``/``full`` into a concrete profile with a one-line reason.

    gpu_name, hub_up, cached: probes, replaceable in tests.
    """
    if requested not in PROFILES:
        raise RegistryError(f"Unknown profile {requested!r}; use one of: {', '.join(PROFILES)}.")
    if requested == "tiny":
        return ProfileChoice("tiny", "chosen with --profile tiny", "cpu", False)
    gpu = gpu_name()
    if requested == "full":
        if gpu:
            return ProfileChoice("full", f"chosen with --profile full on {gpu}", "cuda", True)
        return ProfileChoice("full", "chosen with --profile full; no GPU found, running on the CPU "
                             "(slow)", "cpu", False)
    if not gpu:
        return ProfileChoice("tiny", "no GPU found", "cpu", False)
    if hub_up():
        return ProfileChoice("full", f"GPU {gpu} found and the Hub answers", "cuda", True)
    if cached():
        return ProfileChoice("full", f"GPU {gpu} found and the weights are cached (Hub unreachable)",
                             "cuda", True)
    return ProfileChoice("tiny", f"GPU {gpu} found but the Hub is unreachable and no weights are cached",
                         "cpu", False)
