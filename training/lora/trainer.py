"""The LoRA training loop behind ``python -m training.lora`` (see that module for the command line)."""
from __future__ import annotations

import contextlib
import logging
import math
import os
import resource
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from pipelines.models.loaders import ModelLoadError
from training.runs import checkpoint
from training.runs.checkpoint import ResumeError
from training.lora.batches import (Batches, Noised, augment_caption, augment_latents, generator,
                                   micro_batches, with_trigger)
from training.lora.data import DatasetError, Example, read_captioned, read_instance_images
from pipelines.generate.lora_files import flat, unflat
from training.lora.model import add_adapters, export, load_lora_state, lora_state
from training.lora.settings import LoraSettings, SettingsError, to_dict
from training.runs.settings import INTERVALS, scale_intervals
from training.runs.accel import (make_accelerator, optimizer_class, rank_weight_difference, rng_state, set_rng_state,
                                 weight_dtype)
from training.runs.folder import RunFolder, check_finite, check_finite_weights, run_guarded

log = logging.getLogger("training.lora")
USER_ERRORS = (DatasetError, SettingsError, ResumeError, ModelLoadError)
# Speed levers that leave the results as they are, by device (bench/train_speed.py turns them off to measure them):
CHANNELS_LAST_DEVICES = ("cpu",)  # mkldnn convolutions gain (1.16x a step); CUDA lost (0.92x, H200, gpu_train.py)


@dataclass
class Progress:
    """The trainer's counters; saved in every checkpoint."""
    step: int = 0
    best_val: float = math.inf
    bad_validations: int = 0
    losses: list[float] = field(default_factory=list)


def run(s: LoraSettings, data: Path, output: Path, profile: str, resume: str | None) -> int:
    """Train, writing ``output`` as a run folder; returns the process exit code."""
    accelerator = make_accelerator(output, s.mixed_precision)
    folder = RunFolder(output, accelerator.is_main_process)
    return run_guarded(folder, lambda: LoraRun(s, data, folder, profile, accelerator).train(resume), USER_ERRORS)


class LoraRun:
    """One training run: set up in __init__, then ``train``."""

    def __init__(self, s: LoraSettings, data: Path, folder: RunFolder, profile: str, accelerator):
        folder.stage("loading")  # the imports below take seconds already
        from pipelines.models.profile import choose_profile
        from pipelines.models.registry import env_overrides, resolve
        from pipelines.models.runtime import default_cache_dir, load_model
        from pipelines.generate.text_to_image import defaults_for

        from accelerate.utils import set_seed

        profile_name = choose_profile(profile).name
        if not s.sample_guidance_scale:
            s = replace(s, sample_guidance_scale=defaults_for(profile_name).cfg)
        requested, s = s, scale_intervals(s)
        scaled = {key: getattr(requested, key) for key in INTERVALS if getattr(s, key) != getattr(requested, key)}
        if scaled:
            log.info("intervals longer than the %d-step run cut to %d steps: %s", s.max_steps,
                     max(1, s.max_steps // 4), ", ".join(scaled))
        self.s, self.folder, self.acc = s, folder, accelerator
        set_seed(s.seed)  # LoRA init and dropout draw from the global RNG
        self.cache_dir = default_cache_dir()
        self.weight_dtype = weight_dtype(accelerator)
        self._resolve = lambda role: resolve(role, profile_name, env_overrides(), self.cache_dir)
        self._detector = None
        self.ref = self._resolve(s.base_model)
        self.pipe = load_model(self.ref, str(accelerator.device), self.weight_dtype)
        self.pipe.set_progress_bar_config(disable=True)
        self.resolution = s.resolution or self.pipe.unet.config.sample_size * self.pipe.vae_scale_factor
        self.train_set, self.val_set = self._examples(data)
        self.class_set = self._class_examples() if s.with_prior_preservation else []
        if s.cache_latents:
            folder.stage("caching")
        self.latents = self._latents(self.train_set)
        self.class_latents = self._latents(self.class_set) if self.class_set else None
        self.val_latents = self._latents(self.val_set) if self.val_set else None
        self._text_cache: dict[str, torch.Tensor] = {}
        self.params = add_adapters(self.pipe, s)
        self._setup_optimisation()
        folder.write_config({**to_dict(s), "base_model_ref": self.ref.ref, "resolution": self.resolution,
                             "data": str(data), "world_size": accelerator.num_processes,
                             "requested_intervals": scaled or None})
        accelerator.init_trackers("lora", config={k: v for k, v in to_dict(s).items()
                                                  if isinstance(v, (int, float, str, bool))})

    # ---- data -------------------------------------------------------------------------------------------
    def _examples(self, data: Path) -> tuple[list[Example], list[Example]]:
        s = self.s
        if s.preset == "dreambooth":
            examples = read_instance_images(data, s.instance_prompt)
        else:
            examples = [Example(e.image, with_trigger(e.caption, s.trigger_word)) for e in read_captioned(data)]
        if s.val_fraction <= 0 or len(examples) < 2:
            return examples, []
        order = torch.randperm(len(examples), generator=generator(s.seed, 3)).tolist()
        n_val = max(1, round(len(examples) * s.val_fraction))
        return [examples[i] for i in order[n_val:]], [examples[i] for i in order[:n_val]]

    def _class_examples(self) -> list[Example]:
        from training.lora.class_images import class_folder, class_image_paths, generate_missing

        folder = class_folder(self.s, self.ref.ref, self.resolution, self.cache_dir)
        if self.acc.is_main_process:
            self.folder.stage("class images")
            generate_missing(self.pipe, self.s, folder, self.resolution)
        self.acc.wait_for_everyone()
        return [Example(p, self.s.class_prompt) for p in class_image_paths(folder, self.s.num_class_images)]

    def _latents(self, examples: list[Example]) -> torch.Tensor | None:
        """Cached latents (the default), or None to encode every step."""
        if not self.s.cache_latents:
            return None
        from training.lora.latents import cached_latents

        transform = self._image_transform()
        root = self.cache_dir / "latents"
        with self.acc.main_process_first():  # rank 0 fills the cache, the others read it
            return cached_latents(self.pipe.vae, [e.image for e in examples], self.resolution, root, transform)

    def _image_transform(self):
        from training.lora.latents import load_square

        if not self.s.crop_face:
            return load_square
        from pipelines.models.runtime import load_model
        from training.lora.latents import face_crop_transform

        if self._detector is None:
            self._detector = load_model(self._resolve("faces"), "cpu", torch.float32)
        return face_crop_transform(self._detector)

    def _batch_latents(self, examples: list[Example], cached: torch.Tensor | None, idx: list[int]) -> torch.Tensor:
        if cached is not None:
            return cached[idx]
        from training.lora.latents import encode

        transform = self._image_transform()
        return encode(self.pipe.vae, torch.stack([transform(examples[i].image, self.resolution) for i in idx]))

    def _text(self, captions: list[str]) -> torch.Tensor:
        """Text-encoder hidden states; memoised per caption while the text encoder is frozen."""
        frozen = not self.s.train_text_encoder
        if frozen and self.s.cache_text_embeddings and all(c in self._text_cache for c in captions):
            return torch.stack([self._text_cache[c] for c in captions]).to(self.acc.device)
        tok = self.pipe.tokenizer
        ids = tok(captions, padding="max_length", max_length=tok.model_max_length, truncation=True,
                  return_tensors="pt").input_ids.to(self.acc.device)
        with torch.no_grad() if frozen else contextlib.nullcontext():
            hidden = self.text_encoder(ids)[0]
        if frozen and self.s.cache_text_embeddings:
            self._text_cache.update({c: h.detach() for c, h in zip(captions, hidden)})
        return hidden

    # ---- optimisation -----------------------------------------------------------------------------------
    def _setup_optimisation(self) -> None:
        from diffusers import DDPMScheduler
        from diffusers.optimization import get_scheduler

        s, acc, pipe = self.s, self.acc, self.pipe
        if self.weight_dtype != torch.float32:
            for p in self.params:  # LoRA weights train in fp32 on top of a half-precision base
                p.data = p.data.float()
        if acc.device.type in CHANNELS_LAST_DEVICES:
            pipe.unet.to(memory_format=torch.channels_last)
            # The trained tensors stay contiguous: fused AdamW pairs a tensor with its state by memory position,
            # and state loaded on resume is contiguous (torch 2.14: a channels-last LoRA conv resumed wrongly).
            for p in self.params:
                p.data = p.data.contiguous()
        if s.gradient_checkpointing:
            pipe.unet.enable_gradient_checkpointing()
            if s.train_text_encoder:
                pipe.text_encoder.gradient_checkpointing_enable()
        groups = [{"params": [p for p in pipe.unet.parameters() if p.requires_grad], "lr": s.learning_rate}]
        if s.train_text_encoder:
            groups.append({"params": [p for p in pipe.text_encoder.parameters() if p.requires_grad],
                           "lr": s.text_encoder_lr})
        optimizer = optimizer_class(s.use_8bit_adam, acc.device)(groups, betas=(s.adam_beta1, s.adam_beta2),
                                            weight_decay=s.weight_decay, eps=s.adam_epsilon)
        names = {"constant": "constant_with_warmup", "cosine": "cosine",
                 "cosine_with_restarts": "cosine_with_restarts"}
        if s.lr_scheduler not in names:
            raise SettingsError(f"Setting lr_scheduler must be one of {', '.join(names)}, not {s.lr_scheduler!r}.")
        # Not prepared by accelerate on purpose: it would step once per process per update.
        self.lr_scheduler = get_scheduler(names[s.lr_scheduler], optimizer, num_warmup_steps=s.lr_warmup_steps,
                                          num_training_steps=s.max_steps,
                                          num_cycles=max(1, s.max_steps // max(1, s.lr_restart_period)))
        if s.train_text_encoder:
            self.unet, self.text_encoder, self.optimizer = acc.prepare(pipe.unet, pipe.text_encoder, optimizer)
            self.trained = [self.unet, self.text_encoder]
        else:
            self.unet, self.optimizer = acc.prepare(pipe.unet, optimizer)
            self.text_encoder, self.trained = pipe.text_encoder, [self.unet]
        self.noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        self.batches = Batches(len(self.train_set), s.batch_size, s.gradient_accumulation_steps,
                               acc.num_processes, s.seed)
        self.class_batches = Batches(len(self.class_set), s.batch_size, s.gradient_accumulation_steps,
                                     acc.num_processes, s.seed + 1) if self.class_set else None
        # Auto takes the whole update in one forward: on CUDA an out-of-memory error halves it until it fits.
        per_update = s.batch_size * s.gradient_accumulation_steps * (2 if self.class_batches else 1)
        self.micro_batch = min(s.micro_batch_size, per_update) if s.micro_batch_size else per_update
        self.micro_batch_start, self.out_of_memory_retries = self.micro_batch, 0
        log.info("micro-batch: %d image(s) per forward, %d per update (batch %d x %d accumulation%s; %s)",
                 self.micro_batch, per_update, s.batch_size, s.gradient_accumulation_steps,
                 " x 2 with class images" if self.class_batches else "",
                 f"micro_batch_size={s.micro_batch_size}" if s.micro_batch_size else "auto")
        log.info("threads: %d, OpenMP waiting %s (training/runs/threads.py)", torch.get_num_threads(),
                 os.environ.get("OMP_WAIT_POLICY", "by default, spinning"))
        self.forward_unet = torch.compile(self.unet) if s.compile_unet else self.unet

    # ---- the loss ---------------------------------------------------------------------------------------
    def _update_samples(self, step: int) -> Noised:
        """This rank's images of one update, micro-batch by micro-batch, drawn as when each ran on its own."""
        return Noised.cat([self._micro_samples(step, micro) for micro in range(self.s.gradient_accumulation_steps)])

    def _micro_samples(self, step: int, micro: int) -> Noised:
        s, rank = self.s, self.acc.process_index
        gen = generator(s.seed, 11, step, micro, rank)
        idx = self.batches.indices(step, micro, rank)
        latents = augment_latents(self._batch_latents(self.train_set, self.latents, idx), s, gen)
        captions = [augment_caption(self.train_set[i].caption, s, gen) for i in idx]
        # The update's loss is the mean over micro-batches of (instance mean + weight x prior mean), as sums of
        # per-image shares, so any split of the update into forwards gives the same loss.
        weights = torch.full((len(idx),), 1 / (len(idx) * s.gradient_accumulation_steps))
        if self.class_batches:
            cidx = self.class_batches.indices(step, micro, rank)
            latents = torch.cat([latents, self._batch_latents(self.class_set, self.class_latents, cidx)])
            captions += [self.class_set[i].caption for i in cidx]
            weights = torch.cat([weights, s.prior_loss_weight * weights])
        return self._noised(latents, captions, gen, weights)

    def _noised(self, latents: torch.Tensor, captions: list[str], gen: torch.Generator,
                weights: torch.Tensor | None = None) -> Noised:
        """Noise, timesteps and the target for ``latents``, drawn from ``gen``; equal shares unless ``weights``."""
        s, sched = self.s, self.noise_scheduler
        noise = torch.randn(latents.shape, generator=gen)
        if s.noise_offset:
            noise = noise + s.noise_offset * torch.randn((*latents.shape[:2], 1, 1), generator=gen)
        t = torch.randint(sched.config.num_train_timesteps, (len(latents),), generator=gen)
        noisy = sched.add_noise(latents, noise, t)
        target = sched.get_velocity(latents, noise, t) if sched.config.prediction_type == "v_prediction" else noise
        if weights is None:
            weights = torch.full((len(latents),), 1 / len(latents))
        return Noised(noisy, t, target, captions, weights)

    def _denoising_loss(self, latents: torch.Tensor, captions: list[str], gen: torch.Generator) -> torch.Tensor:
        """Per-sample loss of ``latents`` noised with draws from ``gen``."""
        return self._prediction_loss(self._noised(latents, captions, gen))

    def _prediction_loss(self, b: Noised) -> torch.Tensor:
        """Per-sample MSE between the UNet's prediction and the target, min-SNR weighted when asked."""
        from diffusers.training_utils import compute_snr

        s, sched, device = self.s, self.noise_scheduler, self.acc.device
        with self.acc.autocast():
            pred = self.forward_unet(b.noisy.to(device, self.weight_dtype), b.timesteps.to(device),
                                     encoder_hidden_states=self._text(b.captions).to(self.weight_dtype)).sample
        loss = F.mse_loss(pred.float(), b.target.to(device).float(), reduction="none").mean(dim=(1, 2, 3))
        if s.snr_gamma:
            snr = compute_snr(sched, b.timesteps).to(device)
            weight = torch.clamp(snr, max=s.snr_gamma) / snr
            loss = loss * (weight * snr / (snr + 1) if sched.config.prediction_type == "v_prediction" else weight)
        return loss

    # ---- the loop ---------------------------------------------------------------------------------------
    def train(self, resume: str | None) -> None:
        s, acc, folder = self.s, self.acc, self.folder
        progress = self._resume(resume) if resume else Progress()
        folder.stage("training", progress.step)
        start_step, started = progress.step, time.monotonic()
        log.info("training %s: %d images (%d val, %d class), %d steps from step %d, %d process(es) on %s",
                 s.preset, len(self.train_set), len(self.val_set), len(self.class_set), s.max_steps,
                 start_step, acc.num_processes, acc.device)
        from tqdm.auto import tqdm

        bar = tqdm(range(start_step, s.max_steps), initial=start_step, total=s.max_steps,
                   disable=not acc.is_main_process, desc="lora")
        stopped_early = False
        for step in bar:
            loss = self._update(step)
            check_finite(loss, "loss", f"step {step + 1}", self._lower)
            progress.step = step + 1
            progress.losses.append(loss)
            bar.set_postfix(loss=f"{loss:.4f}")
            stopped_early = self._after_update(progress)
            if stopped_early:
                break
        self._finish(progress, start_step, time.monotonic() - started, stopped_early)

    def _update(self, step: int) -> float:
        """One optimizer update over the effective batch, in micro-batches that fit; the mean loss over ranks."""
        acc = self.acc
        for model in self.trained:
            model.train()
        samples, rng = self._update_samples(step), rng_state()
        while True:
            try:
                total = self._accumulate(samples)
                break
            except torch.cuda.OutOfMemoryError as err:
                if self.micro_batch == 1:
                    fix = "lower resolution" if self.s.gradient_checkpointing else "turn gradient_checkpointing on"
                    raise SettingsError(f"Out of GPU memory with one image per forward; {fix}.") from err
            # outside the except block, so that the failed try's tensors are freed first
            self._retry_smaller(step, rng)
        acc.clip_grad_norm_(self.params, self.s.max_grad_norm)
        self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return acc.reduce(total, reduction="mean").item()

    def _accumulate(self, samples: Noised) -> torch.Tensor:
        """Forward and backward ``samples`` in micro-batches of ``self.micro_batch`` images; their summed loss."""
        acc, total = self.acc, torch.zeros((), device=self.acc.device)
        for rows in micro_batches(len(samples), self.micro_batch):
            part = samples.rows(rows)
            with contextlib.ExitStack() as stack:
                if rows.stop < len(samples):  # all-reduce gradients once, on the last micro-batch
                    for model in self.trained:
                        stack.enter_context(acc.no_sync(model))
                loss = (self._prediction_loss(part) * part.weights.to(acc.device)).sum()
                acc.backward(loss)
            total += loss.detach()
        return total

    def _retry_smaller(self, step: int, rng: dict[str, torch.Tensor]) -> None:
        """After an out-of-memory error: halve the micro-batch and rewind the step, so nothing is lost."""
        self.optimizer.zero_grad(set_to_none=True)  # the failed try's partial gradients
        set_rng_state(rng)  # the retry draws the same dropout masks
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.out_of_memory_retries += 1
        log.warning("step %d: out of memory at %d images per forward; retrying the step at %d", step + 1,
                    self.micro_batch, self.micro_batch // 2)
        self.micro_batch //= 2

    def _after_update(self, p: Progress) -> bool:
        """Log, validate, sample and checkpoint on their schedules; True when early stopping says stop."""
        s, step, stop = self.s, p.step, False
        last = step == s.max_steps
        if step % s.log_every == 0 or last or len(p.losses) == 1:  # the first update gives the Runs tab a speed
            window = p.losses[-s.log_every:]
            loss, lr = sum(window) / len(window), self.lr_scheduler.get_last_lr()[0]
            self.folder.event("train", step, loss=loss, max_steps=s.max_steps, lr=lr)
            self.acc.log({"train/loss": loss, "train/lr": lr}, step=step)
        if self.val_set and s.validation_steps and (step % s.validation_steps == 0 or last):  # 0: never
            stop = self._validate(p)
        if s.sample_steps and step % s.sample_steps == 0 and not (last or stop):  # _write_outputs samples the end
            self._sample(step)
        if s.checkpointing_steps and (step % s.checkpointing_steps == 0 or last or stop):  # resumable at the end
            self._checkpoint(p)
        return stop

    @torch.no_grad()
    def _validate(self, p: Progress) -> bool:
        """Val MSE/MAE/std with fixed noise; keeps the best LoRA in ``best/``; True when patience runs out."""
        self.unet.eval()
        losses, maes = [], []
        for j, example in enumerate(self.val_set):
            gen = generator(self.s.seed, 99, j)
            latents = self._batch_latents(self.val_set, self.val_latents, [j])
            mse = self._denoising_loss(latents, [example.caption], gen)
            losses.append(mse.item())
            maes.append(mse.sqrt().item())
        val = torch.tensor(losses)
        metrics = {"val_mse": val.mean().item(), "val_mae": sum(maes) / len(maes), "val_std": val.std(unbiased=False).item()}
        self.folder.event("val", p.step, **metrics)
        self.acc.log({f"val/{k[4:]}": v for k, v in metrics.items()}, step=p.step)
        log.info("step %d: val MSE %.5f, MAE %.5f, std %.5f", p.step, *metrics.values())
        if metrics["val_mse"] < p.best_val - self.s.early_stopping_min_delta:
            p.best_val, p.bad_validations = metrics["val_mse"], 0
            if self.acc.is_main_process:
                export(self.pipe, self.s, self.folder.root / "best", "best", self._header(p.step))
        else:
            p.bad_validations += 1
        if p.bad_validations >= self.s.early_stopping_patience:
            log.info("early stopping at step %d: no val improvement in %d validations", p.step, p.bad_validations)
            return True
        return False

    def _sample(self, step: int) -> None:
        """Images for the validation prompts into ``samples/``; the global RNG is left untouched."""
        if not self.acc.is_main_process:
            return
        prompts = self.s.validation_prompts or [self.train_set[0].caption]
        self.pipe.unet.eval()
        self.pipe.text_encoder.eval()
        # autocast: the fp32 LoRA layers hand fp32 latents to the half-precision VAE otherwise
        with torch.random.fork_rng(devices=[]), torch.no_grad(), self.acc.autocast():
            for i, prompt in enumerate(prompts):
                gen = torch.Generator("cpu").manual_seed(self.s.seed + i)
                image = self.pipe(prompt, num_inference_steps=self.s.sample_inference_steps, generator=gen,
                                   guidance_scale=self.s.sample_guidance_scale, height=self.resolution,
                                   width=self.resolution).images[0]
                path = self.folder.samples / f"step-{step:06d}-{i}.png"
                image.save(path)
                self.folder.event("sample", step, path=str(path.relative_to(self.folder.root)), prompt=prompt)

    def _checkpoint(self, p: Progress) -> None:
        check_finite_weights(self.params, f"step {p.step}", self._lower)
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            rng = rng_state()
            state = {"step": p.step, "best_val": p.best_val if math.isfinite(p.best_val) else None,
                     "bad_validations": p.bad_validations, "lr_scheduler": self.lr_scheduler.state_dict()}
            target = self.folder.checkpoints / f"step-{p.step}"
            checkpoint.save(target, flat(lora_state(self.pipe, self.s)), self.optimizer.state_dict(), rng, state)
            self.folder.prune_checkpoints(self.s.checkpoints_total_limit)
            self.folder.event("checkpoint", p.step, path=str(target.relative_to(self.folder.root)))
        self.acc.wait_for_everyone()

    def _resume(self, resume: str) -> Progress:
        path, (lora, optimizer, rng, state) = checkpoint.read_intact(resume, self.folder.checkpoint_dirs(),
                                                                     self.folder.root, checkpoint.load)
        load_lora_state(self.pipe, unflat(lora))
        self.optimizer.load_state_dict(optimizer)
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        set_rng_state(rng)
        best = state.get("best_val")
        log.info("resuming from step %d (%s)", state["step"], path)
        self.folder.event("checkpoint", state["step"], resumed_from=str(path))
        return Progress(step=state["step"], best_val=math.inf if best is None else best,
                        bad_validations=state["bad_validations"])

    def _header(self, step: int) -> dict[str, Any]:
        return {"atelier_base_model": self.ref.ref, "atelier_steps": str(step),
                "ss_resolution": str(self.resolution), "ss_output_name": self.folder.root.name}

    @property
    def _lower(self) -> str:
        """The setting to lower when training diverges, with its value."""
        return f"learning_rate (now {self.s.learning_rate:g})"

    def _finish(self, p: Progress, start_step: int, seconds: float, stopped_early: bool) -> None:
        check_finite_weights(self.params, f"step {p.step}", self._lower)
        rank_difference = rank_weight_difference(self.acc, self.params)
        if self.acc.is_main_process:
            self._write_outputs(p, start_step, seconds, stopped_early, rank_difference)
        self.acc.wait_for_everyone()
        self.acc.end_training()  # closes the trackers and the process group: no collective after this

    def _write_outputs(self, p: Progress, start_step: int, seconds: float, stopped_early: bool,
                       rank_difference: float) -> None:
        """Final samples, the exported LoRA, loss.png, report.json and the "done" event (rank 0)."""
        acc, folder = self.acc, self.folder
        folder.stage("saving", p.step)
        log.info("LoRA weights across %d rank(s): largest difference %.3g", acc.num_processes, rank_difference)
        self._sample(p.step)
        diffusers_file, kohya_file = export(self.pipe, self.s, folder.final, folder.root.name, self._header(p.step))
        folder.plot_loss()
        steps_done = p.step - start_step
        peak_cuda = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
        folder.write_report({
            "settings": to_dict(self.s), "base_model": self.ref.ref, "resolution": self.resolution,
            "steps": p.step, "stopped_early": stopped_early, "world_size": acc.num_processes,
            "rank_weight_difference": rank_difference,
            "final_loss": sum(p.losses[-10:]) / max(1, len(p.losses[-10:])) if p.losses else None,
            "best_val_mse": p.best_val if math.isfinite(p.best_val) else None,
            "seconds": round(seconds, 2), "steps_per_second": round(steps_done / seconds, 4) if seconds else None,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "peak_cuda_mb": peak_cuda,
            "micro_batch": {"images_per_forward": self.micro_batch, "at_start": self.micro_batch_start,
                            "out_of_memory_retries": self.out_of_memory_retries},
            "threads": {"torch": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")},
            "outputs": {"diffusers": str(diffusers_file.relative_to(folder.root)),
                        "kohya": str(kohya_file.relative_to(folder.root))}})
        folder.event("done", p.step, stopped_early=stopped_early)
        log.info("done: %s", folder.final)
