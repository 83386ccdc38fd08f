"""Training checkpoints as safetensors + JSON (no pickles), written to a temporary name and then renamed.

A checkpoint holds everything an exact resume needs: LoRA tensors, optimizer and LR-scheduler state, the
global and the trainer's RNG states, the step and the trainer's own counters.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

LORA_FILE, OPTIMIZER_FILE, RNG_FILE, STATE_FILE = "lora.safetensors", "optimizer.safetensors", \
    "rng.safetensors", "state.json"


class ResumeError(ValueError):
    """There is nothing to resume from; the message says where we looked."""


def optimizer_to_files(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (safetensors) and everything else (JSON)."""
    tensors, scalars = {}, {}
    for index, per_param in state["state"].items():
        for key, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_files(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    per_param: dict[int, dict[str, Any]] = {}
    for source in (tensors, meta["scalars"]):
        for key, value in source.items():
            index, _, name = key.partition(".")
            per_param.setdefault(int(index), {})[name] = value
    return {"state": per_param, "param_groups": meta["param_groups"]}


def save(folder: Path, lora: dict[str, torch.Tensor], optimizer: dict[str, Any], rng: dict[str, torch.Tensor],
         state: dict[str, Any]) -> Path:
    """Write a checkpoint atomically: a half-written one never has the final name."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    opt_tensors, opt_meta = optimizer_to_files(optimizer)
    save_file(lora, tmp / LORA_FILE)
    save_file(opt_tensors, tmp / OPTIMIZER_FILE)
    save_file({k: v.contiguous() for k, v in rng.items()}, tmp / RNG_FILE)
    (tmp / STATE_FILE).write_text(json.dumps({**state, "optimizer": opt_meta}, indent=1))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def load(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    state = json.loads((folder / STATE_FILE).read_text())
    optimizer = optimizer_from_files(load_file(folder / OPTIMIZER_FILE), state.pop("optimizer"))
    return load_file(folder / LORA_FILE), optimizer, load_file(folder / RNG_FILE), state


def find(resume: str, checkpoints: list[Path], run_dir: Path) -> Path:
    """``latest`` → the newest finished checkpoint; a path → that checkpoint. Never silently nothing."""
    if resume == "latest":
        if not checkpoints:
            raise ResumeError(f"--resume latest: {run_dir / 'checkpoints'} has no checkpoint to resume from; "
                              "start the run without --resume.")
        return checkpoints[-1]
    path = Path(resume)
    if not (path / STATE_FILE).is_file():
        raise ResumeError(f"--resume {resume}: not a checkpoint folder (no {STATE_FILE}); pass 'latest' or a "
                          "checkpoints/step-N folder.")
    return path
