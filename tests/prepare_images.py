"""Image files for the dataset-preparation tests: sharp toy photos, blurred ones, and every kind of bad file."""
from __future__ import annotations

import random
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from pipelines import toy_world


def photo(seed: int, size: tuple[int, int] = (320, 320), **attributes) -> Image.Image:
    """A toy-world scene with sensor-like noise, so it is as sharp as a photo (Laplacian variance ~50)."""
    scene = toy_world.random_scene(random.Random(seed), **attributes)
    image = toy_world.render(scene, max(size)).resize(size, Image.Resampling.LANCZOS)
    noise = np.random.default_rng(seed).normal(0, 8, (size[1], size[0], 3))
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8))


def distinct_photos(n: int, size: tuple[int, int] = (320, 320)) -> list[Image.Image]:
    """``n`` photos of different toy-world (colour, shape, background) triples, so none is a near duplicate."""
    return [photo(i, size, color=c, shape=s, background=b) for i, (c, s, b) in enumerate(toy_world.all_prompts()[:n])]


def blurry(seed: int, size: tuple[int, int] = (320, 320)) -> Image.Image:
    return photo(seed, size).filter(ImageFilter.GaussianBlur(4))


def with_text(image: Image.Image, text: str = "SPIRITED AWAY 2001") -> Image.Image:
    """A caption across the middle, white with a black outline, 10% of the height."""
    image = image.copy()
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(8, image.height // 10))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    xy = ((image.width - (right - left)) // 2, (image.height - (bottom - top)) // 2)
    draw.text(xy, text, font=font, fill="white", stroke_width=2, stroke_fill="black")
    return image


def save(image: Image.Image, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def truncated(path: Path, seed: int = 0) -> Path:
    """A JPEG cut off after half its bytes."""
    save(photo(seed), path, format="JPEG", quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def bomb_png(path: Path, width: int = 40_000, height: int = 40_000) -> Path:
    """A PNG whose header claims width x height pixels, with a tiny (invalid) body: decoding would need
    1.6 GB; only the header may be read."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def exif_rotated(path: Path, seed: int = 0, size: tuple[int, int] = (320, 200)) -> Path:
    """A landscape JPEG whose EXIF says "rotate 90° clockwise to view" (orientation 6), like a phone portrait."""
    image = photo(seed, size)
    exif = Image.Exif()
    exif[0x0112] = 6
    return save(image, path, format="JPEG", quality=90, exif=exif)
