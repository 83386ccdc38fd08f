"""The training loop behind ``python -m training.anime`` (see that module for the command line)."""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from pipelines.anime.model import (FULL_DECODER_WIDTHS, MODEL_FILE, TINY_DECODER_WIDTHS, AnimeStyleModel,
                                   CheckpointError, load_into, read_checkpoint, save_checkpoint)
from pipelines.models.loaders import ModelLoadError
from training.anime.data import DataError, ImageFolder, check_readable, splits
from training.anime.loss import VGGFeatures, losses
from training.anime.settings import AnimeSettings, AnimeSettingsError, to_dict
from training.runs.checkpoint import (ResumeError, optimizer_from_files, optimizer_to_files, read_intact, write_folder,
                                 write_tensors)
from training.runs.folder import RunFolder, check_finite, check_finite_weights, run_guarded

log = logging.getLogger("training.anime")
USER_ERRORS = (DataError, AnimeSettingsError, ModelLoadError, ResumeError, CheckpointError)
OPTIMIZER_FILE, STATE_FILE = "optimizer.safetensors", "state.json"


def run(s: AnimeSettings, content: Path, style: Path, output: Path, profile: str, resume: str | None = None) -> int:
    """Train, writing ``output`` as a run folder; returns the process exit code."""
    from accelerate import Accelerator

    mixed = s.mixed_precision if s.mixed_precision != "auto" else ("fp16" if torch.cuda.is_available() else "no")
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=mixed)
    folder = RunFolder(output, accelerator.is_main_process)
    return run_guarded(folder, lambda: AnimeRun(s, content, style, folder, profile, accelerator).train(resume),
                       USER_ERRORS)


def load_role(role: str, profile_name: str, device: str):
    """A registry role resolved for ``profile_name``, built into the tiny cache first when needed."""
    from pipelines.models.registry import env_overrides, resolve
    from pipelines.models.runtime import default_cache_dir, load_model

    ref = resolve(role, profile_name, env_overrides(), default_cache_dir())
    return load_model(ref, device, torch.float32), ref.ref


def forever(loader):
    """Batches of ``loader`` without end, reshuffled each pass (itertools.cycle would replay and hold them all)."""
    while True:
        yield from loader


def match_batch(style: torch.Tensor, size: int) -> torch.Tensor:
    """The style batch repeated or cut to the content batch's size (a style folder may be smaller than a batch)."""
    return style[torch.arange(size) % len(style)]


def read_run_checkpoint(folder: Path) -> tuple[dict, dict[str, torch.Tensor], dict]:
    """(state, model weights, optimizer state) of a ``checkpoints/step-N`` folder, read without loading anything."""
    from safetensors.torch import load_file

    state = json.loads((folder / STATE_FILE).read_text())
    weights, _ = read_checkpoint(folder / MODEL_FILE)
    optimizer = optimizer_from_files(load_file(str(folder / OPTIMIZER_FILE)), state["optimizer"])
    return state, weights, optimizer


def decoder_widths(s: AnimeSettings, profile_name: str) -> tuple[int, ...]:
    if s.decoder_widths:
        return tuple(int(w) for w in s.decoder_widths.split(","))
    return TINY_DECODER_WIDTHS if profile_name == "tiny" else FULL_DECODER_WIDTHS


class AnimeRun:
    """One training run: data, model, losses and optimiser set up in __init__, then ``train``."""

    def __init__(self, s: AnimeSettings, content: Path, style: Path, folder: RunFolder, profile: str, accelerator):
        from accelerate.utils import set_seed

        from pipelines.models.profile import choose_profile

        self.s, self.folder, self.acc = s, folder, accelerator
        folder.stage("loading")
        set_seed(s.seed)
        profile_name = choose_profile(profile).name
        loaders = self._data(content, style)
        model, refs = self._model(profile_name)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=s.learning_rate, weight_decay=s.weight_decay)
        self.model, self.optimizer, self.content_loader, self.style_loader = accelerator.prepare(
            model, optimizer, *loaders)
        self.steps_per_epoch = len(self.content_loader)
        self.max_steps = s.epochs * self.steps_per_epoch
        self.scheduler = self._scheduler()
        self.val_batch = self._val_batch()
        folder.write_config({**to_dict(s), "content": str(content), "style": str(style), "profile": profile_name,
                             **refs, "world_size": accelerator.num_processes,
                             "decoder_widths_resolved": list(model.decoder_widths)})

    def _data(self, content: Path, style: Path) -> list[DataLoader]:
        """Train/val splits (every file opened once now) and the content and style training loaders."""
        s = self.s
        self.content_train, self.content_val = splits(content, "content", s.val_fraction)
        self.style_train, self.style_val = splits(style, "style", s.val_fraction)
        if s.max_images:
            self.content_train = self.content_train[:s.max_images]
        check_readable(self.content_train + self.content_val + self.style_train + self.style_val)
        batch = min(s.batch_size, len(self.content_train))  # a folder smaller than a batch still trains
        return [DataLoader(ImageFolder(paths, train=True), batch_size=min(batch, len(paths)), shuffle=True,
                           drop_last=True, num_workers=s.num_workers)
                for paths in (self.content_train, self.style_train)]

    def _model(self, profile_name: str) -> tuple[AnimeStyleModel, dict[str, str]]:
        """The model over the ``vit`` role (frozen unless train_encoder) and the frozen ``vgg19`` loss net."""
        device = str(self.acc.device)
        with self.acc.main_process_first():  # rank 0 builds the tiny cache, the others read it
            vit, vit_ref = load_role("vit", profile_name, device)
            vgg, vgg_ref = load_role("vgg19", profile_name, device)
        self.vgg = VGGFeatures(vgg, self.s.layer_indices()).to(device)
        model = AnimeStyleModel(vit, decoder_widths(self.s, profile_name)).to(device)
        model.vit_encoder.requires_grad_(self.s.train_encoder)
        return model, {"vit_ref": vit_ref, "vgg19_ref": vgg_ref}

    def _scheduler(self):
        s = self.s
        if s.scheduler == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=max(1, self.max_steps))
        if s.scheduler == "step":
            return torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=s.step_epochs * self.steps_per_epoch,
                                                   gamma=0.5)
        return None

    def _val_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A fixed validation batch (centre crops), the same every epoch so grids compare; styles repeat."""
        content = ImageFolder(self.content_val[:self.s.val_images], train=False)
        style = ImageFolder(self.style_val[:self.s.val_images], train=False)
        rows = range(len(content))
        return (torch.stack([content[i] for i in rows]).to(self.acc.device),
                torch.stack([style[i % len(style)] for i in rows]).to(self.acc.device))

    # ---- the loop -----------------------------------------------------------------------------------------
    def train(self, resume: str | None = None) -> None:
        s, start = self.s, time.time()
        first_epoch, step = self.restore(resume) if resume else (1, 0)
        self.folder.stage("training", step)
        log.info("training %d epochs x %d steps (batch %d) on %s", s.epochs, self.steps_per_epoch,
                 self.content_loader.total_batch_size, self.acc.device)
        styles = forever(self.style_loader)  # style and content folders may differ in size
        means: dict[str, float] = {}
        for epoch in range(first_epoch, s.epochs + 1):
            self.model.train()
            if not s.train_encoder:
                self.acc.unwrap_model(self.model).vit_encoder.eval()
            totals: dict[str, float] = {}
            for content in self.content_loader:
                step += 1
                parts = self.train_step(content, match_batch(next(styles), len(content)), epoch, step)
                for key, value in parts.items():
                    totals[key] = totals.get(key, 0.0) + value
            means = {k: v / self.steps_per_epoch for k, v in totals.items()}
            log.info("epoch %d/%d: total %.4f content %.4f style %.4f tv %.4f", epoch, s.epochs,
                     means["total"], means["content"], means["style"], means["tv"])
            self.validate(epoch, step)
            if epoch % s.checkpoint_every == 0 or epoch == s.epochs:
                self.checkpoint(epoch, step)
        self.finish(step, time.time() - start, means)

    def train_step(self, content: torch.Tensor, style: torch.Tensor, epoch: int, step: int) -> dict[str, float]:
        s = self.s
        with self.acc.autocast():
            generated = self.model(content, style)
            parts = losses(self.vgg, generated.float(), content, style, s)
        check_finite(parts["total"].item(), "loss", f"epoch {epoch}, step {step}", self.lower)
        self.optimizer.zero_grad(set_to_none=True)
        self.acc.backward(parts["total"])
        self.optimizer.step()
        if self.scheduler:
            self.scheduler.step()
        values = {k: float(v.detach()) for k, v in parts.items()}
        self.folder.event("train", step, epoch=epoch, loss=values["total"], content=values["content"],
                          style=values["style"], tv=values["tv"], lr=self.optimizer.param_groups[0]["lr"],
                          max_steps=self.max_steps)
        return values

    @torch.no_grad()
    def validate(self, epoch: int, step: int) -> None:
        """Validation losses on the fixed batch and a grid (content | style | output) into ``samples/``."""
        if not self.acc.is_main_process:
            return
        from torchvision.utils import save_image

        model = self.acc.unwrap_model(self.model).eval()
        content, style = self.val_batch
        generated = model(content, style)
        parts = losses(self.vgg, generated.float(), content, style, self.s)
        output = (generated.float() + 1) / 2
        rows = torch.stack([content, style, output], dim=1).flatten(0, 1)
        path = self.folder.samples / f"step-{step:06d}-epoch-{epoch:03d}.png"
        save_image(rows.clamp(0, 1), str(path), nrow=3, padding=2)
        self.folder.event("val", step, epoch=epoch, val_loss=float(parts["total"]),
                          val_mse=float(torch.mean((output - content) ** 2)))  # pixel MSE to the content photo
        self.folder.event("sample", step, epoch=epoch, path=str(path.relative_to(self.folder.root)))

    def checkpoint(self, epoch: int, step: int) -> None:
        """``checkpoints/step-N/``: model + optimizer safetensors and state.json, renamed into place when complete."""
        self.check_weights(f"epoch {epoch}, step {step}")
        self.acc.wait_for_everyone()
        if not self.acc.is_main_process:
            return

        def write(tmp: Path) -> None:
            save_checkpoint(self.acc.unwrap_model(self.model), tmp / MODEL_FILE, include_encoder=self.s.train_encoder)
            tensors, meta = optimizer_to_files(self.optimizer.state_dict())
            write_tensors(tensors, tmp / OPTIMIZER_FILE)
            state = {"epoch": epoch, "step": step, "optimizer": meta,
                     "scheduler": self.scheduler.state_dict() if self.scheduler else None}
            (tmp / STATE_FILE).write_text(json.dumps(state))

        target = write_folder(self.folder.checkpoints / f"step-{step}", write)
        path = (target / MODEL_FILE).relative_to(self.folder.root)
        self.folder.event("checkpoint", step, epoch=epoch, path=str(path))

    def restore(self, resume: str) -> tuple[int, int]:
        """Load a checkpoint written by ``checkpoint``; returns (first epoch to train, global step)."""
        folder, (state, weights, optimizer) = read_intact(resume, self.folder.checkpoint_dirs(), self.folder.root,
                                                          read_run_checkpoint)
        load_into(self.acc.unwrap_model(self.model), weights, str(folder / MODEL_FILE))
        self.optimizer.load_state_dict(optimizer)
        if self.scheduler and state.get("scheduler"):
            self.scheduler.load_state_dict(state["scheduler"])
        log.info("resumed from %s (epoch %d, step %d)", folder, state["epoch"], state["step"])
        return state["epoch"] + 1, state["step"]

    @property
    def lower(self) -> str:
        """The settings to lower when training diverges."""
        return f"learning_rate (now {self.s.learning_rate:g}) or the loss weights"

    def check_weights(self, where: str) -> None:
        """Every rank stops before NaN or infinite weights reach a checkpoint or ``final/``."""
        trained = [p for p in self.model.parameters() if p.requires_grad]
        check_finite_weights(trained, where, self.lower)

    def finish(self, step: int, seconds: float, means: dict[str, float]) -> None:
        self.check_weights(f"step {step}")
        if not self.acc.is_main_process:
            return
        self.folder.stage("saving", step)
        self.folder.final.mkdir(exist_ok=True)
        save_checkpoint(self.acc.unwrap_model(self.model), self.folder.final / MODEL_FILE,
                        include_encoder=self.s.train_encoder)
        images = step * self.content_loader.total_batch_size
        peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
        self.folder.write_report({"settings": to_dict(self.s), "steps": step, "seconds": round(seconds, 2),
                                  "images_per_second": round(images / seconds, 3) if seconds else None,
                                  "final_losses": means, "peak_cuda_bytes": peak,
                                  "final": str(Path("final") / MODEL_FILE)})
        self.folder.plot_loss()
        self.folder.event("done", step, loss=means.get("total", math.nan))
        log.info("done: %d steps in %.1f s; weights in %s", step, seconds, self.folder.final / MODEL_FILE)
