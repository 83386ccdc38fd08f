"""LoRA training speed (the trainer's default step vs a naive one) and peak VRAM, SD 1.5-sized UNet, 512 px, CUDA.

The models have SD 1.5's configs and random weights, so nothing is downloaded.

    python bench/gpu_train.py [--steps 20] [--warmup 3] [--repeats 2]

Both train the fashion preset's LoRA (rank 12 on attention, projections and resnet convs) with fp16 autocast and
batch 1 x 4 accumulation, timed in alternating windows (naive, default, naive, default, ...; medians printed):
- naive, as diffusers' train_text_to_image_lora.py: one image per forward, an SD 1.5-sized VAE and a CLIP
  ViT-L-sized text encoder run for every image, torch AdamW.
- default, as the trainer's defaults on CUDA: the update's 4 images in one forward (micro_batch_size=0), cached
  latents and text embeddings (neither the VAE nor the text encoder runs), 8-bit AdamW (bitsandbytes).
Then peak VRAM at batch 1 with gradient checkpointing and 8-bit AdamW; target <= 6 GB. Target ratio >= 2x.
Needs a CUDA GPU; without one it says so and exits.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
                 down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                   "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"))
SD15_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
                block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4)
CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
              num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu")
ACCUMULATION = 4  # every preset's batch 1 x 4
DEVICE, HALF = "cuda", torch.float16


def lora_unet(checkpointing: bool, channels_last: bool = False):
    """The SD 1.5-sized UNet in fp16 with the fashion LoRA (fp32 weights, as the trainer keeps them)."""
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig

    from training.lora.settings import resolve_settings

    s = resolve_settings("fashion")
    torch.manual_seed(0)
    with torch.device(DEVICE):  # initialised on the GPU: seconds, not a minute on the CPU
        unet = UNet2DConditionModel(**SD15_UNET).to(HALF)
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=s.rank, lora_alpha=s.alpha, lora_dropout=s.dropout,
                                target_modules=s.target_modules, init_lora_weights="gaussian"))
    params = [p for p in unet.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    if checkpointing:
        unet.enable_gradient_checkpointing()
    if channels_last:  # as the trainer does it: the base channels-last, the trained tensors contiguous
        unet.to(memory_format=torch.channels_last)
        for p in params:
            p.data = p.data.contiguous()
    unet.train()
    return unet, params


def adamw_8bit(params):
    import bitsandbytes as bnb

    return bnb.optim.AdamW8bit(params, lr=1e-4)


class Trainer:
    """One optimizer update of ACCUMULATION images per ``step()``, the naive way or the default way."""

    def __init__(self, naive: bool, checkpointing: bool = False, images_per_forward: int = ACCUMULATION,
                 channels_last: bool = False):
        self.naive, self.per_forward = naive, 1 if naive else images_per_forward
        self.unet, self.params = lora_unet(checkpointing, channels_last)
        self.optimizer = torch.optim.AdamW(self.params, lr=1e-4) if naive else adamw_8bit(self.params)
        self.scaler = torch.amp.GradScaler(DEVICE)
        if naive:
            from diffusers import AutoencoderKL
            from transformers import CLIPTextConfig, CLIPTextModel

            with torch.device(DEVICE):
                self.vae = AutoencoderKL(**SD15_VAE).to(HALF).requires_grad_(False)
                self.text_encoder = CLIPTextModel(CLIPTextConfig(**CLIP_L)).to(HALF).requires_grad_(False)
            self.pixels = torch.randn(1, 3, 512, 512, device=DEVICE, dtype=HALF)
            self.ids = torch.randint(0, CLIP_L["vocab_size"], (1, 77), device=DEVICE)
        else:  # what the latent and text caches hold
            self.latents = torch.randn(ACCUMULATION, 4, 64, 64, device=DEVICE)
            self.text = torch.randn(ACCUMULATION, 77, 768, device=DEVICE, dtype=HALF)

    def _inputs(self, rows: slice):
        if not self.naive:
            return self.latents[rows], self.text[rows]
        with torch.no_grad():
            latents = self.vae.encode(self.pixels).latent_dist.sample().float() * 0.18215
            return latents, self.text_encoder(self.ids)[0]

    def step(self) -> None:
        for start in range(0, ACCUMULATION, self.per_forward):
            latents, text = self._inputs(slice(start, start + self.per_forward))
            noise = torch.randn_like(latents)
            t = torch.randint(0, 1000, (len(latents),), device=DEVICE)
            with torch.autocast(DEVICE, dtype=HALF):
                pred = self.unet((latents + noise).half(), t, encoder_hidden_states=text).sample
            share = len(latents) / ACCUMULATION  # each image's loss counts 1/ACCUMULATION of the update
            self.scaler.scale(torch.nn.functional.mse_loss(pred.float(), noise) * share).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)


def steps_per_second(trainer: Trainer, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        trainer.step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step()
    torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def peak_vram_gib(make, steps: int) -> float:
    """Peak VRAM of ``steps`` updates of a freshly built trainer, everything else freed first."""
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    trainer = make()
    for _ in range(steps):
        trainer.step()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**30
    del trainer
    torch.cuda.empty_cache()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed updates per window")
    parser.add_argument("--warmup", type=int, default=3, help="untimed updates before each window")
    parser.add_argument("--repeats", type=int, default=2, help="windows per configuration (alternating)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA GPU here: skipped (run it on a machine with one)")
        return
    print(f"device: {torch.cuda.get_device_name(0)}")
    trainers = {"naive": Trainer(naive=True), "default": Trainer(naive=False),
                "default + channels-last": Trainer(naive=False, channels_last=True)}
    speeds: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in range(args.repeats):
        for name, trainer in trainers.items():
            speeds[name].append(steps_per_second(trainer, args.steps, args.warmup))
    n, d, c = (statistics.median(speeds[name]) for name in trainers)
    print(f"naive (1 image per forward, VAE + text encoder every image, AdamW): {n:.2f} steps/s")
    print(f"default (4 images per forward, cached latents and text, 8-bit AdamW): {d:.2f} steps/s")
    print(f"default + channels-last UNet: {c:.2f} steps/s ({c / d:.2f}x default)")
    print(f"default vs naive: {d / n:.2f}x (target >= 2x)")
    del trainers
    print(f"peak VRAM, default: {peak_vram_gib(lambda: Trainer(naive=False), 3):.2f} GiB")
    low = peak_vram_gib(lambda: Trainer(naive=False, checkpointing=True, images_per_forward=1), 3)
    print(f"peak VRAM, batch 1 with gradient checkpointing and 8-bit AdamW: {low:.2f} GiB (target <= 6 GB)")


if __name__ == "__main__":
    main()
