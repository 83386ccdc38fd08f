"""Stage 2 of seed 000: ``python -m training.hair inpaint --data PREPARED --output RUN``.

The ``sdxl_inpaint`` base (a 4-channel UNet is widened to 9) learns, through a LoRA on its UNet, to paint the hair
its prompt describes inside the hair mask, with two IP-Adapters: identity tokens from the face embedding and style
tokens from the hair's VGG16 statistics (``pipelines/hair/style.py``). Losses (seed 000): MaskAwareLoss, and at
low-noise timesteps IdentityCosineLoss (``face_id``) and TextureConsistencyLoss (``vgg16``) on the decoded x0
estimate. Batches, noise and dropouts are drawn from generators seeded by the step, so a resumed run repeats
the uninterrupted one exactly. The result is ``final/hair_model.safetensors`` (``pipelines/hair/model.py``).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from pipelines.hair import ip_adapters
from pipelines.hair import model as hair_model
from pipelines.hair.inpaint import encode_text, masked_image, time_ids, unet_input, widen_to_inpaint
from pipelines.hair.style import style_dim, style_embedding
from pipelines.hair.vocabulary import load as vocabulary
from pipelines.hair.tryon import comparison_grid, paint, to_pil
from pipelines.models.loaders import ModelLoadError
from training.hair.inpaint_data import Batch, load_batch, read_examples
from training.hair.losses import identity_loss, mask_aware_mse, texture_loss, x0_estimate
from training.hair.settings import HairSettingsError, InpaintSettings
from training.hair.texture import HairDataError
from training.runs import checkpoint
from training.runs.accel import (make_accelerator, optimizer_class, rank_weight_difference, rng_state, set_rng_state,
                                 weight_dtype)
from training.runs.checkpoint import ResumeError
from training.runs.folder import RunFolder, check_finite, check_finite_weights, run_guarded
from training.runs.settings import INTERVALS, scale_intervals, to_dict

log = logging.getLogger("training.hair")
USER_ERRORS = (HairDataError, HairSettingsError, ResumeError, ModelLoadError, hair_model.HairModelError)
MODEL_FILE = hair_model.MODEL_FILE
STYLE_ENCODER = "vgg16 masked feature statistics"


def run(s: InpaintSettings, data: Path, output: Path, profile: str, resume: str | None = None,
        texture: Path | None = None, base: str | None = None) -> int:
    """Train, writing ``output`` as a run folder; returns the process exit code.

    ``texture``: a stage-1 run (or its texture.safetensors) whose embedding joins the style tokens; ``base``: another
    inpainting base than the profile's ``sdxl_inpaint`` (a hub id or folder).
    """
    accelerator = make_accelerator(output, s.mixed_precision)
    folder = RunFolder(output, accelerator.is_main_process)
    return run_guarded(folder, lambda: InpaintRun(s, Path(data), folder, profile, accelerator, texture, base).train(
        resume), USER_ERRORS)


def load_texture(path: Path):
    """The stage-1 texture encoder of a run folder or its file."""
    from pipelines.hair import texture_model

    file = path / "final" / texture_model.MODEL_FILE if path.is_dir() else path
    if not file.is_file():
        raise HairDataError(f"--texture {path} has no final/{texture_model.MODEL_FILE}; finish the texture stage "
                            "(training.hair texture) first.")
    return texture_model.load(file)


def unet_weights(unet) -> dict[str, torch.Tensor]:
    """A fully fine-tuned UNet's own weights: everything but the adapters (saved apart, in the stock layout)."""
    return {k: v.detach().float().cpu() for k, v in unet.state_dict().items()
            if not k.startswith("encoder_hid_proj.") and ".processor." not in k}


def step_generator(seed: int, step: int, micro: int = 0, rank: int = 0) -> torch.Generator:
    """The generator of one micro-batch: what it draws depends on nothing but these numbers."""
    return torch.Generator().manual_seed(((seed * 1_000_003 + step) * 101 + micro) * 1_009 + rank)


class InpaintRun:
    """One stage-2 run: models, data and optimiser set up in __init__, then ``train``."""

    def __init__(self, s: InpaintSettings, data: Path, folder: RunFolder, profile: str, accelerator,
                 texture: Path | None = None, base: str | None = None):
        folder.stage("loading")
        from accelerate.utils import set_seed
        from diffusers import DDPMScheduler

        from pipelines.models.profile import choose_profile
        from pipelines.models.registry import env_overrides, resolve
        from pipelines.models.runtime import default_cache_dir, load_model

        requested, s = s, scale_intervals(s)
        self.s, self.folder, self.acc = s, folder, accelerator
        set_seed(s.seed)
        profile_name = choose_profile(profile).name
        device, self.dtype = str(accelerator.device), weight_dtype(accelerator)

        def role(name: str, dtype: torch.dtype = torch.float32):
            overrides = {**env_overrides(), **({"sdxl_inpaint": base} if base else {})}
            return load_model(resolve(name, profile_name, overrides, default_cache_dir()), device, dtype)

        self.base_ref = base or resolve("sdxl_inpaint", profile_name, env_overrides(), default_cache_dir()).ref
        self.pipe = role("sdxl_inpaint", self.dtype)
        self.pipe.set_progress_bar_config(disable=True)
        self.vgg, self.face_id = role("vgg16"), role("face_id")
        self.texture = load_texture(Path(texture)) if texture else None
        if self.texture is not None:
            self.texture.to(device).requires_grad_(False)
        self.train_set, self.val_set = read_examples(data, s.val_fraction, s.seed)
        self.resolution = s.resolution or self.pipe.unet.config.sample_size * self.pipe.vae_scale_factor
        self.noise_scheduler = DDPMScheduler.from_config(self.pipe.scheduler.config)
        if self.noise_scheduler.config.prediction_type != "epsilon":
            raise HairSettingsError(f"The base model predicts {self.noise_scheduler.config.prediction_type}; "
                                    "stage 2 trains epsilon-prediction inpainting models only.")
        self.dims = {"identity": int(load_batch(self.train_set[:1], 8).identity.shape[1]), "style": style_dim(self.vgg, self.texture)}
        self.params = self._add_trained_layers()
        self._setup_optimisation()
        self._text_cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        scaled = {k: getattr(requested, k) for k in INTERVALS if getattr(s, k) != getattr(requested, k)}
        folder.write_config({**to_dict(s), "stage": "inpaint", "data": str(data), "base_model_ref": self.base_ref,
                             "resolution": self.resolution, "world_size": accelerator.num_processes,
                             "texture": str(texture) if texture else None,
                             "requested_intervals": scaled or None})
        accelerator.init_trackers("hair-inpaint", config={k: v for k, v in to_dict(s).items()
                                                          if isinstance(v, (int, float, str, bool))})
        log.info("inpaint: %d training and %d held-out portraits at %d px; identity %d-d, style %d-d",
                 len(self.train_set), len(self.val_set), self.resolution, self.dims["identity"], self.dims["style"])

    # ---- set-up -----------------------------------------------------------------------------------------
    @property
    def lora_config(self) -> dict[str, Any]:
        return {"r": self.s.rank, "lora_alpha": self.s.alpha, "init_lora_weights": "gaussian",
                "target_modules": list(self.s.target_modules)}

    def _add_trained_layers(self) -> dict[str, list[torch.nn.Parameter]]:
        """Freeze the base, widen its UNet to 9 channels if needed, add the LoRA and the two adapters."""
        unet = self.pipe.unet
        for module in (unet, self.pipe.vae, self.pipe.text_encoder, self.pipe.text_encoder_2, self.vgg, self.face_id):
            module.requires_grad_(False)
        widen_to_inpaint(unet)
        if not self.s.full_unet:
            hair_model.add_lora(unet, self.lora_config)
        base = [p for p in unet.parameters() if p.requires_grad]
        states = [ip_adapters.fresh_state(unet, self.dims[name], seed=self.s.seed + i)
                  for i, name in enumerate(hair_model.ADAPTERS)]
        adapters = ip_adapters.attach(unet, states, scales=[1.0, 1.0])
        if self.s.full_unet:  # every UNet weight but the adapters' (their own group)
            ids = {id(p) for p in adapters}
            base = [p for p in unet.parameters() if id(p) not in ids]
            for p in base:
                p.requires_grad_(True)
        unet.to(self.acc.device)
        for p in base + adapters:  # trained in fp32 (a full fine-tune wants a full-precision base on the GPU)
            p.data = p.data.float()
        return {"unet": base, "adapters": adapters}

    def _setup_optimisation(self) -> None:
        from diffusers.optimization import get_scheduler

        s = self.s
        if s.gradient_checkpointing:
            self.pipe.unet.enable_gradient_checkpointing()
        groups = [{"params": self.params["unet"], "lr": s.learning_rate},
                  {"params": self.params["adapters"], "lr": s.adapter_learning_rate}]
        optimizer = optimizer_class(s.use_8bit_adam, self.acc.device)(groups, weight_decay=1e-2)
        names = {"constant": "constant_with_warmup", "cosine": "cosine", "cosine_with_restarts": "cosine_with_restarts"}
        if s.lr_scheduler not in names:
            raise HairSettingsError(f"Setting lr_scheduler must be one of {', '.join(names)}, not {s.lr_scheduler!r}.")
        self.lr_scheduler = get_scheduler(names[s.lr_scheduler], optimizer, num_warmup_steps=s.lr_warmup_steps,
                                          num_training_steps=s.max_steps)
        self.unet, self.optimizer = self.acc.prepare(self.pipe.unet, optimizer)

    # ---- one update -------------------------------------------------------------------------------------
    def _draw(self, gen: torch.Generator, examples: list, count: int) -> Batch:
        index = torch.randint(len(examples), (count,), generator=gen).tolist()
        return load_batch([examples[i] for i in index], self.resolution)

    def _text(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt and pooled embeddings of the frozen text encoders, computed once per prompt.

        One prompt at a time: a batch's numerics depend on its other rows, and a resumed run meets its prompts in
        other company than the uninterrupted one did.
        """
        pipe = self.pipe
        for prompt in dict.fromkeys(prompts):
            if prompt not in self._text_cache:
                ids = [tok([prompt], padding="max_length", max_length=tok.model_max_length, truncation=True,
                           return_tensors="pt").input_ids.to(self.acc.device) for tok in (pipe.tokenizer, pipe.tokenizer_2)]
                with torch.no_grad():
                    text, pooled = encode_text((pipe.text_encoder, pipe.text_encoder_2), ids)
                self._text_cache[prompt] = (text[0], pooled[0])
        text, pooled = zip(*(self._text_cache[p] for p in prompts))
        return torch.stack(text), torch.stack(pooled)

    def _conditioning(self, batch: Batch, gen: torch.Generator | None) -> dict[str, Any]:
        """UNet keyword arguments for ``batch``; with ``gen``, prompts and adapters dropped as the settings say."""
        device, n = self.acc.device, len(batch.prompts)
        prompts = batch.prompts
        if gen is not None and self.s.attribute_dropout > 0:
            prompts = [self._fewer_attributes(p, a, gen) for p, a in zip(prompts, batch.attributes)]
        text, pooled = self._text(prompts)
        with torch.no_grad():
            style = style_embedding(self.vgg, batch.pixels.to(device), batch.masks.to(device), self.texture)
        identity = batch.identity.to(device)
        if gen is not None:
            keep = (torch.rand(3, n, generator=gen) >= torch.tensor(
                [[self.s.caption_dropout], [self.s.adapter_dropout], [self.s.adapter_dropout]])).float().to(device)
            text, pooled = text * keep[0].view(-1, 1, 1), pooled * keep[0].view(-1, 1)
            identity, style = identity * keep[1].view(-1, 1), style * keep[2].view(-1, 1)
        return {"encoder_hidden_states": text.to(self.dtype),
                "added_cond_kwargs": {"text_embeds": pooled.to(self.dtype),
                                      "time_ids": time_ids(self.resolution, self.resolution, n).to(device),
                                      "image_embeds": [identity[:, None], style[:, None]]}}

    def _fewer_attributes(self, prompt: str, attributes: dict[str, str], gen: torch.Generator) -> str:
        """``prompt`` rebuilt with each attribute left out with probability ``attribute_dropout``."""
        if not attributes:
            return prompt
        keep = torch.rand(len(attributes), generator=gen) >= self.s.attribute_dropout
        return vocabulary().prompt({k: v for (k, v), kept in zip(attributes.items(), keep) if kept})[0]

    def _losses(self, batch: Batch, gen: torch.Generator, train: bool = True) -> dict[str, torch.Tensor]:
        """Per-sample losses of one batch: mask_mse always; identity, texture and gram at low-noise timesteps."""
        s, vae, device = self.s, self.pipe.vae, self.acc.device
        pixels, masks = batch.pixels.to(device, self.dtype), batch.masks.to(device)
        scale = vae.config.scaling_factor
        with torch.no_grad():
            latents = vae.encode(pixels).latent_dist.mean * scale
            masked = vae.encode(masked_image(pixels, masks)).latent_dist.mean * scale
        noise = torch.randn(latents.shape, generator=gen).to(device, latents.dtype)
        t = torch.randint(self.noise_scheduler.config.num_train_timesteps, (len(latents),), generator=gen).to(device)
        noisy = self.noise_scheduler.add_noise(latents, noise, t)
        cond = self._conditioning(batch, gen if train else None)
        with self.acc.autocast():
            pred = self.unet(unet_input(noisy, masks, masked), t, **cond).sample
        parts = {"mask_mse": mask_aware_mse(pred, noise, masks, s.outside_weight)}
        if not train or not (s.identity_weight or s.texture_weight or s.gram_weight):
            return parts
        low = t < s.low_noise_timestep
        zeros = torch.zeros(len(t), device=device)
        parts.update(identity=zeros, texture=zeros, gram=zeros)  # logged as 0 when no sample is low-noise
        if low.any():
            alphas = self.noise_scheduler.alphas_cumprod.to(device)[t[low]]
            x0 = x0_estimate(noisy[low].float(), pred[low].float(), alphas)
            with self.acc.autocast():
                decoded = vae.decode((x0 / scale).to(self.dtype)).sample.float()
            truth = pixels[low].float()
            boxes = [b for b, is_low in zip(batch.face_boxes, low.tolist()) if is_low]
            parts["identity"] = zeros.index_put((low,), identity_loss(self.face_id, decoded, truth, boxes))
            feature, gram = texture_loss(self.vgg, decoded, truth, masks[low])
            parts["texture"], parts["gram"] = zeros.index_put((low,), feature), zeros.index_put((low,), gram)
        return parts

    def _total(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        weights = {"mask_mse": 1.0, "identity": self.s.identity_weight, "texture": self.s.texture_weight,
                   "gram": self.s.gram_weight}
        return sum(weights[k] * v.mean() for k, v in parts.items())

    def _update(self, step: int) -> dict[str, float]:
        s, acc = self.s, self.acc
        self.unet.train()
        totals: dict[str, float] = {}
        for micro in range(s.gradient_accumulation_steps):
            gen = step_generator(s.seed, step, micro, acc.process_index)
            parts = self._losses(self._draw(gen, self.train_set, s.batch_size), gen)
            loss = self._total(parts) / s.gradient_accumulation_steps
            check_finite(loss.item(), "loss", f"step {step}", "learning_rate and adapter_learning_rate")
            acc.backward(loss)
            for k, v in {"loss": loss * s.gradient_accumulation_steps, **parts}.items():
                totals[k] = totals.get(k, 0.0) + v.mean().item() / s.gradient_accumulation_steps
        acc.clip_grad_norm_(self.params["unet"] + self.params["adapters"], 1.0)
        self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return totals

    # ---- the loop ---------------------------------------------------------------------------------------
    def train(self, resume: str | None = None) -> None:
        s, start = self.s, time.time()
        step = self._resume(resume) if resume else 0
        first = step
        self.folder.stage("training", step)
        parts: dict[str, float] = {}
        from tqdm.auto import tqdm

        for step in tqdm(range(step + 1, s.max_steps + 1), desc="hair inpaint", initial=step, total=s.max_steps,
                         disable=not self.acc.is_main_process):
            parts = self._update(step)
            last = step == s.max_steps
            if step % s.log_every == 0 or last:
                self.folder.event("train", step, max_steps=s.max_steps, lr=self.lr_scheduler.get_last_lr()[0], **parts)
                self.acc.log(parts, step=step)
            if (s.validation_steps and step % s.validation_steps == 0) or last:
                self._validate(step)
            if (s.sample_steps and step % s.sample_steps == 0) or last:
                self._sample(step)
            if (s.checkpointing_steps and step % s.checkpointing_steps == 0) or last:
                self._checkpoint(step)
        self._finish(parts, time.time() - start, first)

    @torch.no_grad()
    def _validate(self, step: int) -> None:
        """Mask-aware noise error on the held-out portraits, at noise and timesteps fixed for the whole run."""
        self.unet.eval()
        gen = step_generator(self.s.seed, 0, 0, 10_000)
        values = []
        for i in range(0, len(self.val_set), self.s.batch_size):
            batch = load_batch(self.val_set[i:i + self.s.batch_size], self.resolution)
            values.append(self._losses(batch, gen, train=False)["mask_mse"])
        val = torch.cat(values).mean().item()
        self.folder.event("val", step, val_mse=val)
        self.acc.log({"val_mse": val}, step=step)

    @torch.no_grad()
    def _sample(self, step: int) -> None:
        """``samples/step-N.png``: per held-out portrait, the input, the mask and the stock pipeline's result."""
        if not self.acc.is_main_process:
            return
        s = self.s
        batch = load_batch(self.val_set[:s.sample_images], self.resolution)
        results = self.paint(batch, seed=s.seed)
        path = self.folder.samples / f"step-{step}.png"
        comparison_grid(batch.pixels, batch.masks, results).save(path)
        self.folder.event("sample", step, path=str(path.relative_to(self.folder.root)),
                          prompts=batch.prompts)

    def paint(self, batch: Batch, seed: int) -> list[Image.Image]:
        """Run the stock inpainting pipeline with the model as trained so far on ``batch``."""
        s = self.s
        identity, style = self._conditioning(batch, None)["added_cond_kwargs"]["image_embeds"]
        self.unet.eval()
        with self.acc.autocast():
            return paint(self.pipe, [to_pil(x) for x in batch.pixels], [to_pil(m * 2 - 1) for m in batch.masks],
                         batch.prompts, identity[:, 0], style[:, 0], s.sample_inference_steps,
                         s.sample_guidance_scale, seed, self.resolution)

    # ---- checkpoints and the result ---------------------------------------------------------------------
    def trained_model(self) -> hair_model.HairModel:
        from peft.utils import get_peft_model_state_dict

        unet = self.acc.unwrap_model(self.unet)
        adapters = {name: ip_adapters.current_state(unet, i) for i, name in enumerate(hair_model.ADAPTERS)}
        metadata = {"base_model": self.base_ref, "lora_config": json.dumps({} if self.s.full_unet else self.lora_config),
                    "identity_dim": str(self.dims["identity"]), "style_dim": str(self.dims["style"]),
                    "style_encoder": STYLE_ENCODER, "resolution": str(self.resolution),
                    "settings": json.dumps(to_dict(self.s))}
        weights = {"unet": unet_weights(unet)} if self.s.full_unet else {
            "lora": {k: v.detach().float().cpu() for k, v in get_peft_model_state_dict(unet).items()}}
        texture = {}
        if self.texture is not None:
            metadata["texture_config"] = json.dumps({"width": self.texture.width,
                                                     "embedding": self.texture.embedding_size})
            texture = {k: v.detach().float().cpu() for k, v in self.texture.state_dict().items()}
        return hair_model.HairModel(adapters=adapters, metadata=metadata, texture=texture, **weights)

    def _checkpoint(self, step: int) -> None:
        check_finite_weights(self.params["unet"] + self.params["adapters"], f"step {step}",
                             "learning_rate and adapter_learning_rate")
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            target = self.folder.checkpoints / f"step-{step}"
            state = {"step": step, "lr_scheduler": self.lr_scheduler.state_dict()}
            model = self.trained_model()  # the weights file is a hair model file too: the Hair tab offers it
            checkpoint.save(target, hair_model.to_tensors(model), self.optimizer.state_dict(), rng_state(), state,
                            hair_model.file_metadata(model))
            self.folder.prune_checkpoints(self.s.checkpoints_total_limit)
            self.folder.event("checkpoint", step, path=str(target.relative_to(self.folder.root)))
        self.acc.wait_for_everyone()

    def _resume(self, resume: str) -> int:
        from peft.utils import set_peft_model_state_dict

        path, (tensors, optimizer, rng, state) = checkpoint.read_intact(resume, self.folder.checkpoint_dirs(),
                                                                        self.folder.root, checkpoint.load)
        saved = hair_model.from_tensors(tensors)
        unet = self.acc.unwrap_model(self.unet)
        if saved.unet:
            unet.load_state_dict(saved.unet, strict=False)
        else:
            set_peft_model_state_dict(unet, saved.lora)
        for i, name in enumerate(hair_model.ADAPTERS):
            ip_adapters.load_state(unet, i, saved.adapters[name])
        self.optimizer.load_state_dict(optimizer)
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        set_rng_state(rng)
        log.info("resuming from step %d (%s)", state["step"], path)
        self.folder.event("checkpoint", state["step"], resumed_from=str(path))
        return state["step"]

    def _finish(self, parts: dict[str, float], seconds: float, first: int) -> None:
        difference = rank_weight_difference(self.acc, self.params["unet"] + self.params["adapters"])
        if self.acc.is_main_process:
            self.folder.stage("saving", self.s.max_steps)
            self.folder.final.mkdir(exist_ok=True)
            hair_model.save(self.folder.final / MODEL_FILE, self.trained_model())
            steps = self.s.max_steps - first
            self.folder.write_report({
                "stage": "inpaint", "settings": to_dict(self.s), "base_model": self.base_ref, "steps": self.s.max_steps,
                "seconds": round(seconds, 2), "steps_per_second": round(steps / seconds, 4) if seconds and steps else None,
                "world_size": self.acc.num_processes, "rank_weight_difference": difference,
                "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2**20) if torch.cuda.is_available() else None,
                "final_losses": parts, "final": str(Path("final") / MODEL_FILE)})
            self.folder.plot_loss()
            self.folder.event("done", self.s.max_steps, loss=parts.get("loss"))
        self.acc.wait_for_everyone()
        self.acc.end_training()  # closes the trackers and the process group: no collective after this
