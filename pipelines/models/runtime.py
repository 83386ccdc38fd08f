"""The live runtime: profile, model overrides, cache folder, and every model loaded once and shared."""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.models.profile import ProfileChoice
from pipelines.models.registry import ModelRef, RegistryError, resolve


def default_cache_dir() -> Path:
    return Path(os.environ.get("ATELIER_CACHE") or Path.home() / ".cache" / "atelier").expanduser()


def check_writable(path: Path, what: str, remedy: str, error: type[Exception] = RegistryError) -> Path:
    """Create the folder ``path`` and prove it writable, or raise ``error``: one sentence naming it and ``remedy``."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"  # per process: ranks of one run probe the same folder at once
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        # a file where the folder or one of its parents should be: mkdir's "File exists" would puzzle
        reason = "a file is in the way" if isinstance(err, (FileExistsError, NotADirectoryError)) else err.strerror
        raise error(f"The {what} {path} is not writable ({reason or err}); {remedy}") from None
    return path


def check_cache_dir(path: Path) -> Path:
    """Create the cache folder and prove it is writable, or say what to do."""
    return check_writable(path, "cache folder", "set ATELIER_CACHE to a folder you can write to.")


def load_model(ref: ModelRef, device: str, dtype) -> Any:
    """Load a resolved role, first building its tiny model into the cache when the reference asks for it."""
    from pipelines.models import loaders, tiny_models

    if ref.build:
        tiny_models.build(ref.role, Path(ref.ref))
    return loaders.load(ref.role, ref.ref, device=device, dtype=dtype)


@dataclass
class Runtime:
    """What every tab shares: one instance per server process."""
    profile: ProfileChoice
    overrides: dict[str, str] = field(default_factory=dict)
    cache_dir: Path = field(default_factory=default_cache_dir)
    _models: dict[str, Any] = field(default_factory=dict, repr=False)
    _locks: dict[str, threading.Lock] = field(default_factory=dict, repr=False)
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def ref(self, role: str) -> ModelRef:
        return resolve(role, self.profile.name, self.overrides, self.cache_dir)

    @property
    def dtype(self):
        import torch

        return torch.float16 if self.profile.half else torch.float32

    def model(self, role: str) -> Any:
        """The role's model, loaded on first use and reused by every later request and tab."""
        with self._guard:
            lock = self._locks.setdefault(role, threading.Lock())
        with lock:
            if role not in self._models:
                self._models[role] = self._load(role)
            return self._models[role]

    def _load(self, role: str) -> Any:
        return load_model(self.ref(role), self.profile.device, self.dtype)

    def describe_models(self) -> list[tuple[str, str, str]]:
        """(role, what it loads, where that came from) for every role, for the UI."""
        from pipelines.models.registry import ROLES

        return [(role, (r := self.ref(role)).ref, r.source) for role in ROLES]
