"""Image → VAE latent, with an on-disk cache keyed by image content and VAE, reused across runs."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from pipelines.faces import face_box

log = logging.getLogger(__name__)


def open_rgb(path: Path) -> Image.Image:
    """An image file as RGB, EXIF rotation applied."""
    with Image.open(path) as im:
        return ImageOps.exif_transpose(im).convert("RGB")


def square_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """Resize (shorter side) and centre-crop to size×size; a (3, size, size) tensor in [-1, 1]."""
    image = ImageOps.fit(image, (size, size), Image.Resampling.LANCZOS)
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def load_square(path: Path, size: int) -> torch.Tensor:
    """The training transform: the whole image, centre-cropped to a square."""
    return square_tensor(open_rgb(path), size)


def vae_id(vae: torch.nn.Module) -> str:
    """A short id that changes when the VAE's config or weights change."""
    h = hashlib.sha1(repr(sorted(vae.config.items())).encode())
    params = list(vae.parameters())
    for p in (params[0], params[len(params) // 2], params[-1]):
        h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def file_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:32]


@torch.no_grad()
def encode(vae: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """Scaled latents of a (B, 3, H, W) batch: the posterior mean, so the cache is deterministic."""
    pixels = pixels.to(vae.device, vae.dtype)
    return (vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor).float().cpu()


def cached_latents(vae: torch.nn.Module, images: list[Path], size: int, cache_root: Path | None,
                   transform=load_square) -> torch.Tensor:
    """Latents of every image, (N, C, h, w); read from ``cache_root`` when present, else encoded and stored.

    cache_root: None encodes without caching. transform: path, size → pixel tensor (e.g. a face crop).
    """
    folder = cache_root / f"{vae_id(vae)}-{size}-{getattr(transform, '__name__', 'custom')}" if cache_root else None
    if folder:
        folder.mkdir(parents=True, exist_ok=True)
    out, hits = [], 0
    for path in tqdm(images, desc="latents", disable=len(images) < 20):
        target = folder / f"{file_hash(path)}.safetensors" if folder else None
        if target and target.is_file():
            out.append(load_file(target)["latent"])
            hits += 1
            continue
        latent = encode(vae, transform(path, size)[None])[0]
        if target:
            save_file({"latent": latent.contiguous()}, target)
        out.append(latent)
    log.info("latents: %d images, %d from the cache%s", len(images), hits, f" ({folder})" if folder else "")
    return torch.stack(out)


def face_crop_transform(detector):
    """A (path, size) → pixel-tensor transform like ``load_square`` that centres the face."""
    def face_crop(path: Path, size: int) -> torch.Tensor:
        image = open_rgb(path)
        box = face_box(image, detector)
        if box is None:
            log.warning("%s: not exactly one face found; using a centre crop", Path(path).name)
        else:
            image = image.crop(box)
        return square_tensor(image, size)
    return face_crop
