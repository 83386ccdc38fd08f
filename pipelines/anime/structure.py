"""How much of a photo's structure a stylised result keeps: SSIM and edge correlation of their grey levels.

A style transfer that keeps the content shows the same edges in the same places; one that paints a texture over
everything (a model that never saw photo-like content) does not. Used by ``bench/anime_structure.py`` and the tests.
"""
from __future__ import annotations

import numpy as np
from PIL import Image


def _grey(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(image.convert("L").resize(size, Image.Resampling.BICUBIC), dtype=np.float64) / 255.0


def edge_correlation(content: Image.Image, result: Image.Image) -> float:
    """Pearson correlation of the Sobel edge magnitudes of both images (at the content's size); 1 = same edges."""
    from scipy import ndimage

    a, b = (_grey(image, content.size) for image in (content, result))
    ea, eb = (np.hypot(ndimage.sobel(g, 0), ndimage.sobel(g, 1)).ravel() for g in (a, b))
    if ea.std() == 0 or eb.std() == 0:
        return 0.0
    return float(np.corrcoef(ea, eb)[0, 1])


def ssim(content: Image.Image, result: Image.Image) -> float:
    """Structural similarity of the grey levels (at the content's size)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(*(_grey(image, content.size) for image in (content, result)), data_range=1.0))


def sample_photos() -> dict[str, Image.Image]:
    """Real photos that scikit-image ships (no download): a portrait, a still life, a cat, a street scene."""
    from skimage import data

    return {name: Image.fromarray(getattr(data, name)()) for name in ("astronaut", "coffee", "chelsea", "rocket")}
