"""Does the anime model keep a real photo's structure? SSIM and edge correlation, result vs photo.

    python bench/anime_structure.py [--model PATH ...]     (default: the shipped tiny default)

Four photos that scikit-image ships × the five shipped style images, through the Anime tab's stylizer (tiny
profile). Prints the mean and the lowest SSIM and edge correlation per model. Asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    from pipelines.anime.stylize import Stylizer
    from pipelines.anime.structure import edge_correlation, sample_photos, ssim
    from pipelines.anime.style_images import STYLE_DIR
    from pipelines.models.profile import choose_profile
    from pipelines.models.registry import ANIME_TINY
    from pipelines.models.runtime import Runtime
    from PIL import Image

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, nargs="*", default=[ANIME_TINY])
    args = parser.parse_args()
    runtime = Runtime(choose_profile("tiny"), cache_dir=Path(tempfile.mkdtemp(prefix="atelier-bench-")))
    stylize, photos = Stylizer(runtime), sample_photos()
    styles = [Image.open(p).convert("RGB") for p in sorted(STYLE_DIR.glob("*.png"))]
    for model in args.model:
        scores = [(ssim(photo, out), edge_correlation(photo, out))
                  for photo in photos.values() for style in styles for out in [stylize(model, photo, style)]]
        s, e = zip(*scores)
        print(f"{model}: {len(scores)} results; SSIM mean {sum(s) / len(s):.3f} (lowest {min(s):.3f}), "
              f"edge correlation mean {sum(e) / len(e):.3f} (lowest {min(e):.3f})")


if __name__ == "__main__":
    main()
