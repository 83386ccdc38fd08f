"""Images per second of the tiny photo → anime model at 224 px on the CPU (inference and one training step).

    OMP_NUM_THREADS=1 python bench/anime_speed.py [--batch 4] [--repeats 5]

Prints figures; asserts nothing (timings depend on the machine).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def timed(fn, repeats: int) -> float:
    fn()  # warm-up: first calls allocate and pick kernels
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    os.environ.setdefault("ATELIER_CACHE", tempfile.mkdtemp(prefix="atelier-bench-"))
    import torch

    from pipelines.anime.model import TINY_DECODER_WIDTHS, AnimeStyleModel
    from training.anime.loss import VGGFeatures, losses
    from training.anime.settings import resolve
    from training.anime.trainer import load_role

    vit, _ = load_role("vit", "tiny", "cpu")
    vgg, _ = load_role("vgg19", "tiny", "cpu")
    model = AnimeStyleModel(vit, TINY_DECODER_WIDTHS)
    loss_net, s = VGGFeatures(vgg, resolve().layer_indices()), resolve()
    content, style = torch.rand(args.batch, 3, 224, 224), torch.rand(args.batch, 3, 224, 224)
    opt = torch.optim.AdamW(model.decoder.parameters(), lr=1e-4)

    def infer():
        with torch.no_grad():
            model.eval()(content, style)

    def train_step():
        opt.zero_grad()
        losses(loss_net, model.train()(content, style), content, style, s)["total"].backward()
        opt.step()

    threads = torch.get_num_threads()
    for name, fn in (("inference", infer), ("training step", train_step)):
        seconds = timed(fn, args.repeats)
        print(f"tiny anime model, {name}: {args.batch / seconds:.1f} img/s at 224 px "
              f"(batch {args.batch}, {threads} CPU thread{'s' if threads > 1 else ''})")


if __name__ == "__main__":
    main()
