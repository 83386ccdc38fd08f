"""Stage 1 of seed 000: the texture encoder, ``python -m training.hair texture --data PREPARED --output RUN``.

An autoencoder over the prepared ``hair_patches/`` learns to rebuild them (MSE) while SupConLoss (temperature 0.07,
normalised embeddings) pulls patches of the same label (curl by default) together. report.json records a probe:
the k-nearest-neighbour accuracy of the label on patches of held-out images, trained encoder vs the same encoder
at its random initialisation.
"""
from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F
from tqdm.auto import tqdm

from pipelines.hair.texture_model import MODEL_FILE, TextureAutoencoder, save
from training.hair.settings import HairSettingsError, TextureSettings
from training.runs.checkpoint import (ResumeError, optimizer_from_files, optimizer_to_files, read_intact, write_folder,
                                      write_tensors)
from training.runs.folder import RunFolder, check_finite, check_finite_weights, run_guarded
from training.runs.settings import to_dict

log = logging.getLogger("training.hair")
STATE_FILE, OPTIMIZER_FILE = "state.json", "optimizer.safetensors"


class HairDataError(ValueError):
    """The prepared folder cannot train this stage; the message says what is missing."""


USER_ERRORS = (HairDataError, HairSettingsError, ResumeError)


@dataclass
class Patches:
    """Hair patches as pixels in [-1, 1] with integer labels; ``names`` maps a label to its English value."""
    pixels: torch.Tensor
    labels: torch.Tensor
    names: list[str]


def load_patches(data: Path, s: TextureSettings) -> tuple[Patches, Patches]:
    """(train, held-out) patches of a prepared hair folder, split by image so no image is on both sides."""
    rows = _rows(data)
    labelled = [r for r in rows if r.get("attributes", {}).get(s.label) and r.get("patches")]
    if not labelled:
        raise HairDataError(f"No image in {data.name} has hair patches and a {s.label!r} attribute; prepare it with "
                            "python -m training.prepare hair.")
    names = sorted({r["attributes"][s.label] for r in labelled})
    ids = sorted(r["id"] for r in labelled)
    random.Random(s.seed).shuffle(ids)
    held = set(ids[:max(1, round(len(ids) * s.val_fraction))])
    size = s.patch_px or _first_size(data, labelled) // 4 * 4
    split: dict[bool, tuple[list, list]] = {True: ([], []), False: ([], [])}
    for row in labelled:
        for path in sorted((data / "hair_patches").glob(f"{row['id']}-*.png")):
            with Image.open(path) as im:
                pixels = np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR), np.float32)
            split[row["id"] in held][0].append(torch.from_numpy(pixels / 127.5 - 1).permute(2, 0, 1))
            split[row["id"] in held][1].append(names.index(row["attributes"][s.label]))
    train, val = (Patches(torch.stack(p), torch.tensor(y), names) if p else None for p, y in (split[False], split[True]))
    if train is None or val is None:
        raise HairDataError(f"{data.name} has too few images with patches to hold some out; prepare more images.")
    return train, val


def _rows(data: Path) -> list[dict]:
    path = Path(data) / "metadata.jsonl"
    if not path.is_file():
        raise HairDataError(f"{Path(data).name} has no metadata.jsonl; prepare it with python -m training.prepare hair.")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _first_size(data: Path, rows: list[dict]) -> int:
    first = next((data / "hair_patches").glob(f"{rows[0]['id']}-*.png"))
    with Image.open(first) as im:
        return min(im.size)


@torch.no_grad()
def knn_accuracy(model: TextureAutoencoder, train: Patches, val: Patches, k: int) -> float:
    """The share of held-out patches whose k nearest training patches (cosine) vote for their label."""
    model.eval()
    reference, queries = model.embed(train.pixels), model.embed(val.pixels)
    nearest = (queries @ reference.T).topk(min(k, len(reference)), dim=1).indices
    votes = train.labels[nearest]
    predicted = torch.mode(votes, dim=1).values
    return float((predicted == val.labels).float().mean())


def new_model(s: TextureSettings) -> TextureAutoencoder:
    """The encoder at its initialisation for ``s.seed``: the same weights every time (the probe's baseline)."""
    torch.manual_seed(s.seed)
    return TextureAutoencoder(s.width, s.embedding)


def run(s: TextureSettings, data: Path, output: Path, resume: str | None = None) -> int:
    """Train, writing ``output`` as a run folder; returns the process exit code."""
    folder = RunFolder(output)
    return run_guarded(folder, lambda: TextureRun(s, Path(data), folder).train(resume), USER_ERRORS)


class TextureRun:
    """One run of stage 1: data and model set up in __init__, then ``train``."""

    def __init__(self, s: TextureSettings, data: Path, folder: RunFolder):
        from pytorch_metric_learning.losses import SupConLoss

        self.s, self.folder = s, folder
        folder.stage("loading")
        self.train_set, self.val_set = load_patches(data, s)
        self.model = new_model(s)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=s.learning_rate, weight_decay=s.weight_decay)
        self.supcon = SupConLoss(temperature=s.temperature)
        folder.write_config({**to_dict(s), "data": str(data), "stage": "texture",
                             "labels": self.train_set.names, "patch_px": self.train_set.pixels.shape[-1]})
        log.info("texture: %d training patches, %d held out, labels %s", len(self.train_set.pixels),
                 len(self.val_set.pixels), ", ".join(self.train_set.names))

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of ``step``: drawn from a generator seeded by the step, so a resumed run sees the same data."""
        generator = torch.Generator().manual_seed(self.s.seed * 1_000_003 + step)
        index = torch.randint(len(self.train_set.pixels), (self.s.batch_size,), generator=generator)
        return self.train_set.pixels[index], self.train_set.labels[index]

    def train(self, resume: str | None = None) -> None:
        s, start = self.s, time.time()
        step = self.restore(resume) if resume else 0
        self.folder.stage("training", step)
        self.model.train()
        parts = {}
        for step in tqdm(range(step + 1, s.steps + 1), desc="texture", initial=step, total=s.steps):
            pixels, labels = self.batch(step)
            reconstruction, embedding = self.model(pixels)
            parts = {"reconstruction": F.mse_loss(reconstruction, pixels), "supcon": self.supcon(embedding, labels)}
            loss = s.reconstruction_weight * parts["reconstruction"] + s.supcon_weight * parts["supcon"]
            check_finite(loss.item(), "loss", f"step {step}", f"learning_rate (now {s.learning_rate:g})")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            parts = {"loss": loss.item(), **{k: v.item() for k, v in parts.items()}}
            if step % s.log_every == 0 or step == s.steps:
                self.folder.event("train", step, max_steps=s.steps, **parts)
            if step == s.steps or (s.checkpointing_steps and step % s.checkpointing_steps == 0):
                self.checkpoint(step)
        self.finish(time.time() - start, parts)

    def checkpoint(self, step: int) -> None:
        """``checkpoints/step-N/``: the model, the optimizer and the step, renamed into place when complete."""
        check_finite_weights(list(self.model.parameters()), f"step {step}", "learning_rate")

        def write(tmp: Path) -> None:
            save(self.model, tmp / MODEL_FILE)
            tensors, meta = optimizer_to_files(self.optimizer.state_dict())
            write_tensors(tensors, tmp / OPTIMIZER_FILE)
            (tmp / STATE_FILE).write_text(json.dumps({"step": step, "optimizer": meta}))

        target = write_folder(self.folder.checkpoints / f"step-{step}", write)
        self.folder.prune_checkpoints(self.s.checkpoints_total_limit)
        self.folder.event("checkpoint", step, path=str((target / MODEL_FILE).relative_to(self.folder.root)))

    def restore(self, resume: str) -> int:
        """Load a checkpoint written by ``checkpoint``; returns its step."""
        def read(path: Path):
            from safetensors.torch import load_file

            state = json.loads((path / STATE_FILE).read_text())
            return (state, load_file(str(path / MODEL_FILE)),
                    optimizer_from_files(load_file(str(path / OPTIMIZER_FILE)), state["optimizer"]))

        path, (state, weights, optimizer) = read_intact(resume, self.folder.checkpoint_dirs(), self.folder.root, read)
        self.model.load_state_dict(weights)
        self.optimizer.load_state_dict(optimizer)
        log.info("resumed from %s (step %d)", path, state["step"])
        return state["step"]

    def finish(self, seconds: float, parts: dict[str, float]) -> None:
        self.folder.stage("saving", self.s.steps)
        self.folder.final.mkdir(exist_ok=True)
        save(self.model, self.folder.final / MODEL_FILE, {"label": self.s.label, "labels": json.dumps(self.train_set.names)})
        probe = {"label": self.s.label, "k": self.s.knn_k, "held_out_patches": len(self.val_set.pixels),
                 "knn_accuracy_trained": knn_accuracy(self.model, self.train_set, self.val_set, self.s.knn_k),
                 "knn_accuracy_random_init": knn_accuracy(new_model(self.s), self.train_set, self.val_set,
                                                          self.s.knn_k)}
        log.info("probe: kNN accuracy of %s %.3f trained vs %.3f at random init", self.s.label,
                 probe["knn_accuracy_trained"], probe["knn_accuracy_random_init"])
        self.folder.write_report({"stage": "texture", "settings": to_dict(self.s), "steps": self.s.steps,
                                  "seconds": round(seconds, 2), "final_losses": parts, "probe": probe,
                                  "final": str(Path("final") / MODEL_FILE)})
        self.folder.plot_loss()
        self.folder.event("done", self.s.steps, loss=parts.get("loss"))
