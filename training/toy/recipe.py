"""Train the embedded toy Stable Diffusion from scratch on the CPU: ``python -m training.toy``.

Stages: render the toy world → train a small AutoencoderKL → cache latents → train the text encoder and
UNet jointly on the cached latents → go on with more caption dropout (guidance) → tune the VAE decoder alone on open
colours → save a StableDiffusionPipeline folder (default ``assets/toy-sd``). Deterministic for a given seed on a given
machine. ``--guidance-only-from`` / ``--decoder-only-from PIPELINE`` run one of the last two stages alone on a saved
pipeline (the shipped model's were run that way, in turn).
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from pipelines import toy_world
from training.runs.cli import OneLineParser, UsageError, check_output, refuse
from training.runs.folder import NonFiniteLoss, check_finite, check_finite_weights
from pipelines.models.toy_tokenizer import build_tokenizer

# diffusers is imported where it is used: its import can log warnings (bitsandbytes) that would spoil the one-line
# refusal of a bad command line.
if TYPE_CHECKING:
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel

log = logging.getLogger(__name__)

# Unconditional captions: the empty prompt and typical negative-prompt words, so that text the world
# never shows (such as the Generate tab's default negative prompt) means "no condition" to the model.
UNCONDITIONAL_CAPTIONS = ("", "blurry, low quality, distorted", "bad anatomy, deformed, watermark, text",
                          "worst quality, jpeg artifacts, ugly", "extra limbs, multiple people, cropped")


@dataclass
class ToySettings:
    seed: int = 0
    num_images: int = 12_000
    vae_steps: int = 800
    vae_batch_size: int = 32
    vae_lr: float = 2e-3
    unet_steps: int = 2_600
    batch_size: int = 64
    max_lr: float = 6e-4
    caption_dropout: float = 0.1
    text_max_length: int = 32
    bf16_autocast: bool = True  # about 1.7× faster on CPUs with AVX512-BF16; weights stay fp32
    # Last stage: the decoder alone learns open colours (random RGB scenes mixed with the palette), so that
    # colours the world never names, e.g. DreamBooth's pink, come back out. The encoder stays frozen, so the
    # latents the UNet learnt keep their meaning. (Open colours in the first VAE stage cost palette quality.)
    open_color_images: int = 4_000
    decoder_steps: int = 600
    decoder_lr: float = 3e-4
    decoder_open_fraction: float = 0.25  # of each batch; the rest keeps the palette sharp
    # Guidance stage: the UNet and text encoder go on over a fresh draw of the world with twice the caption dropout,
    # so that the unconditional prediction CFG subtracts is learnt as well as the conditional one (joint accuracy at
    # CFG 7.5: 0.926 before, 0.958 after; 0.986 at 2.5 both).
    guidance_steps: int = 600
    guidance_dropout: float = 0.2
    guidance_lr: float = 2e-4
    output: str = "assets/toy-sd"


def render_world(n: int, seed: int) -> tuple[torch.Tensor, list[str]]:
    """n random scenes as a uint8 tensor (n, 3, 64, 64) and their captions."""
    rng = random.Random(seed)
    scenes = [toy_world.random_scene(rng) for _ in range(n)]
    pixels = np.stack([np.asarray(toy_world.render(s)) for s in scenes])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous(), [s.caption for s in scenes]


def render_open_colors(n: int, seed: int) -> torch.Tensor:
    """n scenes with uniformly random RGB fill and background, as uint8 (n, 3, 64, 64)."""
    rng = random.Random(seed)
    pixels = np.stack([np.asarray(toy_world.paint_open(rng)) for _ in range(n)])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()


def to_unit(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.float() / 127.5 - 1.0


def make_vae() -> AutoencoderKL:
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
                         up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(32, 64, 64),
                         layers_per_block=1, latent_channels=4, norm_num_groups=32, sample_size=64)


def make_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=256,
                            num_hidden_layers=2, num_attention_heads=4, projection_dim=64,
                            max_position_embeddings=tokenizer.model_max_length,
                            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id)
    return CLIPTextModel(config)


def make_unet() -> UNet2DConditionModel:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(64, 128),
                                down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                                # diffusers' attention_head_dim is the number of heads here: (2, 4) gives 32-wide heads,
                                # much faster on the CPU than many 8-wide ones.
                                cross_attention_dim=64, attention_head_dim=(2, 4), norm_num_groups=32)


def autocast(s) -> torch.autocast:
    """bf16 autocast on the CPU when ``s.bf16_autocast`` (weights stay fp32)."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=s.bf16_autocast)


def update(loss: torch.Tensor, opt, sched, params: list, losses: list[float], bar, step: int, lr: float,
           what: str = "UNet", setting: str = "max_lr") -> None:
    """One update: record the loss (stopping on NaN), clip gradients to 1, step the optimiser and schedule.

    ``what`` and ``setting``: the model trained and the learning-rate setting a NaN's message names.
    """
    losses.append(loss.item())
    check_finite(losses[-1], f"{what} loss", f"{what} step {step}", f"{setting} (now {lr:g})")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    sched.step()
    bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")


def train_vae(vae: AutoencoderKL, pixels: torch.Tensor, s: ToySettings, gen: torch.Generator) -> float:
    """Reconstruction MSE plus a tiny KL term; returns the mean MSE of the last 50 steps."""
    opt = torch.optim.AdamW(vae.parameters(), lr=s.vae_lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s.vae_lr, total_steps=s.vae_steps)
    recent: list[float] = []
    for step in (bar := tqdm(range(1, s.vae_steps + 1), desc="vae")):
        batch = to_unit(pixels[torch.randint(len(pixels), (s.vae_batch_size,), generator=gen)])
        with autocast(s):
            posterior = vae.encode(batch).latent_dist
            recon = vae.decode(posterior.sample(generator=gen)).sample
        mse = F.mse_loss(recon.float(), batch)
        loss = mse + 1e-6 * posterior.kl().mean()
        check_finite(loss.item(), "VAE loss", f"VAE step {step}", f"vae_lr (now {s.vae_lr:g})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        recent = (recent + [mse.item()])[-50:]
        bar.set_postfix(mse=f"{np.mean(recent):.4f}")
    return float(np.mean(recent))


@torch.no_grad()
def encode_latents(vae: AutoencoderKL, pixels: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    chunks = [vae.encode(to_unit(pixels[i:i + batch_size])).latent_dist.mean
              for i in tqdm(range(0, len(pixels), batch_size), desc="latents")]
    return torch.cat(chunks)


def decoder_optimiser(vae: AutoencoderKL, lr: float, steps: int) -> tuple[list, torch.optim.Optimizer, Any]:
    """(parameters, AdamW, one-cycle schedule) for training the VAE's decoder alone; the encoder is frozen."""
    vae.requires_grad_(False)
    params = [*vae.decoder.parameters(), *vae.post_quant_conv.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr)
    return params, opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)


def tune_decoder(vae: AutoencoderKL, pixels: torch.Tensor, s: ToySettings) -> dict[str, float]:
    """Train the decoder alone on palette and open-colour scenes; returns the recent MSE of each kind.

    Draws from its own generator, so running this stage on a saved pipeline (``--decoder-only-from``) gives
    what the whole recipe gives.
    """
    gen = torch.Generator().manual_seed(s.seed + 1)
    open_pixels = render_open_colors(s.open_color_images, s.seed + 1)
    params, opt, sched = decoder_optimiser(vae, s.decoder_lr, s.decoder_steps)
    n_open = max(1, round(s.vae_batch_size * s.decoder_open_fraction))
    n_palette = s.vae_batch_size - n_open
    recent: list[tuple[float, float]] = []
    vae.train()
    for step in (bar := tqdm(range(1, s.decoder_steps + 1), desc="decoder (open colours)")):
        batch = to_unit(torch.cat([pixels[torch.randint(len(pixels), (n_palette,), generator=gen)],
                                   open_pixels[torch.randint(len(open_pixels), (n_open,), generator=gen)]]))
        with torch.no_grad():
            latents = vae.encode(batch).latent_dist.sample(generator=gen)
        with autocast(s):
            recon = vae.decode(latents).sample
        errors = F.mse_loss(recon.float(), batch, reduction="none").mean((1, 2, 3))
        loss = errors.mean()
        check_finite(loss.item(), "decoder loss", f"decoder step {step}", f"decoder_lr (now {s.decoder_lr:g})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        recent = (recent + [(errors[:n_palette].mean().item(), errors[n_palette:].mean().item())])[-50:]
        palette_mse, open_mse = np.mean(recent, axis=0)
        bar.set_postfix(palette=f"{palette_mse:.4f}", open=f"{open_mse:.4f}")
    vae.eval()
    return {"palette_mse": float(palette_mse), "open_mse": float(open_mse)}


@torch.no_grad()
def new_concept_round_trip(vae: AutoencoderKL) -> dict[str, str | None]:
    """The judge's colour for a square of each new-concept colour after encoding and decoding (ideally its own)."""
    rng = random.Random(0)
    palette = {**toy_world.COLORS, **toy_world.NEW_CONCEPT_COLORS}
    out = {}
    for name in toy_world.NEW_CONCEPT_COLORS:
        image = toy_world.render(toy_world.random_scene(rng, color=name, shape="square", background="white"))
        x = to_unit(torch.from_numpy(np.array(image)).permute(2, 0, 1)[None])
        recon = ((vae.decode(vae.encode(x).latent_dist.mean).sample[0].clamp(-1, 1) + 1) * 127.5).round()
        out[name] = toy_world.judge(Image.fromarray(recon.byte().permute(1, 2, 0).numpy()), palette).color
    return out


def tokenize(tokenizer: CLIPTokenizer, texts: list[str] | tuple[str, ...]) -> torch.Tensor:
    return tokenizer(list(texts), padding="max_length", max_length=tokenizer.model_max_length,
                     truncation=True, return_tensors="pt").input_ids


def train_denoiser(unet: UNet2DConditionModel, text_encoder: CLIPTextModel, latents: torch.Tensor,
                   ids: torch.Tensor, uncond_ids: torch.Tensor, s: ToySettings,
                   gen: torch.Generator) -> list[float]:
    """Epsilon-prediction on cached latents, text encoder trained jointly; returns the loss per step."""
    from diffusers import DDPMScheduler

    noise_scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=s.max_lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s.max_lr, total_steps=s.unet_steps)
    losses: list[float] = []
    for step in (bar := tqdm(range(1, s.unet_steps + 1), desc="unet")):
        idx = torch.randint(len(latents), (s.batch_size,), generator=gen)
        x0, batch_ids = latents[idx], ids[idx].clone()
        drop = torch.rand(s.batch_size, generator=gen) < s.caption_dropout
        batch_ids[drop] = uncond_ids[torch.randint(len(uncond_ids), (int(drop.sum()),), generator=gen)]
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(noise_scheduler.config.num_train_timesteps, (s.batch_size,), generator=gen)
        noisy = noise_scheduler.add_noise(x0, noise, t)
        with autocast(s):
            pred = unet(noisy, t, encoder_hidden_states=text_encoder(batch_ids)[0]).sample
        update(F.mse_loss(pred.float(), noise), opt, sched, params, losses, bar, step, s.max_lr)
    return losses


def train(s: ToySettings) -> Path:
    """Run every stage and write the pipeline folder; returns its path."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    start = time.monotonic()
    torch.manual_seed(s.seed)
    gen = torch.Generator().manual_seed(s.seed)
    tokenizer = build_tokenizer(s.text_max_length)
    pixels, captions = render_world(s.num_images, s.seed)
    vae = make_vae()
    vae_mse = train_vae(vae, pixels, s, gen)
    vae.eval()
    latents = encode_latents(vae, pixels)
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    latents = latents * vae.config.scaling_factor
    log.info("vae mse %.4f, latent scaling factor %.3f", vae_mse, vae.config.scaling_factor)

    unet, text_encoder = make_unet(), make_text_encoder(tokenizer)
    losses = train_denoiser(unet, text_encoder, latents, tokenize(tokenizer, captions),
                            tokenize(tokenizer, UNCONDITIONAL_CAPTIONS), s, gen)
    scheduler = DPMSolverMultistepScheduler(beta_schedule="scaled_linear", beta_start=0.00085,
                                            beta_end=0.012, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder.eval(), tokenizer=tokenizer,
                                   unet=unet.eval(), scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    report = {"settings": asdict(s), "vae_mse": vae_mse, "final_loss": float(np.mean(losses[-100:])),
              "guidance_stage": guidance_stage(pipe, s)}
    return _finish(pipe, pixels, s, report, start)


def guidance_stage(pipe: StableDiffusionPipeline, s: ToySettings) -> dict[str, float]:
    """Train the UNet and text encoder on, with ``guidance_*`` settings, over the world drawn with seed + 1."""
    g = replace(s, unet_steps=s.guidance_steps, caption_dropout=s.guidance_dropout, max_lr=s.guidance_lr,
                seed=s.seed + 1)
    pixels, captions = render_world(g.num_images, g.seed)
    latents = encode_latents(pipe.vae, pixels) * pipe.vae.config.scaling_factor
    pipe.unet.train()
    pipe.text_encoder.train()
    losses = train_denoiser(pipe.unet, pipe.text_encoder, latents, tokenize(pipe.tokenizer, captions),
                            tokenize(pipe.tokenizer, UNCONDITIONAL_CAPTIONS), g, torch.Generator().manual_seed(g.seed))
    pipe.unet.eval()
    pipe.text_encoder.eval()
    return {"final_loss": float(np.mean(losses[-100:]))}


def tune_saved_guidance(source: Path, s: ToySettings) -> Path:
    """Run only the guidance stage on a saved pipeline and save it to ``s.output`` (its VAE as it was)."""
    start = time.monotonic()
    pipe, report = _load_saved(source)
    report["guidance_stage"] = {**guidance_stage(pipe, s), "settings": asdict(s),
                                "minutes": (time.monotonic() - start) / 60}
    return _save(pipe, report, s, start)


def tune_saved_decoder(source: Path, s: ToySettings) -> Path:
    """Run only the last stage (open-colour decoder) on a pipeline saved by an earlier ``train``."""
    start = time.monotonic()
    pipe, report = _load_saved(source)
    report["decoder_stage_settings"] = asdict(s)
    return _finish(pipe, render_world(s.num_images, s.seed)[0], s, report, start)


def _load_saved(source: Path) -> tuple[StableDiffusionPipeline, dict]:
    """A pipeline saved by this recipe and its training report (empty when it has none)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(source, safety_checker=None, requires_safety_checker=False)
    earlier = source / "training_report.json"
    return pipe, json.loads(earlier.read_text()) if earlier.is_file() else {}


def _finish(pipe: StableDiffusionPipeline, pixels: torch.Tensor, s: ToySettings, report: dict, start: float) -> Path:
    before = new_concept_round_trip(pipe.vae)
    report["decoder_stage"] = {**tune_decoder(pipe.vae, pixels, s), "new_concept_judged_before": before,
                               "new_concept_judged_after": new_concept_round_trip(pipe.vae),
                               "minutes": (time.monotonic() - start) / 60}
    log.info("decoder stage: %s", report["decoder_stage"])
    return _save(pipe, report, s, start)


def _save(pipe: StableDiffusionPipeline, report: dict, s: ToySettings, start: float) -> Path:
    """Write the pipeline and its report to ``s.output``, refusing weights that went non-finite."""
    weights = [p for model in (pipe.vae, pipe.unet, pipe.text_encoder) for p in model.parameters()]
    check_finite_weights(weights, "the end of training", "vae_lr, max_lr, guidance_lr or decoder_lr")
    out = Path(s.output)
    pipe.save_pretrained(out, safe_serialization=True)
    report.setdefault("minutes", (time.monotonic() - start) / 60)
    report["torch_threads"] = torch.get_num_threads()
    (out / "training_report.json").write_text(json.dumps(report, indent=2))
    log.info("saved %s", out)
    return out


def check(s: ToySettings) -> ToySettings:
    """``s`` unchanged, or a UsageError naming the first count, size or rate no run can use."""
    for key, value in asdict(s).items():
        if key.endswith(("_images", "_steps", "_size", "_lr", "_length")) and not value > 0:
            raise UsageError(f"--{key.replace('_', '-')} must be positive, not {value}.")
    return s


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m training.toy", description=__doc__.splitlines()[0])
    defaults = ToySettings()
    for name, value in asdict(defaults).items():
        flag = f"--{name.replace('_', '-')}"
        if isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        else:
            parser.add_argument(flag, type=type(value), default=value)
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--decoder-only-from", type=Path, metavar="PIPELINE",
                      help="run only the last stage (open-colour decoder) on this saved toy pipeline")
    only.add_argument("--guidance-only-from", type=Path, metavar="PIPELINE",
                      help="run only the guidance stage (UNet and text encoder) on this saved toy pipeline")
    try:
        args = vars(parser.parse_args(argv))
        stages = {"decoder": args.pop("decoder_only_from"), "guidance": args.pop("guidance_only_from")}
        stage, source = next(((k, v) for k, v in stages.items() if v), (None, None))
        s = check(ToySettings(**args))
        if source and not (source / "model_index.json").is_file():
            raise UsageError(f"--{stage}-only-from {source} is not a saved pipeline folder (no model_index.json).")
        check_output(Path(s.output))  # before hours of training, not at the final save
    except UsageError as err:
        return refuse("training.toy", err)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        if stage == "decoder":
            tune_saved_decoder(source, s)
        elif stage == "guidance":
            tune_saved_guidance(source, s)
        else:
            train(s)
    except NonFiniteLoss as err:
        log.error("%s", err)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
