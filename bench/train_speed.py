"""LoRA trainer speed on the toy model with caches (VAE latents + text embeddings) vs. caching off.

Runs ``python -m training.lora`` twice in fresh processes (same data, seed and steps) and prints steps/s,
peak RSS and the ratio. Target: caches >= 1.5x faster. The cached run's latents are encoded before timing
starts (once per dataset, reused across runs), which is the point of the cache. ``--resolution`` repeats the
pair at other training sizes. ``--source-px`` sets the size of the dataset's JPEGs: a prepared fashion set keeps
its photos at full size, and without the cache every step decodes and resizes them again.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run(data: Path, out: Path, cache: bool, steps: int, batch: int, resolution: int) -> dict:
    flag = "true" if cache else "false"
    args = [sys.executable, "-m", "training.lora", "--preset", "fashion", "--data", str(data), "--output", str(out),
            "--profile", "tiny", "--max-steps", str(steps), "--set", f"cache_latents={flag}",
            "--set", f"cache_text_embeddings={flag}", "--set", f"batch_size={batch}",
            "--set", "gradient_accumulation_steps=1", "--set", "sample_steps=0", "--set", "val_fraction=0",
            "--set", "checkpointing_steps=0", "--set", f"resolution={resolution}"]
    subprocess.run(args, cwd=ROOT, check=True, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return json.loads((out / "report.json").read_text())


def main() -> None:
    from tests.conftest import render_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--resolution", type=int, nargs="+", default=[64],
                        help="training resolutions in px")
    parser.add_argument("--source-px", type=int, default=64, help="side of the dataset's JPEG photos")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="atelier-train-speed-"))
    os.environ.setdefault("ATELIER_CACHE", str(tmp / "cache"))
    data = render_dataset(tmp / "data", 64, size=args.source_px, suffix=".jpg")
    print(f"dataset: 64 JPEGs of {args.source_px} x {args.source_px} px")
    for px in args.resolution:
        cached = run(data, tmp / f"cached-{px}", True, args.steps, args.batch, px)
        plain = run(data, tmp / f"plain-{px}", False, args.steps, args.batch, px)
        for name, r in (("caches on ", cached), ("caches off", plain)):
            print(f"{px} px {name}: {r['steps_per_second']:.3f} steps/s, peak RSS {r['peak_rss_mb']:.0f} MB")
        print(f"{px} px speed-up with caches: {cached['steps_per_second'] / plain['steps_per_second']:.2f}x "
              "(target >= 1.5x)")


if __name__ == "__main__":
    main()
