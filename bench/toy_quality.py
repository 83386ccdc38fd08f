"""How often the toy model draws what it is asked for, judged from pixels.

For every colour×shape×background prompt: K images (fixed seeds, 25 steps, the Generate tab's default CFG
and negative prompt) through the hub's own generate call. Prints colour, shape, background and joint
accuracy and seconds per image. Target: joint accuracy >= 0.95.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pipelines import toy_world  # noqa: E402
from pipelines.models.profile import choose_profile  # noqa: E402
from pipelines.models.registry import parse_overrides  # noqa: E402
from pipelines.models.runtime import Runtime  # noqa: E402
from pipelines.generate.text_to_image import GenerateSettings, defaults_for, generate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", type=int, default=4, help="images per prompt")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--cfg", type=float, default=None, help="default: the Generate tab's default")
    parser.add_argument("--model", default=None, help="a toy-sd folder other than assets/toy-sd")
    parser.add_argument("--save", default=None, help="folder to save a contact sheet of every image")
    args = parser.parse_args()

    overrides = parse_overrides([f"sd15={Path(args.model).resolve()}"]) if args.model else {}
    runtime = Runtime(choose_profile("tiny"), overrides, Path(tempfile.mkdtemp(prefix="atelier-bench-")))
    runtime.model("sd15")  # load before timing
    base = defaults_for(runtime.profile.name)
    cfg = base.cfg if args.cfg is None else args.cfg
    hits, misses, images = Counter(), Counter(), []
    start = time.monotonic()
    for n, (color, shape, background) in enumerate(toy_world.all_prompts()):
        prompt = toy_world.caption(color, shape, background)
        settings = GenerateSettings(prompt, base.negative_prompt, args.steps, cfg, 1000 * n,
                                    base.width, base.height, args.k)
        batch, _ = generate(runtime, settings)
        images += batch
        for image in batch:
            v = toy_world.judge(image)
            hits.update(color=v.color == color, shape=v.shape == shape, background=v.background == background,
                        joint=v.matches(color, shape, background))
            if not v.matches(color, shape, background):
                misses[f"{prompt} -> {v.color} {v.shape} on {v.background}"] += 1
    seconds = time.monotonic() - start
    total = len(images)
    print(f"images: {total} ({args.k} per prompt, {args.steps} steps, CFG {cfg})")
    for key in ("color", "shape", "background", "joint"):
        print(f"{key:>10} accuracy: {hits[key] / total:.3f}")
    print(f"seconds per image: {seconds / total:.3f}")
    for miss, count in misses.most_common(8):
        print(f"  miss x{count}: {miss}")
    if args.save:
        sheet = contact_sheet(images, columns=args.k * 6)
        Path(args.save).mkdir(parents=True, exist_ok=True)
        sheet.save(Path(args.save) / "toy_quality.png")


def contact_sheet(images, columns: int):
    from PIL import Image

    w, h = images[0].size
    rows = -(-len(images) // columns)
    sheet = Image.new("RGB", (columns * w, rows * h), "white")
    for i, image in enumerate(images):
        sheet.paste(image, ((i % columns) * w, (i // columns) * h))
    return sheet


if __name__ == "__main__":
    main()
