"""LoRA training step on an SD 1.5-shaped UNet (random weights, real config) at 512 px on a CUDA GPU.

batch 1, fp16 autocast, gradient checkpointing, 8-bit AdamW (bitsandbytes), fashion LoRA targets (rank 12).
Prints it/s and peak VRAM; target peak <= 6 GB. Needs a CUDA GPU; prints why it skips otherwise.
"""
from __future__ import annotations

import time

import torch

SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
                 down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                   "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"))


def main(steps: int = 30, warmup: int = 5) -> None:
    if not torch.cuda.is_available():
        print("no CUDA GPU here: skipped (run it on a machine with one)")
        return
    import bitsandbytes as bnb
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig

    from training.lora.settings import LoraSettings

    torch.manual_seed(0)
    s = LoraSettings()
    unet = UNet2DConditionModel(**SD15_UNET).to("cuda", torch.float16)
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=s.rank, lora_alpha=s.alpha, lora_dropout=s.dropout,
                                target_modules=s.target_modules, init_lora_weights="gaussian"))
    params = [p for p in unet.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    unet.enable_gradient_checkpointing()
    unet.train()
    optimizer = bnb.optim.AdamW8bit(params, lr=s.learning_rate)
    scaler = torch.amp.GradScaler("cuda")
    latents = torch.randn(1, 4, 64, 64, device="cuda")
    text = torch.randn(1, 77, 768, device="cuda", dtype=torch.float16)
    torch.cuda.reset_peak_memory_stats()
    for i in range(warmup + steps):
        if i == warmup:
            torch.cuda.synchronize()
            start = time.perf_counter()
        t = torch.randint(0, 1000, (1,), device="cuda")
        with torch.autocast("cuda", dtype=torch.float16):
            pred = unet(latents.half(), t, encoder_hidden_states=text).sample
        loss = torch.nn.functional.mse_loss(pred.float(), latents)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    print(f"device: {torch.cuda.get_device_name(0)}")
    print(f"LoRA params: {sum(p.numel() for p in params) / 1e6:.2f} M (rank {s.rank}, {len(s.target_modules)} module types)")
    print(f"it/s: {steps / seconds:.2f}")
    print(f"peak VRAM: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB (target <= 6 GB)")


if __name__ == "__main__":
    main()
