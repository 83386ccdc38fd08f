"""Images per second of ``training.prepare hair`` on toy portraits (64 px) and on 512 px photos, with the tiny
profile's real face model (dlib) for identity embeddings.

    python bench/hair_prepare.py [--count 60] [--workers 1 2]

The 512 px set is matplotlib's Grace Hopper photo with a hand-placed hair polygon, repeated. Each set is prepared
once per ``--workers`` value (1 = in this process; more = that many processes, each with its own face model).
Prints figures; asserts nothing (timings depend on the machine and its load).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def photo_set(images: Path, labels: Path, count: int) -> None:
    """``count`` copies of a 512 px portrait with a polygon over the hair above the face."""
    from matplotlib import cbook
    from PIL import Image

    hopper = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB").resize((512, 512))
    ring = [{"x": x, "y": y} for x, y in ((120, 150), (160, 40), (260, 10), (360, 40), (400, 150), (330, 110),
                                         (260, 90), (190, 110))]
    for folder in (images, labels):
        folder.mkdir(parents=True)
    for i in range(count):
        hopper.save(images / f"PH{i:04d}-001.jpg", quality=92)
        (labels / f"PH{i:04d}_001.json").write_text(json.dumps({"polygon1": json.dumps([ring]), "color": "블랙",
                                                                "curl": "곱슬", "length": "단발"}))


def timed(images: Path, labels: Path, out: Path, faces, workers: int) -> tuple[float, int]:
    import functools

    from pipelines.models import loaders, registry
    from training.prepare.hair import HairOptions, prepare_hair

    start = time.perf_counter()
    make_faces = functools.partial(loaders.load, "faces", registry.ROLES["faces"].tiny)
    report = prepare_hair(HairOptions(images=images, labels_dir=labels, out=out, workers=workers), faces, make_faces)
    return time.perf_counter() - start, len(report.kept)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=60)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = p.parse_args()
    from pipelines.hair import toy_hair
    from pipelines.models import loaders, registry

    faces = loaders.load("faces", registry.ROLES["faces"].tiny)
    root = Path(tempfile.mkdtemp(prefix="atelier-hair-bench-"))
    try:
        toy_hair.write_khairstyle(root / "toy-images", root / "toy-labels", args.count, seed=0)
        photo_set(root / "photo-images", root / "photo-labels", args.count)
        print(f"| set | workers | images | kept | seconds | images/s |\n|---|---|---|---|---|---|")
        for name in ("toy", "photo"):
            for workers in args.workers:
                out = root / f"{name}-out-{workers}"
                seconds, kept = timed(root / f"{name}-images", root / f"{name}-labels", out, faces, workers)
                size = "64 px toy portraits" if name == "toy" else "512 px photos"
                print(f"| {size} | {workers} | {args.count} | {kept} | {seconds:.2f} | {args.count / seconds:.1f} |")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
