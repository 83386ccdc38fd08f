"""Full-size photo → anime model (ViT-B/16 + seed decoder, random weights) on a CUDA GPU: images/s, fp16.

    python bench/gpu_anime.py [--batch 16] [--repeats 20]

Anchor: AdaIN runs 15 fps at 512 px on a Titan X; the target here is >= 100 img/s at 224 px on an H100.
Needs CUDA; without it the script says so and exits 0. Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET = 100.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("skipped: no CUDA GPU visible (this benchmark measures the full-size model in fp16 on a GPU)")
        return 0
    import timm

    from pipelines.anime.model import FULL_DECODER_WIDTHS, AnimeStyleModel

    vit = timm.create_model("vit_base_patch16_224", pretrained=False)  # random weights: speed only
    model = AnimeStyleModel(vit, FULL_DECODER_WIDTHS).cuda().half().eval()
    content = torch.rand(args.batch, 3, 224, 224, device="cuda", dtype=torch.float16)
    style = torch.rand_like(content)
    with torch.no_grad():
        for _ in range(3):  # warm-up: cuDNN autotuning, allocator
            model(content, style)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(args.repeats):
            model(content, style)
        torch.cuda.synchronize()
    rate = args.batch * args.repeats / (time.perf_counter() - start)
    verdict = "meets" if rate >= TARGET else "misses"
    print(f"{torch.cuda.get_device_name(0)}: full anime model, fp16, batch {args.batch}: {rate:.0f} img/s at "
          f"224 px ({verdict} the {TARGET:.0f} img/s target; {rate / 15:.1f}x AdaIN's 15 fps anchor, which was "
          "at 512 px)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
