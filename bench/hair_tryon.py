"""Seconds per hair try-on in the live profile (tiny: the toy hair model on 64 px toy portraits), as the Hair tab
and ``/hair_tryon`` run it: automatic mask, identity, style, painting, blending, identity score.

    python bench/hair_tryon.py [--profile tiny] [--count 8] [--steps 20]

The first call (loading the base and the hair model) is timed apart from the warm ones. On toy portraits the judge's
verdict (requested colour and texture read back from the result) is printed too. Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    from pipelines.hair import toy_hair
    from pipelines.hair.service import HairTryOn, Request
    from pipelines.models.profile import choose_profile
    from pipelines.models.runtime import Runtime, default_cache_dir

    runtime = Runtime(profile=choose_profile(args.profile), overrides={}, cache_dir=default_cache_dir())
    start = time.perf_counter()
    tryon = HairTryOn(runtime, Path(runtime.model("hair")))
    tryon.pipe.set_progress_bar_config(disable=True)
    load = time.perf_counter() - start
    rng = random.Random(0)
    seconds, hits = [], 0
    for i in range(args.count + 1):
        p = toy_hair.random_portrait(rng)
        target = p.with_hair(color=rng.choice([c for c in toy_hair.COLORS if c != p.color]),
                             curl=next(c for c in toy_hair.CURLS if c != p.curl))
        start = time.perf_counter()
        result = tryon(Request(toy_hair.render(p), color=target.color, curl=target.curl, steps=args.steps, seed=i))
        took = time.perf_counter() - start
        verdict = toy_hair.judge(result.image, toy_hair.hair_mask(p))
        if i == 0:
            first = took
            continue
        seconds.append(took)
        hits += (verdict.color, verdict.curl) == (target.color, target.curl)
    print(f"profile {runtime.profile.name}, device {runtime.profile.device}, {args.steps} steps, "
          f"{toy_hair.SIZE} px toy portraits")
    print(f"load (base + hair model): {load:.2f} s; first try-on: {first:.2f} s")
    print(f"warm try-on: median {statistics.median(seconds):.2f} s, min {min(seconds):.2f} s over {len(seconds)}")
    print(f"judged: colour and texture as asked in {hits}/{len(seconds)}")


if __name__ == "__main__":
    main()
