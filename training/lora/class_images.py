"""DreamBooth prior preservation: class images generated once with the base model, cached and reused."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
from tqdm.auto import tqdm

from training.lora.data import list_images
from training.lora.settings import LoraSettings

log = logging.getLogger(__name__)


def class_folder(s: LoraSettings, base_ref: str, resolution: int, cache_dir: Path) -> Path:
    """``class_data_dir`` when set, else a cache folder keyed by base model, class prompt, size and sampling."""
    if s.class_data_dir:
        return Path(s.class_data_dir)
    recipe = f"{base_ref}|{s.class_prompt}|{resolution}|{s.sample_inference_steps}|{s.sample_guidance_scale}"
    key = hashlib.sha1(recipe.encode()).hexdigest()[:16]
    return cache_dir / "class-images" / key


@torch.no_grad()
def generate_missing(pipe, s: LoraSettings, folder: Path, resolution: int, batch: int = 4) -> None:
    """Top the folder up to ``num_class_images`` with images of the class prompt (fixed seeds)."""
    folder.mkdir(parents=True, exist_ok=True)
    have = len(list_images(folder))
    missing = s.num_class_images - have
    if missing <= 0:
        return
    log.info("generating %d class images for %r into %s", missing, s.class_prompt, folder)
    for start in tqdm(range(have, s.num_class_images, batch), desc="class images"):
        count = min(batch, s.num_class_images - start)
        gens = [torch.Generator("cpu").manual_seed(s.seed * 100_000 + start + i) for i in range(count)]
        images = pipe([s.class_prompt] * count, num_inference_steps=s.sample_inference_steps, generator=gens,
                      guidance_scale=s.sample_guidance_scale, height=resolution, width=resolution).images
        for i, image in enumerate(images):
            tmp = folder / f".class-{start + i:05d}.png"
            image.save(tmp)
            tmp.rename(folder / f"class-{start + i:05d}.png")


def class_image_paths(folder: Path, count: int) -> list[Path]:
    paths = list_images(folder)[:count]
    if len(paths) < count:
        raise FileNotFoundError(f"{folder} has {len(paths)} class images, {count} needed.")
    return paths
