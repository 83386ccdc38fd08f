"""Seed 000, stage "prepare": K-Hairstyle images + labels → the subsets the hair trainers read.

Per image id: ``images/`` (the portrait), ``masks/`` (hair = 255, from ``polygon1``, dilated), ``bald_images/``
(the hair filled in by ``cv2.inpaint``, Telea), ``hair_only_images/`` (RGBA, alpha = the hair), ``style_vectors/``
(a square crop of the hair, 224 px), ``identity_embeddings/`` (the largest face's unit embedding, .npy),
``hair_patches/`` (windows that are at least 85 % hair); ``metadata.jsonl`` with the English prompt and attributes,
and ``report.json`` / ``report.md`` naming every file left out and every Korean word the vocabulary lacks.
"""
from __future__ import annotations

import functools
import json
import logging
import multiprocessing
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from pipelines.hair import toy_hair
from pipelines.hair.vocabulary import load as load_vocabulary
from pipelines.images import DEFAULT_MAX_PIXELS, ImageProblem, open_image
from training.prepare.common import (PrepareError, PrepareOptions, check_separate, list_sources, safe_stem,
                                     staged_output)
from training.prepare.khairstyle import LabelError, check_hair_area, hair_mask, pair_files, polygon_rings, read_label
from training.prepare.report import Report
from training.runs.threads import physical_cores

log = logging.getLogger(__name__)

SUBSETS = ("images", "masks", "bald_images", "hair_only_images", "style_vectors", "identity_embeddings",
           "hair_patches")
SEED_PATCH, SEED_STRIDE = 128, 64  # seed 000's patches, for photos of 512 px and more
# A worker's start (a process, its face model) costs about as much as 10 photos of 512 px: with fewer images than
# this per worker the pool does not pay (bench/hair_prepare.py: 2 workers 0.9x at 30 photos, 1.66x at 120).
MIN_IMAGES_PER_WORKER = 32
PNG_LEVEL = 1  # zlib level: several PNGs per image; level 6 took most of the time and saved ~15 % of the bytes
ATTRIBUTES = ("length", "hair-width", "color", "curl", "basestyle", "bang", "side", "partition", "natural-curl",
              "damage", "loss", "melanin-color")


@dataclass
class HairOptions(PrepareOptions):
    images: Path
    labels_dir: Path  # ``labels`` names the settings in messages (PrepareOptions)
    out: Path
    dilate: int = 0  # pixels; 0 = about 1 % of the image's shorter side, at least 1
    style_size: int = 224
    patch_size: int = 0  # 0 = the seed's 128 px, scaled down for images under 512 px (at least 8)
    patch_stride: int = 0  # 0 = half the patch
    min_patch_hair: float = 0.85
    max_pixels: int = DEFAULT_MAX_PIXELS
    overwrite: bool = False
    workers: int = 0  # processes for the per-image work; 0 = one per physical core

    def check(self) -> None:
        """Refuse missing folders and impossible settings with one sentence."""
        for name, path in (("images", self.images), ("labels", self.labels_dir)):
            if not Path(path).is_dir():
                raise PrepareError(f"The {name} folder {self.input_name(path)} does not exist or is not a folder.")
        self.check_range("style_size", 16, 1024, " pixels")
        self.check_range("dilate", 0, 64, " pixels")
        self.check_range("min_patch_hair", 0.0, 1.0)
        self.check_range("workers", 0, 256)


def patch_geometry(options: HairOptions, size: tuple[int, int]) -> tuple[int, int]:
    """(patch, stride) for an image of ``size``: the seed's 128/64 at 512 px and more, scaled below that."""
    scale = min(1.0, min(size) / 512)
    patch = options.patch_size or max(8, round(SEED_PATCH * scale))
    return patch, options.patch_stride or max(1, patch // 2)


class NoFace(ValueError):
    """The face model finds no face in a portrait."""


def prepare_hair(options: HairOptions, faces: Any, make_faces: Callable[[], Any] | None = None) -> Report:
    """Write the hair dataset; ``faces.identities(image)`` gives (box, unit embedding) per face, largest first.

    make_faces: a picklable function that loads the same face model, for ``options.workers`` > 1 processes (each
    loads its own: dlib's and insightface's models do not cross processes); without it the work stays here.
    """
    options.check()
    check_separate(options.images, options.out)
    report = Report("hair", settings=options.report_settings())
    sources = {PurePosixPath(s.rel): s for s in list_sources(options.images, report)}
    labels = sorted(PurePosixPath(p.relative_to(options.labels_dir).as_posix())
                    for p in Path(options.labels_dir).rglob("*.json"))
    pairing = pair_files(list(sources), labels)
    for rel in pairing.images_without_label:
        report.drop(str(rel), "no label", f"{rel} has no label (looked for {rel.stem}.json and "
                    f"{rel.stem.replace('-', '_')}.json); skipped.")
    for rel in pairing.labels_without_image:
        report.drop(str(rel), "no image", f"The label {rel} has no image beside it; skipped.")
    untranslated: Counter[str] = Counter()
    with staged_output(options.out, options.overwrite) as stage:
        for folder in SUBSETS:
            (stage / folder).mkdir()
        jobs = [(sources[image].path, Path(options.labels_dir) / label, sources[image].stem, image, label)
                for image, label in pairing.pairs]
        rows = []
        for image_rel, outcome in zip(pairing.pairs, _outcomes(jobs, options, faces, make_faces, stage)):
            if outcome[0] == "drop":
                report.drop(str(image_rel[0]), outcome[1], outcome[2])
                continue
            _, row, unknown = outcome
            untranslated.update(f"{attribute}={value}" for attribute, value in unknown)
            report.keep(row["images"], str(image_rel[0]))
            rows.append(row)
        if not rows:
            raise PrepareError(f"No usable images: {len(report.dropped)} were dropped; see the report for each "
                               "file's reason.", report)
        report.untranslated = dict(untranslated.most_common())
        (stage / "metadata.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                              encoding="utf-8")
        report.write(stage)
    log.info("%s", report.summary())
    return report


def _outcomes(jobs: list[tuple], options: HairOptions, faces: Any, make_faces: Callable[[], Any] | None,
              stage: Path) -> Iterator[tuple]:
    """Each job's outcome in order, here or in ``options.workers`` processes."""
    workers = min(options.workers or physical_cores(), len(jobs) // MIN_IMAGES_PER_WORKER)
    if workers <= 1 or make_faces is None:
        yield from (_outcome(job, options, faces, stage) for job in tqdm(jobs, desc="hair"))
        return
    log.info("hair: %d images in %d worker processes", len(jobs), workers)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                             initargs=(make_faces,)) as pool:
        work = functools.partial(_worker_outcome, options=options, stage=stage)
        yield from tqdm(pool.map(work, jobs, chunksize=4), total=len(jobs), desc="hair")


_WORKER_FACES: Any = None


def _start_worker(make_faces: Callable[[], Any]) -> None:
    global _WORKER_FACES
    import torch

    torch.set_num_threads(1)  # one process per core
    _WORKER_FACES = make_faces()


def _worker_outcome(job: tuple, options: HairOptions, stage: Path) -> tuple:
    return _outcome(job, options, _WORKER_FACES, stage)


def _outcome(job: tuple, options: HairOptions, faces: Any, stage: Path) -> tuple:
    """("keep", row, unknown words) or ("drop", kind, message): plain values, so they cross processes."""
    image_path, label_path, stem, image_rel, label_rel = job
    try:
        return ("keep", *_process(image_path, label_path, stem, options, faces, stage))
    except (ImageProblem, LabelError, NoFace) as err:
        return "drop", _kind(err), _message(image_rel, label_rel, err)


def _kind(err: Exception) -> str:
    if isinstance(err, NoFace):
        return "no face"
    if isinstance(err, LabelError):
        return "tiny hair" if "too small" in str(err) else "bad label"
    return "unreadable"


def _message(image_rel: PurePosixPath, label_rel: PurePosixPath, err: Exception) -> str:
    if isinstance(err, LabelError):
        return f"{image_rel}: its label {label_rel} {err}; skipped."
    if isinstance(err, NoFace):
        return f"{image_rel}: no face found, so there is no identity to keep; skipped."
    return f"{str(err).rstrip('.')}; skipped."


def _process(image_path: Path, label_path: Path, stem: str, options: HairOptions, faces: Any,
             out: Path) -> tuple[dict, list[tuple[str, str]]]:
    """Write every subset for one image; returns its metadata row and the words the vocabulary did not know."""
    import cv2

    label = read_label(label_path)
    image = open_image(image_path, options.max_pixels).image  # RGB, EXIF rotation applied, CMYK/16-bit converted
    mask = hair_mask(polygon_rings(label), image.size, _dilate(options, image.size))
    check_hair_area(mask)
    identity = _identity(image, faces)
    if identity is None:
        raise NoFace(image_path.name)
    rgb = np.asarray(image)
    names = {folder: f"{folder}/{stem}.png" for folder in SUBSETS}
    image.save(out / names["images"], compress_level=PNG_LEVEL)
    Image.fromarray(mask).save(out / names["masks"], compress_level=PNG_LEVEL)
    bald = cv2.inpaint(np.ascontiguousarray(rgb[:, :, ::-1]), mask, 3, cv2.INPAINT_TELEA)[:, :, ::-1]
    Image.fromarray(np.ascontiguousarray(bald)).save(out / names["bald_images"], compress_level=PNG_LEVEL)
    Image.fromarray(np.dstack([rgb, mask])).save(out / names["hair_only_images"], compress_level=PNG_LEVEL)
    _style_crop(image, mask, options.style_size).save(out / names["style_vectors"], compress_level=PNG_LEVEL)
    names["identity_embeddings"] = f"identity_embeddings/{stem}.npy"
    np.save(out / names["identity_embeddings"], identity[1].astype(np.float32), allow_pickle=False)
    patches = _write_patches(rgb, mask, stem, patch_geometry(options, image.size), options.min_patch_hair,
                             out / "hair_patches")
    vocabulary = load_vocabulary()
    attributes = {k: str(label[k]) for k in ATTRIBUTES if label.get(k) not in (None, "")}
    prompt, unknown = vocabulary.prompt(attributes)
    english = {k: vocabulary.english(k, v) for k, v in attributes.items()}
    row = {"id": stem, **{k: v for k, v in names.items() if k != "hair_patches"}, "prompt": prompt, "attributes": {k: v for k, v in english.items() if v}, "face_box": list(identity[0]),
           "patches": patches}
    return row, unknown


def _dilate(options: HairOptions, size: tuple[int, int]) -> int:
    return options.dilate or max(1, round(min(size) / 100))


def _identity(image: Image.Image, faces: Any) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """The largest face's box and embedding; on a toy portrait (64 px), what the toy world provides."""
    found = faces.identities(image) if faces is not None else []
    if found:
        return found[0]
    return toy_hair.face_identity(image) if image.size == (toy_hair.SIZE, toy_hair.SIZE) else None


def _style_crop(image: Image.Image, mask: np.ndarray, size: int) -> Image.Image:
    """The hair's bounding square, resized to ``size`` (what the style encoder sees)."""
    ys, xs = np.nonzero(mask)
    side = max(xs.max() - xs.min(), ys.max() - ys.min()) + 1
    cx, cy = (xs.max() + xs.min()) // 2, (ys.max() + ys.min()) // 2
    left = int(np.clip(cx - side // 2, 0, max(0, image.width - side)))
    top = int(np.clip(cy - side // 2, 0, max(0, image.height - side)))
    return image.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)


def _write_patches(rgb: np.ndarray, mask: np.ndarray, stem: str, geometry: tuple[int, int], min_hair: float,
                   folder: Path) -> int:
    """Save every window that is at least ``min_hair`` hair; returns how many."""
    patch, stride = geometry
    count = 0
    for top in range(0, rgb.shape[0] - patch + 1, stride):
        for left in range(0, rgb.shape[1] - patch + 1, stride):
            if (mask[top:top + patch, left:left + patch] > 0).mean() >= min_hair:
                Image.fromarray(rgb[top:top + patch, left:left + patch]).save(
                    folder / f"{safe_stem(stem)}-{count:03d}.png", compress_level=PNG_LEVEL)
                count += 1
    return count
