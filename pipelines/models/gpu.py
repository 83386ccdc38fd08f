"""GPU scheduling helpers shared by every tab that runs a model."""
from __future__ import annotations

import importlib.util
import os
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)

# Every GPU-using event handler joins this Gradio concurrency group, so two tabs never run the GPU at once.
GPU_CONCURRENCY_ID = "gpu"


def zero_gpu_enabled() -> bool:
    return bool(os.environ.get("SPACES_ZERO_GPU")) and importlib.util.find_spec("spaces") is not None


def on_gpu(fn: F) -> F:
    """Wrap a GPU function with ``spaces.GPU`` under HF ZeroGPU; unchanged everywhere else."""
    if not zero_gpu_enabled():
        return fn
    import spaces

    return spaces.GPU(fn)


def hide_bitsandbytes_without_cuda() -> None:
    """Make bitsandbytes look absent to this process when it has no CUDA device (the app's process only).

    diffusers and peft import it whenever it is installed, and with it torch's compiler: about 1.2 s of a CPU
    machine's wait for its first image, for nothing, since its 8-bit optimizers and quantization need CUDA here.
    Call before diffusers is imported; training processes keep it (8-bit Adam on CUDA).
    """
    import sys

    import torch

    if torch.cuda.is_available() or "bitsandbytes" in sys.modules:
        return
    sys.modules["bitsandbytes"] = None  # find_spec() answers None and an import raises ImportError
