"""Evaluate a stage-2 run and export it past seed 000's gate:
``python -m training.hair evaluate --run RUN --data HELDOUT [--export NAME] [--force]``.

Each held-out portrait is repainted with its own prompt, hair (style) and face (identity), and the result compared
with the portrait inside the hair mask: LPIPS (the spatial map averaged inside the mask), PSNR and SSIM
(torchmetrics, masked), and the identity cosine of the face region before anything is blended back. The run gets
``evaluation/report.json`` and ``evaluation/results.png``. Export writes ``models/hair/<NAME>.safetensors`` (under
$ATELIER_MODELS, default ``models/``) with the metrics and the verdict in its metadata, only when identity > 0.90 and
LPIPS < 0.20 unless ``--force``, which marks the file as failing.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipelines.face_id import identity_cosine
from pipelines.hair import model as hair_model
from pipelines.hair.inpaint import widen_to_inpaint
from pipelines.hair.style import style_embedding
from pipelines.hair.tryon import comparison_grid, paint, to_pil
from training.hair.settings import EvalOptions, Gate
from training.hair.inpaint_data import Batch, load_batch, read_examples, usable_examples
from training.hair.texture import HairDataError

log = logging.getLogger("training.hair")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def evaluate(run: Path, data: Path | None, profile: str, options: EvalOptions = EvalOptions(),
             gate: Gate = Gate()) -> dict:
    """Score ``run``'s final model on ``data`` (None: the portraits the run held out); writes and returns the report."""
    from pipelines.models.registry import env_overrides, resolve
    from pipelines.models.runtime import default_cache_dir, load_model

    model = hair_model.load(model_path(run))
    examples = (usable_examples(Path(data)) if data else held_out(run))[:options.limit or None]
    device = "cuda" if torch.cuda.is_available() else "cpu"

    def role(name: str):
        return load_model(resolve(name, profile, env_overrides(), default_cache_dir()), device, torch.float32)

    pipe = role("sdxl_inpaint")  # the live profile's base: what the run trained on, unless overridden
    pipe.set_progress_bar_config(disable=True)
    widen_to_inpaint(pipe.unet)
    hair_model.install(pipe, model)
    vgg, face_id, lpips = role("vgg16"), role("face_id"), role("lpips")
    texture = model.texture_encoder()
    texture = texture.to(device) if texture is not None else None
    size = int(model.metadata.get("resolution") or pipe.unet.config.sample_size * pipe.vae_scale_factor)
    rows, grid = [], []
    for i in range(0, len(examples), options.batch_size):
        batch = load_batch(examples[i:i + options.batch_size], size)
        results = paint(pipe, [to_pil(x) for x in batch.pixels], [to_pil(m * 2 - 1) for m in batch.masks], batch.prompts,
                        batch.identity, style_embedding(vgg, batch.pixels.to(device), batch.masks.to(device), texture),
                        options.steps, options.guidance, options.seed + i, size)
        rows += _score(batch, results, lpips, face_id)
        grid += list(zip(batch.pixels, batch.masks, results))[:max(0, 8 - len(grid))]
    metrics = {k: float(np.mean([r[k] for r in rows])) for k in ("lpips", "psnr", "ssim", "identity")}
    report = {"run": str(run), "data": str(data or "held-out portraits of the run"), "count": len(rows), **metrics, "gate": {
        **asdict(gate), "passed": gate.passes(metrics)}, "options": asdict(options),
        "per_image": [{"id": e.id, **r} for e, r in zip(examples, rows)]}
    out = Path(run) / "evaluation"
    out.mkdir(exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    comparison_grid(*(list(x) for x in zip(*grid))).save(out / "results.png")
    log.info("evaluated %d portraits: LPIPS %.3f, PSNR %.2f dB, SSIM %.3f, identity %.3f; gate %s", len(rows),
             metrics["lpips"], metrics["psnr"], metrics["ssim"], metrics["identity"],
             "passed" if report["gate"]["passed"] else "failed")
    return report


def held_out(run: Path) -> list:
    """The portraits a stage-2 run held out from training, as its config.toml records them."""
    import tomllib

    try:
        config = tomllib.loads((Path(run) / "config.toml").read_text(encoding="utf-8"))
        return read_examples(Path(config["data"]), config["val_fraction"], config["seed"])[1]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        raise HairDataError(f"{run} has no readable config.toml naming its data; pass --data.") from None


def model_path(run: Path) -> Path:
    path = Path(run) / "final" / "hair_model.safetensors"
    if not path.is_file():
        raise HairDataError(f"{run} has no final/hair_model.safetensors; finish the run (training.hair inpaint) first.")
    return path


@torch.no_grad()
def _score(batch: Batch, results: list[Image.Image], lpips, face_id) -> list[dict[str, float]]:
    """Per portrait: masked LPIPS, PSNR and SSIM against the portrait, and the face region's identity cosine."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    truth = batch.pixels.float()
    made = torch.stack([torch.from_numpy(np.asarray(r, np.float32) / 127.5 - 1).permute(2, 0, 1) for r in results])
    lpips.spatial = True  # the per-pixel map, so that it can be averaged inside the mask
    lp_map = lpips(made.to(next(lpips.parameters()).device), truth.to(next(lpips.parameters()).device)).cpu()
    _, ssim_map = structural_similarity_index_measure((made + 1) / 2, (truth + 1) / 2, data_range=1.0,
                                                      reduction="none", return_full_image=True)
    identity = identity_cosine(face_id, made.to(_device(face_id)), truth.to(_device(face_id)), batch.face_boxes).cpu()
    rows = []
    for k, mask in enumerate(batch.masks > 0.5):
        inside = mask.expand(3, -1, -1)
        rows.append({"lpips": float(lp_map[k][mask].mean()), "ssim": float(ssim_map[k][inside].mean()),
                     "psnr": float(peak_signal_noise_ratio((made[k][inside] + 1) / 2, (truth[k][inside] + 1) / 2,
                                                           data_range=1.0)),
                     "identity": float(identity[k])})
    return rows


def export(run: Path, report: dict, name: str, force: bool) -> Path:
    """Copy the run's model to ``models/hair/<name>.safetensors`` with its metrics and verdict in the metadata."""
    if not NAME.match(name):
        raise HairDataError(f"--export {name!r} is not a usable name; use letters, digits, '.', '_' and '-'.")
    passed = report["gate"]["passed"]
    if not passed and not force:
        gate = report["gate"]
        raise HairDataError(f"Not exported: identity {report['identity']:.3f} (needs > {gate['min_identity']}) and "
                            f"LPIPS {report['lpips']:.3f} (needs < {gate['max_lpips']}) fail the gate; train longer or "
                            "pass --force to export it marked as failing.")
    model = hair_model.load(model_path(run))
    metrics = {k: round(report[k], 4) for k in ("lpips", "psnr", "ssim", "identity")}
    model.metadata.update({"metrics": json.dumps(metrics), "gate": json.dumps(report["gate"]),
                           "gate_passed": str(passed).lower(), "forced": str(bool(force and not passed)).lower(),
                           "run": Path(run).name})
    target = hair_model.exported_dir() / f"{name}.safetensors"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    hair_model.save(tmp, model)
    shutil.move(tmp, target)
    log.info("exported %s%s", target, "" if passed else " (forced: marked as failing the gate)")
    return target


def _device(module) -> torch.device:
    return next(module.parameters()).device

