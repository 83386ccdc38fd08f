"""The hub's generate vs the same diffusers call made directly, and the cost of switching LoRAs.

Prints figures (targets: hub/direct ≤ 1.03; a preloaded LoRA switch ≤ 5% of one generate); asserts nothing.
Usage: python bench/generate_overhead.py [--steps 20] [--repeats 7]  (tiny profile; trains a 4-step LoRA pair)
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_loras(folder: Path) -> list[Path]:
    """Two small LoRAs from the real trainer on rendered toy images."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import render_dataset
    from lora_runs import make_run

    data = render_dataset(folder / "data", 8)
    return [make_run(folder / "runs", data, name=f"bench-{i}", steps=2, seed=i) / "final" for i in range(2)]


def main() -> None:
    import torch

    from pipelines.generate import text_to_image
    from pipelines.generate.lora_adapters import adapters_for
    from pipelines.generate.lora_files import inspect
    from pipelines.models.profile import choose_profile
    from pipelines.models.runtime import Runtime

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=11)
    args = p.parse_args()
    logging.disable(logging.INFO)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        runtime = Runtime(profile=choose_profile("tiny"), cache_dir=Path(tmp) / "cache")
        pipe = runtime.model("sd15")
        pipe.set_progress_bar_config(disable=True)
        prompt = "a red square on a white background"
        s = text_to_image.GenerateSettings(prompt, steps=args.steps, width=64, height=64, seed=1)

        def direct():
            pipe(prompt=[prompt], negative_prompt=[s.negative_prompt], num_inference_steps=args.steps,
                 guidance_scale=s.cfg, width=64, height=64, generator=[torch.Generator("cpu").manual_seed(1)])

        def hub():
            text_to_image.run(runtime, s)

        hub(), direct()  # warm up both paths
        # interleave so drift on a shared machine hits both alike
        t_hub, t_direct = [], []
        for _ in range(args.repeats):
            t_hub.append(median_time(hub, 1))
            t_direct.append(median_time(direct, 1))
        hub_s, direct_s = statistics.median(t_hub), statistics.median(t_direct)
        print(f"generate, {args.steps} steps 64x64: hub {hub_s * 1000:.1f} ms, direct diffusers "
              f"{direct_s * 1000:.1f} ms, ratio {hub_s / direct_s:.3f} of medians, "
              f"{min(t_hub) / min(t_direct):.3f} of best runs (target <= 1.03)")

        a, b = (inspect(path, name=f"lora-{i}") for i, path in enumerate(make_loras(Path(tmp))))
        adapters = adapters_for(pipe)
        adapters.apply([(a, 1.0)], keep=[b])
        adapters.apply([(b, 1.0)], keep=[a])
        flip = [a, b]

        def switch_preloaded():
            flip.reverse()
            adapters.apply([(flip[0], 1.0)], keep=[flip[1]])

        def switch_reload():
            flip.reverse()
            adapters.apply([(flip[0], 1.0)])  # the other one is deleted, so the next switch reads the disk
            assert adapters.loads > loads_before[-1]
            loads_before.append(adapters.loads)

        preloaded = median_time(switch_preloaded, args.repeats * 3)
        adapters.apply([(a, 1.0)])  # only a is loaded, and the first reload switch goes to b
        flip[:] = [a, b]
        loads_before = [adapters.loads]
        reload = median_time(switch_reload, args.repeats * 3)
        from dataclasses import replace

        with_lora = median_time(lambda: text_to_image.run(runtime, replace(s, loras=[(a, 1.0)])), 3)
        print(f"LoRA switch: preloaded (set_adapters) {preloaded * 1000:.2f} ms, reload from disk "
              f"{reload * 1000:.1f} ms ({reload / preloaded:.0f}x)")
        print(f"switch as a share of one generate ({with_lora * 1000:.0f} ms with a LoRA): preloaded "
              f"{100 * preloaded / with_lora:.2f}%, reload {100 * reload / with_lora:.1f}% (target <= 5%)")


if __name__ == "__main__":
    main()
