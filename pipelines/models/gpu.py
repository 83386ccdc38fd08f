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
