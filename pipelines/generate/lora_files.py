"""LoRA files on disk: check one safely (header only, never unpickled), read its trigger word and hash, and
convert PEFT keys to the kohya/A1111 format."""
from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

DIFFUSERS_WEIGHTS = "pytorch_lora_weights.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# Keys only SDXL LoRAs have: the second text encoder, and kohya's names for it.
SDXL_MARKERS = ("lora_te2_", "text_encoder_2.", "te2.")
KOHYA_PREFIXES = ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")
MAX_HEADER_BYTES = 100_000_000  # the limit the safetensors library itself enforces


class LoraFileError(ValueError):
    """A file is not a LoRA this hub can load; the message says why in one sentence."""


@dataclass(frozen=True)
class LoraFile:
    """A checked LoRA: where its weights are, their format, and what the UI and infotext need."""
    path: Path          # the .safetensors file
    name: str           # what users see and A1111 writes in "Lora hashes"
    format: str         # "diffusers" (PEFT keys with unet./text_encoder. prefixes) or "kohya"
    trigger_word: str
    short_hash: str     # A1111-style: the first 12 hex digits of the file's sha256
    metadata: dict

    @property
    def adapter_name(self) -> str:
        """A name peft accepts (no dots) that differs whenever the weights differ."""
        return f"lora_{self.short_hash}"


def find_weights(path: Path) -> Path:
    """The weights file of a LoRA given as a file or a folder (a run's final/, a pulled Hub repo)."""
    path = Path(path)
    if path.is_dir():
        preferred = path / DIFFUSERS_WEIGHTS
        if preferred.is_file():
            return preferred
        found = sorted(path.glob("*.safetensors"))
        if found:
            return found[0]
        if any(p.suffix in PICKLE_SUFFIXES for p in path.iterdir()):
            raise LoraFileError(f"{path.name} holds only pickle weights (.bin/.pt/.ckpt), which can run code "
                                "when loaded; convert them to .safetensors first.")
        raise LoraFileError(f"{path.name} holds no .safetensors LoRA file.")
    if not path.is_file():
        raise LoraFileError(f"The LoRA file {path.name} does not exist.")
    return path


def read_header(path: Path) -> tuple[list[str], dict[str, list[int]], dict[str, str]]:
    """Tensor names, shapes and ``__metadata__`` from a safetensors header, reading nothing else.

    A pickle (or anything else) is refused from its first bytes: it is never handed to torch.load.
    """
    with open(path, "rb") as f:
        head = f.read(8)
        header = _safetensors_header(f, head, path.stat().st_size)
    if header is None:
        # Only a file that is not safetensors is looked at for pickle signatures: a valid header length can
        # start with 0x80 or "PK" too (about one file in 256).
        if head[:2] == b"PK" or head[:1] == b"\x80":
            raise LoraFileError(f"{path.name} is a pickle file, which can run code when loaded; this hub only "
                                "loads .safetensors LoRAs.")
        raise LoraFileError(f"{path.name} is not a safetensors file (its header is missing or damaged); export or "
                            "download it again as .safetensors.")
    metadata = header.pop("__metadata__", None) or {}
    shapes = {k: v.get("shape", []) for k, v in header.items() if isinstance(v, dict)}
    return list(shapes), shapes, {k: str(v) for k, v in metadata.items()}


def _safetensors_header(f, head: bytes, file_size: int) -> dict | None:
    """The JSON header that follows ``head`` (the 8-byte length) in ``f``, or None when it is not one."""
    size = int.from_bytes(head, "little") if len(head) == 8 else 0
    if not 2 <= size <= min(MAX_HEADER_BYTES, file_size - 8):
        return None
    raw = f.read(size)
    if raw[:1] != b"{":
        return None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        # RecursionError: a header nested thousands deep, which no safetensors writer produces.
        return None
    if not isinstance(header, dict) or not isinstance(header.get("__metadata__", {}), dict):
        return None
    return header


def classify(keys: list[str], metadata: dict[str, str], name: str) -> str:
    """"diffusers" or "kohya"; raises LoraFileError for foreign keys or an SDXL LoRA."""
    if not keys:
        raise LoraFileError(f"{name} holds no tensors.")
    arch = (metadata.get("ss_base_model_version", "") + metadata.get("modelspec.architecture", "")).lower()
    if any(k.startswith(SDXL_MARKERS) for k in keys) or "xl" in arch:
        raise LoraFileError(f"{name} is an SDXL LoRA; the live base model is Stable Diffusion 1.5, so pick a "
                            "LoRA trained on SD 1.5.")
    if not all("lora" in k for k in keys):
        foreign = next(k for k in keys if "lora" not in k)
        raise LoraFileError(f"{name} is not a LoRA (it holds tensors such as {foreign!r}); pick a LoRA "
                            ".safetensors file.")
    if all(k.startswith(KOHYA_PREFIXES) for k in keys):
        return "kohya"
    if all(k.startswith(("unet.", "text_encoder.")) for k in keys):
        return "diffusers"
    raise LoraFileError(f"{name} has LoRA keys in a layout this hub does not know (e.g. {keys[0]!r}); use the "
                        "diffusers or kohya format.")


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def trigger_from_card(folder: Path) -> str:
    """The trigger word a model card names (``instance_prompt`` or a "Trigger word" line), else ""."""
    card = folder / "README.md"
    if not card.is_file():
        return ""
    text = card.read_text(errors="replace")
    match = re.search(r"^instance_prompt:\s*['\"]?([^'\"\n]+)", text, re.M) or \
        re.search(r"trigger word[^`\n]*`([^`]+)`", text, re.I)
    return match.group(1).strip() if match else ""


def inspect(path: Path, name: str | None = None) -> LoraFile:
    """Check a LoRA file or folder without loading its tensors; raises LoraFileError with one sentence."""
    weights = find_weights(Path(path))
    label = name or (Path(path).name if Path(path).is_dir() else weights.stem)
    if weights.suffix.lower() in PICKLE_SUFFIXES:
        raise LoraFileError(f"{weights.name} is a pickle file, which can run code when loaded; this hub only "
                            "loads .safetensors LoRAs.")
    keys, _, metadata = read_header(weights)
    fmt = classify(keys, metadata, weights.name)
    trigger = metadata.get("atelier_trigger_word", "")
    if not trigger:
        # A run's final/ has the trigger word in the kohya file beside the diffusers one.
        for sibling in weights.parent.glob("*.safetensors"):
            if sibling != weights:
                try:
                    trigger = read_header(sibling)[2].get("atelier_trigger_word", "")
                except LoraFileError:
                    continue
                if trigger:
                    break
    trigger = trigger or trigger_from_card(weights.parent)
    return LoraFile(weights, label, fmt, trigger, file_hash(weights), metadata)


def flat(state: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """``{"unet": {k: v}}`` → ``{"unet.k": v}``: one file's keys from per-model state dicts."""
    return {f"{name}.{k}": v for name, sd in state.items() for k, v in sd.items()}


def unflat(tensors: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """The inverse of ``flat``."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        name, _, rest = key.partition(".")
        out.setdefault(name, {})[rest] = value
    return out


def kohya_state(state: dict[str, dict[str, torch.Tensor]], alpha: float,
                text_encoder_alpha: float) -> dict[str, torch.Tensor]:
    """PEFT LoRA state as kohya keys (``lora_unet_…``, ``lora_te1_…``) with each module's real alpha.

    diffusers' converter writes alpha = rank; ours differs (seed 001: rank 12, alpha 24).
    """
    import torch
    from diffusers.utils import convert_state_dict_to_kohya

    kohya = convert_state_dict_to_kohya(flat(state))
    for key in kohya:
        if key.endswith(".alpha"):
            kohya[key] = torch.tensor(float(text_encoder_alpha if key.startswith("lora_te") else alpha))
    return {k: v.contiguous() for k, v in kohya.items()}
