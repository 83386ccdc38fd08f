"""Hair inpainting training step (seed 000, stage 2) on an SDXL-sized 9-channel UNet: s/step and peak VRAM, CUDA.

The UNet has SDXL's config with 9 input channels (noisy latent 4 + mask 1 + masked-image latent 4) and random
weights, so nothing is downloaded. Trained as stage 2 trains it: a LoRA on the UNet plus two IP-Adapters (identity
and style tokens, 4 each) through diffusers' own attention processors; fp16 autocast with fp32 trained weights,
gradient checkpointing, batch 1, 8-bit AdamW, a mask-weighted noise loss.

    python bench/gpu_hair.py [--steps 10] [--warmup 3] [--sizes 1024,768] [--rank 16]

Goal: peak VRAM <= 22 GB at 1024 px, so that a 24 GB card (3090/4090) trains it. Without CUDA it says so and exits.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SDXL_INPAINT_UNET = dict(
    sample_size=128, in_channels=9, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
    use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816)
EMBED_DIMS = {"identity": 512, "style": 1024}  # a face-recognition vector; a CLIP ViT-H image embedding
DEVICE, HALF = "cuda", torch.float16


def hair_unet(rank: int, config: dict):
    """The UNet in fp16, gradient checkpointing on, with a LoRA and two fresh IP-Adapters (fp32, trained)."""
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig

    from pipelines.hair import ip_adapters

    torch.manual_seed(0)
    with torch.device(DEVICE):
        unet = UNet2DConditionModel(**config).to(HALF)
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    states = [ip_adapters.fresh_state(unet, dim, seed=i) for i, dim in enumerate(EMBED_DIMS.values())]
    adapter_params = ip_adapters.attach(unet, states, scales=[1.0, 1.0])
    params = [p for p in unet.parameters() if p.requires_grad]
    assert all(any(p is q for q in params) for p in adapter_params)
    for p in params:
        p.data = p.data.float()
    unet.enable_gradient_checkpointing()
    unet.train()
    return unet, params


def optimizer_for(params):
    try:
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, lr=1e-4), "8-bit AdamW"
    except ImportError:
        return torch.optim.AdamW(params, lr=1e-4, fused=True), "fused AdamW (bitsandbytes missing)"


def inputs(size: int, cross_dim: int):
    side = size // 8
    noisy = torch.randn(1, 4, side, side, device=DEVICE)
    mask = (torch.rand(1, 1, side, side, device=DEVICE) > 0.5).float()
    masked_latent = torch.randn(1, 4, side, side, device=DEVICE)
    cond = dict(encoder_hidden_states=torch.randn(1, 77, cross_dim, device=DEVICE, dtype=HALF),
                added_cond_kwargs={"text_embeds": torch.randn(1, 1280, device=DEVICE, dtype=HALF),
                                   "time_ids": torch.tensor([[size, size, 0, 0, size, size]], device=DEVICE,
                                                            dtype=HALF),
                                   "image_embeds": [torch.randn(1, 1, dim, device=DEVICE, dtype=HALF)
                                                    for dim in EMBED_DIMS.values()]})
    return torch.cat([noisy, mask, masked_latent], 1), mask, cond


def measure(size: int, steps: int, warmup: int, rank: int, config: dict) -> tuple[float, float, str]:
    """Seconds per step and peak VRAM (GiB) of training at ``size`` px, from a fresh model."""
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    unet, params = hair_unet(rank, config)
    optimizer, name = optimizer_for(params)
    scaler = torch.amp.GradScaler(DEVICE)
    latents, mask, cond = inputs(size, config["cross_attention_dim"])
    target = torch.randn(1, 4, size // 8, size // 8, device=DEVICE)
    t = torch.tensor([500], device=DEVICE)

    def step():
        with torch.autocast(DEVICE, dtype=HALF):
            pred = unet(latents.half(), t, **cond).sample
        loss = ((pred.float() - target) ** 2 * mask).sum() / mask.sum().clamp(min=1) / 4  # MaskAwareLoss
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    peak = torch.cuda.max_memory_allocated() / 2**30
    del unet, params, optimizer
    torch.cuda.empty_cache()
    return seconds, peak, name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--sizes", default="1024,768")
    parser.add_argument("--rank", type=int, default=16)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA GPU here: skipped (run it on a machine with one)")
        return
    print(f"device: {torch.cuda.get_device_name(0)}; SDXL-sized 9-channel UNet, LoRA rank {args.rank} + 2 "
          "IP-Adapters, fp16 autocast, gradient checkpointing, batch 1")
    for size in (int(s) for s in args.sizes.split(",")):
        seconds, peak, name = measure(size, args.steps, args.warmup, args.rank, SDXL_INPAINT_UNET)
        verdict = "meets" if peak <= 22 else "misses"
        print(f"{size} px: {seconds:.3f} s/step, peak VRAM {peak:.2f} GiB ({name}; {verdict} the 22 GB goal)")


if __name__ == "__main__":
    main()
