"""The tiny profile's hair inpainting base, trained from scratch on the toy hair world: ``python -m training.hair toy``.

An SDXL-shaped ``StableDiffusionXLInpaintPipeline`` (VAE, two CLIP text encoders and a tokenizer whose every hair
word is one token, a 9-channel UNet with SDXL's text-time conditioning) learns to paint, inside a portrait's hair
mask, the hair its prompt (as ``training.prepare hair`` writes it) describes. Stages: render portraits → train the
VAE → cache image and masked-image latents → train the UNet and both text encoders jointly (captions dropped to the
zero embedding, as the pipeline's ``force_zeros_for_empty_prompt`` expects) → save the pipeline folder → stage 2
(``training.hair inpaint`` with its [tiny] settings) on a prepared toy K-Hairstyle set: the default hair model,
saved in the folder as ``hair_model.safetensors``. ``training_report.json`` holds the judged accuracy of both.
"""
from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from pipelines.hair import toy_hair
from pipelines.hair.inpaint import encode_text, masked_image, time_ids, unet_input
from pipelines.hair.vocabulary import load as load_vocabulary
from pipelines.models.toy_tokenizer import build_tokenizer
from training.hair.losses import mask_aware_mse
from training.hair.settings import HairToySettings
from training.runs.folder import check_finite_weights
from training.toy.recipe import (autocast, decoder_optimiser, encode_latents, to_unit, tokenize, train_vae,
                                 update)

log = logging.getLogger("training.hair")
TRYON_FILE = "hair_model.safetensors"  # the tiny profile's default hair model, beside its base (the hair role)
MASK_DILATE = 1  # pixels; what training.prepare hair grows a 64-px portrait's polygon by


@dataclass
class ToySet:
    """Rendered portraits (uint8 N×3×64×64), their inpainting masks (float N×1×64×64, 1 = hair) and prompts."""
    pixels: torch.Tensor
    masks: torch.Tensor
    prompts: list[str]


def inpainting_mask(p: toy_hair.Portrait) -> np.ndarray:
    """The portrait's hair grown by MASK_DILATE pixels, as training.prepare hair makes it from the label."""
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * MASK_DILATE + 1,) * 2)
    return cv2.dilate(toy_hair.hair_mask(p).astype(np.uint8), kernel) > 0


def render_set(n: int, seed: int) -> ToySet:
    rng = random.Random(seed)
    portraits = [toy_hair.random_portrait(rng) for _ in range(n)]
    pixels = np.stack([np.asarray(toy_hair.render(p)) for p in portraits])
    masks = np.stack([inpainting_mask(p) for p in portraits]).astype(np.float32)
    return ToySet(torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(masks)[:, None],
                  [toy_hair.prompt(p) for p in portraits])


def make_vae():
    from diffusers import AutoencoderKL

    # Two levels (latents at half the size): a latent cell of 2×2 pixels keeps the 3-px stripes and checkers that a
    # cell of 4×4 blurred (a 3-level VAE's round trip: judged colour 0.40, texture 0.50 after 500 steps). 8 groups,
    # not 32: a group of one channel normalises a flat colour away. No mid-block attention over 32×32 cells.
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(32, 64),
                         layers_per_block=1, latent_channels=4, norm_num_groups=8, sample_size=64,
                         mid_block_add_attention=False, force_upcast=False)


def make_text_encoders(tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=128, num_hidden_layers=3,
                            num_attention_heads=4, projection_dim=32, max_position_embeddings=tokenizer.model_max_length,
                            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id)
    return CLIPTextModel(config), CLIPTextModelWithProjection(config)


def make_unet():
    from diffusers import UNet2DConditionModel

    time_dim = 8
    # SDXL's shape at toy size: no attention at the top level (32×32 latents), cross-attention below it.
    return UNet2DConditionModel(
        sample_size=32, in_channels=9, out_channels=4, layers_per_block=1, block_out_channels=(32, 64, 128),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=64,
        attention_head_dim=(1, 2, 4), norm_num_groups=32, use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=time_dim,
        projection_class_embeddings_input_dim=6 * time_dim + 32)


@torch.no_grad()
def round_trip_accuracy(vae, count: int = 48, seed: int = 1_000) -> dict[str, float]:
    """How often the judge still reads a held-out portrait's hair colour and texture after encoding and decoding:
    the ceiling of every try-on the base can paint."""
    portraits = [target for _, target in held_out_requests(count, seed)]
    x = to_unit(torch.stack([torch.from_numpy(np.asarray(toy_hair.render(p))).permute(2, 0, 1) for p in portraits]))
    decoded = vae.decode(vae.encode(x).latent_dist.mean).sample
    hits = {"color": 0, "texture": 0}
    for image, p in zip(decoded, portraits):
        pixels = ((image.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
        verdict = toy_hair.judge(Image.fromarray(pixels), toy_hair.hair_mask(p))
        hits["color"] += verdict.color == p.color
        hits["texture"] += verdict.curl == p.curl
    return {k: round(v / count, 3) for k, v in hits.items()}


def tune_decoder(folder: Path, data: ToySet, s: HairToySettings) -> dict[str, float]:
    """Train the saved base's VAE decoder alone (the encoder, hence the UNet's latents, unchanged), the hair counted
    ``hair_weight`` times: the round trip's lost colour (reddish brown read back as natural brown) is the decoder's.
    Saves the VAE back; returns the round trip's judged accuracy after it."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(folder / "vae")
    gen = torch.Generator().manual_seed(s.seed + 2)  # its own draws: the same result however the base was made
    params, opt, sched = decoder_optimiser(vae, s.decoder_lr, s.decoder_steps)
    losses: list[float] = []
    for step in (bar := tqdm(range(1, s.decoder_steps + 1), desc="hair decoder")):
        idx = torch.randint(len(data.pixels), (s.vae_batch_size,), generator=gen)
        batch, weight = to_unit(data.pixels[idx]), 1 + (s.hair_weight - 1) * data.masks[idx]
        with torch.no_grad():
            latents = vae.encode(batch).latent_dist.sample(generator=gen)
        with autocast(s):
            recon = vae.decode(latents).sample
        loss = ((recon.float() - batch) ** 2 * weight).mean()
        update(loss, opt, sched, params, losses, bar, step, s.decoder_lr, "decoder", "decoder_lr")
    vae.eval()
    check_finite_weights(params, "the decoder's tuning", "decoder_lr")
    vae.save_pretrained(folder / "vae", safe_serialization=True)
    return round_trip_accuracy(vae)


def train_denoiser(unet, text_encoders, latents: torch.Tensor, masked_latents: torch.Tensor, masks: torch.Tensor,
                   ids: tuple[torch.Tensor, torch.Tensor], s: HairToySettings, gen: torch.Generator) -> list[float]:
    """Epsilon prediction of the hair, both text encoders trained jointly; returns the loss per step."""
    from diffusers import DDPMScheduler

    noise_scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    params = [*unet.parameters(), *text_encoders[0].parameters(), *text_encoders[1].parameters()]
    opt = torch.optim.AdamW(params, lr=s.max_lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s.max_lr, total_steps=s.unet_steps)
    size = masks.shape[-1]
    losses: list[float] = []
    for step in (bar := tqdm(range(1, s.unet_steps + 1), desc="hair unet")):
        idx = torch.randint(len(latents), (s.batch_size,), generator=gen)
        x0, mask = latents[idx], masks[idx]
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(noise_scheduler.config.num_train_timesteps, (s.batch_size,), generator=gen)
        keep = (torch.rand(s.batch_size, generator=gen) >= s.caption_dropout).float()
        with autocast(s):
            text, pooled = encode_text(text_encoders, (ids[0][idx], ids[1][idx]))
            text, pooled = text * keep.view(-1, 1, 1), pooled * keep.view(-1, 1)  # dropped = zero, as the pipeline
            pred = unet(unet_input(noise_scheduler.add_noise(x0, noise, t), mask, masked_latents[idx]), t,
                        encoder_hidden_states=text,
                        added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids(size, size, s.batch_size)}).sample
        update(mask_aware_mse(pred, noise, mask, s.outside_weight).mean(), opt, sched, params, losses, bar, step,
               s.max_lr)
    return losses


def train(s: HairToySettings) -> Path:
    """Run every stage and write the pipeline folder to ``s.output``; returns its path."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLInpaintPipeline

    start = time.monotonic()
    torch.manual_seed(s.seed)
    gen = torch.Generator().manual_seed(s.seed)
    data = render_set(s.num_images, s.seed)
    if s.base_from:
        prior = StableDiffusionXLInpaintPipeline.from_pretrained(s.base_from)
        vae, tokenizer, unet = prior.vae, prior.tokenizer, prior.unet.train()
        text_encoders = (prior.text_encoder.train(), prior.text_encoder_2.train())
        vae_mse = json.loads((Path(s.base_from) / "training_report.json").read_text()).get("vae_mse", float("nan"))
        log.info("going on from the base in %s", s.base_from)
    else:
        tokenizer = build_tokenizer(s.text_max_length, load_vocabulary().plain_words())
        vae = make_vae()
        vae_mse = train_vae(vae, data.pixels, s, gen)
        vae.eval()
        unet, text_encoders = make_unet(), make_text_encoders(tokenizer)
    latents = encode_latents(vae, data.pixels)
    if not s.base_from:
        vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    log.info("hair vae mse %.4f, latent scaling factor %.3f; the judge on its round trips: %s", vae_mse,
             vae.config.scaling_factor, round_trip_accuracy(vae))
    blanked = ((masked_image(to_unit(data.pixels), data.masks) + 1) * 127.5).round().to(torch.uint8)
    latents, masked_latents = (x * vae.config.scaling_factor for x in (latents, encode_latents(vae, blanked)))
    ids = tokenize(tokenizer, data.prompts)
    losses = train_denoiser(unet, text_encoders, latents, masked_latents, data.masks, (ids, ids), s, gen)
    scheduler = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                       steps_offset=1, timestep_spacing="leading")
    pipe = StableDiffusionXLInpaintPipeline(
        vae=vae, text_encoder=text_encoders[0].eval(), text_encoder_2=text_encoders[1].eval(), tokenizer=tokenizer,
        tokenizer_2=tokenizer, unet=unet.eval(), scheduler=scheduler, requires_aesthetics_score=False,
        force_zeros_for_empty_prompt=True, add_watermarker=False)
    weights = [p for model in (vae, unet, *text_encoders) for p in model.parameters()]
    check_finite_weights(weights, "the end of training", "vae_lr or max_lr")
    out = Path(s.output)
    pipe.save_pretrained(out, safe_serialization=True)
    if s.decoder_steps:
        log.info("decoder tuned; the judge on its round trips: %s", tune_decoder(out, data, s))
        pipe = StableDiffusionXLInpaintPipeline.from_pretrained(out)
    report = {"settings": asdict(s), "vae_mse": vae_mse, "vae_round_trip_judged": round_trip_accuracy(vae), "final_loss": float(np.mean(losses[-100:])),
              "base_minutes": round((time.monotonic() - start) / 60, 1), "torch_threads": torch.get_num_threads(),
              "base_judged": judged_accuracy(pipe, s.judge_count, guidance=s.judge_guidance)}
    log.info("saved the base in %s (%.1f min); judged with words: %s", out, report["base_minutes"],
             report["base_judged"])
    if s.adapter_steps:
        report["tryon"] = train_tryon(out, s)
    report["minutes"] = round((time.monotonic() - start) / 60, 1)
    (out / "training_report.json").write_text(json.dumps(report, indent=2))
    return out


def tryon_only(s: HairToySettings) -> Path:
    """Run only stage 2 on the base already saved in ``s.output``, adding its figures to the training report."""
    from diffusers import StableDiffusionXLInpaintPipeline

    out = Path(s.output)
    path = out / "training_report.json"
    report = json.loads(path.read_text()) if path.is_file() else {"settings": asdict(s)}
    if "base_judged" not in report:  # a base whose run stopped during stage 2: judge it here
        pipe = StableDiffusionXLInpaintPipeline.from_pretrained(out)
        pipe.set_progress_bar_config(disable=True)
        report.update(vae_round_trip_judged=round_trip_accuracy(pipe.vae),
                      base_judged=judged_accuracy(pipe, s.judge_count, guidance=s.judge_guidance))
    report["tryon"] = train_tryon(out, s)
    path.write_text(json.dumps(report, indent=2))
    return out


def train_tryon(base: Path, s: HairToySettings) -> dict:
    """Stage 2 with its [tiny] settings on a prepared toy set; saves ``base/hair_model.safetensors``, returns its figures."""
    import tempfile

    from diffusers import StableDiffusionXLInpaintPipeline

    from pipelines.hair import model as hair_model
    from training.hair.inpaint import run
    from training.hair.settings import inpaint_settings
    from training.prepare.hair import HairOptions, prepare_hair

    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="toy-tryon-") as tmp:
        root = Path(tmp)
        toy_hair.write_khairstyle(root / "images", root / "labels", s.adapter_portraits, seed=s.seed + 7)
        prepare_hair(HairOptions(images=root / "images", labels_dir=root / "labels", out=root / "data"), None)
        settings = inpaint_settings({"max_steps": s.adapter_steps, "seed": s.seed}, "tiny")
        if run(settings, root / "data", root / "run", "tiny", base=str(base)):
            raise RuntimeError(f"stage 2 on the toy set failed; see {root / 'run' / 'train.log'}")
        model = hair_model.load(root / "run" / "final" / "hair_model.safetensors")
    model.metadata["base_model"] = "toy-hair (the tiny profile's sdxl_inpaint)"
    hair_model.save(base / TRYON_FILE, model)
    pipe = StableDiffusionXLInpaintPipeline.from_pretrained(base)
    pipe.set_progress_bar_config(disable=True)
    n, g = s.judge_count, s.judge_guidance
    without = tryon_accuracy(pipe, None, reference=True, count=n, guidance=g)
    hair_model.install(pipe, model)
    figures = {"settings": asdict(settings), "minutes": round((time.monotonic() - start) / 60, 1),
               "words": tryon_accuracy(pipe, model, reference=False, count=n, guidance=g),
               "reference_without_adapters": without,
               "reference": tryon_accuracy(pipe, model, reference=True, count=n, guidance=g)}
    log.info("toy try-on model: %s", figures)
    return figures


def held_out_requests(count: int, seed: int) -> list[tuple[toy_hair.Portrait, toy_hair.Portrait]]:
    """(portrait, the same person with another colour and another texture) pairs, drawn apart from training."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        p = toy_hair.random_portrait(rng)
        color = rng.choice([c for c in toy_hair.COLORS if c != p.color])
        curl = next(c for c in toy_hair.CURLS if c != p.curl)
        pairs.append((p, p.with_hair(color=color, curl=curl)))
    return pairs


@torch.no_grad()
def judged_accuracy(pipe, count: int = 48, seed: int = 1_000, steps: int = 20, guidance: float = 4.0,
                    batch: int = 16, extra=None, prompt=toy_hair.prompt,
                    identity_cosines: list[float] | None = None) -> dict[str, float]:
    """Share of held-out try-ons whose hair (inside the portrait's hair mask) the toy judge reads as the requested
    colour and texture.

    ``extra(pairs)``: more pipeline arguments for a chunk of (portrait, target) pairs, e.g. adapter embeddings;
    ``prompt(target)``: the prompt asked; ``identity_cosines`` collects the toy identity cosine of each result's face.
    """
    from PIL import Image

    hits = {"color": 0, "texture": 0}
    pairs = held_out_requests(count, seed)
    for i in range(0, count, batch):
        chunk = pairs[i:i + batch]
        images = pipe(prompt=[prompt(target) for _, target in chunk],
                      image=[toy_hair.render(p) for p, _ in chunk],
                      mask_image=[Image.fromarray(inpainting_mask(p).astype(np.uint8) * 255) for p, _ in chunk],
                      height=toy_hair.SIZE, width=toy_hair.SIZE, num_inference_steps=steps, guidance_scale=guidance,
                      generator=torch.Generator().manual_seed(seed + i), **(extra(chunk) if extra else {})).images
        for image, (p, target) in zip(images, chunk):
            verdict = toy_hair.judge(image, toy_hair.hair_mask(p))
            hits["color"] += verdict.color == target.color
            hits["texture"] += verdict.curl == target.curl
            if identity_cosines is not None:
                found = toy_hair.face_identity(image)
                original = toy_hair.face_identity(toy_hair.render(p))[1]
                identity_cosines.append(float(found[1] @ original) if found else 0.0)
    return {k: round(v / count, 3) for k, v in hits.items()}


def tryon_accuracy(pipe, model, reference: bool, count: int = 48, seed: int = 2_000,
                   guidance: float = 7.5) -> dict[str, float]:
    """Judged accuracy of toy try-ons, and the toy identity cosine of the face before anything is blended back.

    ``reference``: the requested hair comes from another portrait's hair through the style adapter and the prompt
    names only the length; else the prompt asks for it and the style embedding is dropped (zero). ``model`` None
    runs the pipeline as it is, without adapters, for comparison.
    """
    from pipelines.hair.model import adapter_embeds
    from pipelines.hair.style import style_embedding
    from pipelines.hair.vocabulary import load as vocabulary
    from pipelines.models.registry import resolve
    from pipelines.models.runtime import default_cache_dir, load_model

    vgg = load_model(resolve("vgg16", "tiny", {}, default_cache_dir()), "cpu", torch.float32)
    texture = model.texture_encoder() if model is not None else None
    rng = random.Random(seed + 1)
    cosines: list[float] = []

    def extra(chunk):
        if model is None:
            return {}
        refs = [toy_hair.random_portrait(rng, color=t.color, curl=t.curl) for _, t in chunk]
        pixels = to_unit(torch.stack([torch.from_numpy(np.asarray(toy_hair.render(r))).permute(2, 0, 1) for r in refs]))
        masks = torch.stack([torch.from_numpy(inpainting_mask(r).astype(np.float32))[None] for r in refs])
        style = style_embedding(vgg, pixels, masks, texture)
        identity = torch.stack([torch.from_numpy(toy_hair.face_identity(toy_hair.render(p))[1]) for p, _ in chunk])
        return {"ip_adapter_image_embeds": adapter_embeds(identity, style if reference else style * 0, guidance=True)}

    def length_only(target: toy_hair.Portrait) -> str:
        return vocabulary().prompt({"length": target.length, "hair-width": "보통"})[0]

    # one portrait per call with adapters: the pipeline gives a batch's every prompt every reference (see tryon.paint)
    judged = judged_accuracy(pipe, count, seed, guidance=guidance, batch=1 if model is not None else 16, extra=extra, prompt=length_only if reference else toy_hair.prompt,
                             identity_cosines=cosines)
    return {**judged, "identity_cosine_before_blending": round(float(np.mean(cosines)), 3)}
