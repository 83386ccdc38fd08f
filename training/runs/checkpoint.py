"""Training checkpoints as safetensors + JSON (no pickles), written to a temporary name and then renamed.

A checkpoint holds everything an exact resume needs: LoRA tensors, optimizer and LR-scheduler state, the
global and the trainer's RNG states, the step and the trainer's own counters.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as tensors_to_bytes

LORA_FILE, OPTIMIZER_FILE, RNG_FILE, STATE_FILE = "lora.safetensors", "optimizer.safetensors", \
    "rng.safetensors", "state.json"


log = logging.getLogger(__name__)
T = TypeVar("T")
# What reading a damaged checkpoint raises: missing or truncated files, bad JSON or safetensors headers, absent keys.
DAMAGED = (OSError, ValueError, KeyError, SafetensorError)


class ResumeError(ValueError):
    """There is nothing to resume from; the message says where we looked."""


def optimizer_to_files(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (safetensors) and everything else (JSON).

    A parameter's state may nest dicts (bitsandbytes keeps its 8-bit state under ``__bnb_optimizer_quant_state__``);
    their keys are joined with "/".
    """
    tensors, scalars = {}, {}

    def split(prefix: str, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if isinstance(value, dict):
                split(f"{prefix}{key}/", value)
            elif torch.is_tensor(value):
                tensors[prefix + key] = value.detach().cpu().contiguous()
            else:
                scalars[prefix + key] = value

    for index, per_param in state["state"].items():
        split(f"{index}.", per_param)
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_files(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    per_param: dict[int, dict[str, Any]] = {}
    for source in (tensors, meta["scalars"]):
        for key, value in source.items():
            index, _, path = key.partition(".")
            *parents, name = path.split("/")
            values = per_param.setdefault(int(index), {})
            for parent in parents:
                values = values.setdefault(parent, {})
            values[name] = value
    return {"state": per_param, "param_groups": meta["param_groups"]}


def write_folder(folder: Path, write: Callable[[Path], None]) -> Path:
    """Fill a temporary sibling of ``folder`` with ``write``, then rename it: a half-written one never has the name.

    When writing fails (disk full, read-only) the temporary folder goes and the older checkpoints stay as they were.
    """
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        write(tmp)
        if folder.exists():  # a checkpoint of this step from before a resume
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def write_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors through Python's file API, so a failed write is an OSError that names the file."""
    path.write_bytes(tensors_to_bytes(tensors, metadata))


def save(folder: Path, lora: dict[str, torch.Tensor], optimizer: dict[str, Any], rng: dict[str, torch.Tensor],
         state: dict[str, Any], metadata: dict[str, str] | None = None) -> Path:
    """Write a checkpoint atomically: a half-written one never has the final name.

    ``metadata``: the weights file's safetensors metadata, so that it also loads as the trainer's result file.
    """
    def write(tmp: Path) -> None:
        opt_tensors, opt_meta = optimizer_to_files(optimizer)
        write_tensors(lora, tmp / LORA_FILE, metadata)
        write_tensors(opt_tensors, tmp / OPTIMIZER_FILE)
        write_tensors({k: v.contiguous() for k, v in rng.items()}, tmp / RNG_FILE)
        (tmp / STATE_FILE).write_text(json.dumps({**state, "optimizer": opt_meta}, indent=1))

    return write_folder(folder, write)


def load(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    state = json.loads((folder / STATE_FILE).read_text())
    optimizer = optimizer_from_files(load_file(folder / OPTIMIZER_FILE), state.pop("optimizer"))
    return load_file(folder / LORA_FILE), optimizer, load_file(folder / RNG_FILE), state


def read_intact(resume: str, checkpoints: list[Path], run_dir: Path, read: Callable[[Path], T]) -> tuple[Path, T]:
    """The checkpoint ``resume`` names and what ``read`` makes of it. Never silently nothing.

    ``latest`` is the newest checkpoint that reads without error: a damaged one is named in a warning and the one
    before it tried. ``read`` must not change the model, so that a failed read leaves nothing half loaded.
    """
    if resume != "latest":
        path = Path(resume)
        if not (path / STATE_FILE).is_file():
            raise ResumeError(f"--resume {resume}: not a checkpoint folder (no {STATE_FILE}); pass 'latest' or a "
                              "checkpoints/step-N folder.")
        try:
            return path, read(path)
        except DAMAGED as err:
            raise ResumeError(f"--resume {resume}: the checkpoint is damaged ({_reason(err)}); pass 'latest' or "
                              "another checkpoints/step-N folder.") from None
    if not checkpoints:
        raise ResumeError(f"--resume latest: {run_dir / 'checkpoints'} has no checkpoint to resume from; "
                          "start the run without --resume.")
    for path in reversed(checkpoints):
        try:
            return path, read(path)
        except DAMAGED as err:
            log.warning("Checkpoint %s is damaged (%s); trying the one before it.", path, _reason(err))
    raise ResumeError(f"--resume latest: every checkpoint in {run_dir / 'checkpoints'} is damaged "
                      f"({', '.join(p.name for p in checkpoints)}); start the run again without --resume.")


def _reason(err: Exception) -> str:
    """An error as a short, single-line reason."""
    return " ".join(f"{type(err).__name__}: {err}".split())
