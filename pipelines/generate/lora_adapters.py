"""LoRA adapters on the shared SD pipeline: each loaded once by name, combined with set_adapters."""
from __future__ import annotations

import logging
import threading
import tomllib
import weakref
from dataclasses import dataclass, field
from typing import Any, Iterable

from pipelines.generate.lora_files import LoraFile, LoraFileError, kohya_state, unflat

log = logging.getLogger(__name__)


class LoraApplyError(LoraFileError):
    """A LoRA passed the file checks but does not fit the live base model."""


@dataclass
class AdapterSet:
    """The adapters loaded into one pipeline; switching LoRAs never reloads the base model."""
    pipe: Any
    loaded: dict[str, LoraFile] = field(default_factory=dict)  # adapter name → file
    modules: dict[str, int] = field(default_factory=dict)      # adapter name → LoRA modules it matched
    lock: threading.Lock = field(default_factory=threading.Lock)
    loads: int = 0  # how many times weights were read from disk (tests and the benchmark check this)

    def apply(self, selection: Iterable[tuple[LoraFile, float]], keep: Iterable[LoraFile] = ()) -> dict[str, int]:
        """Activate ``selection`` with its weights; delete loaded adapters in neither it nor ``keep``.

        Returns {LoRA name: modules it applied to}; 0 means the LoRA silently changed nothing.
        """
        # two labels for identical weights share one adapter: add their weights
        merged: dict[str, tuple[LoraFile, float]] = {}
        for lora, weight in selection:
            previous = merged.get(lora.adapter_name, (lora, 0.0))[1]
            merged[lora.adapter_name] = (lora, previous + float(weight))
        names = {f.name: f.adapter_name for f, _ in selection}
        selection = list(merged.values())
        with self.lock:
            wanted = {f.adapter_name for f, _ in selection} | {f.adapter_name for f in keep}
            stale = [name for name in self.loaded if name not in wanted]
            if stale:
                self.pipe.delete_adapters(stale)
                for name in stale:
                    self.loaded.pop(name)
                    self.modules.pop(name, None)
            for lora, _ in selection:
                if lora.adapter_name not in self.loaded:
                    self._load(lora)
            if selection:
                self.pipe.enable_lora()
                self.pipe.set_adapters([f.adapter_name for f, _ in selection],
                                       adapter_weights=[float(w) for _, w in selection])
            elif self.loaded:
                self.pipe.disable_lora()
            return {name: self.modules[adapter] for name, adapter in names.items()}

    def _load(self, lora: LoraFile) -> None:
        name = lora.adapter_name
        source, kwargs = load_arguments(lora)
        try:
            self.pipe.load_lora_weights(source, adapter_name=name, **kwargs)
        except Exception as err:
            self._forget(name)
            log.warning("loading LoRA %s failed", lora.path, exc_info=True)
            why = ("matched no layer of the base model" if "not found in the base model" in str(err)
                   else "has layer shapes that differ from the base model's")
            raise LoraApplyError(f"{lora.name} {why}, so it was trained for another model; pick a LoRA trained "
                                 "on the live base model.") from err
        self.loads += 1
        # diffusers adds LoRA dropout in training mode; eval() keeps images deterministic.
        self.pipe.unet.eval()
        self.pipe.text_encoder.eval()
        self.loaded[name] = lora
        self.modules[name] = count_modules(self.pipe, name)
        log.info("loaded LoRA %s as %s: %d modules", lora.name, name, self.modules[name])

    def _forget(self, name: str) -> None:
        try:
            self.pipe.delete_adapters(name)
        except Exception:  # nothing was injected
            pass


def load_arguments(lora: LoraFile) -> tuple[Any, dict[str, Any]]:
    """What to hand ``load_lora_weights``: a safetensors path, or tensors with their real alphas.

    A trainer checkpoint (``checkpoints/step-N/lora.safetensors``) has PEFT keys but no adapter config, so
    diffusers would assume alpha = rank; converting it to kohya keys with the run's alphas keeps its scale.
    """
    run_config = lora.path.parent.parent.parent / "config.toml"
    if lora.format == "diffusers" and "lora_adapter_metadata" not in lora.metadata and run_config.is_file():
        from safetensors.torch import load_file

        settings = tomllib.loads(run_config.read_text())
        return kohya_state(unflat(load_file(lora.path)), settings.get("alpha", 1.0),
                           settings.get("text_encoder_alpha", 1.0)), {}
    return str(lora.path.parent), {"weight_name": lora.path.name}


def count_modules(pipe: Any, adapter_name: str) -> int:
    """How many layers of the UNet and text encoder carry the adapter."""
    total = 0
    for model in (pipe.unet, pipe.text_encoder):
        for module in model.modules():
            lora_a = getattr(module, "lora_A", None)
            if lora_a is not None and hasattr(lora_a, "keys") and adapter_name in lora_a.keys():
                total += 1
    return total


_SETS: "weakref.WeakKeyDictionary[Any, AdapterSet]" = weakref.WeakKeyDictionary()
_SETS_GUARD = threading.Lock()


def adapters_for(pipe: Any) -> AdapterSet:
    """The one AdapterSet of a pipeline (created on first use)."""
    with _SETS_GUARD:
        if pipe not in _SETS:
            _SETS[pipe] = AdapterSet(pipe)
        return _SETS[pipe]
