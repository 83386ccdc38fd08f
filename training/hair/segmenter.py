"""The tiny profile's hair segmenter: ``python -m training.hair segmenter --output assets/hair-segmenter-tiny``.

A SegFormer (the class of the full profile's ``jonathandinu/face-parsing``, at a tiny size) trained on freshly drawn
toy hair portraits with three labels (background, skin, hair), saved with its image processor, and measured by the
hair IoU on held-out portraits (report.json beside the weights).
"""
from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from pipelines.hair import toy_hair
from training.hair.settings import SegmenterSettings

log = logging.getLogger("training.hair")
LABELS = {0: "background", 1: "skin", 2: "hair"}
INPUT_SIZE = 128  # the toy's 64 px upscaled, so the 1/4-resolution logits are as fine as the image


def tiny_model():
    """A SegFormer of ~0.2 M parameters with the three toy labels."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    config = SegformerConfig(num_channels=3, num_encoder_blocks=2, depths=[1, 1], sr_ratios=[4, 1],
                             hidden_sizes=[32, 64], patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 2],
                             mlp_ratios=[2, 2], decoder_hidden_size=64, num_labels=len(LABELS), id2label=LABELS,
                             label2id={v: k for k, v in LABELS.items()}, semantic_loss_ignore_index=255)
    return SegformerForSemanticSegmentation(config)


def processor():
    from transformers import SegformerImageProcessor

    return SegformerImageProcessor(size={"height": INPUT_SIZE, "width": INPUT_SIZE}, do_reduce_labels=False)


def toy_batch(rng: random.Random, count: int, proc) -> tuple[torch.Tensor, torch.Tensor, list[np.ndarray]]:
    """Pixels as the processor makes them, per-pixel labels at 64 px, and the true hair masks."""
    portraits = [toy_hair.random_portrait(rng) for _ in range(count)]
    images = [toy_hair.render(p) for p in portraits]
    pixels = proc(images=images, return_tensors="pt")["pixel_values"]
    labels = np.zeros((count, toy_hair.SIZE, toy_hair.SIZE), np.int64)
    hairs = []
    for i, p in enumerate(portraits):
        hair = toy_hair.hair_mask(p)
        labels[i][toy_hair.face_mask(p)] = 1
        labels[i][hair] = 2
        hairs.append(hair)
    return pixels, torch.from_numpy(labels), hairs


def iou(model, proc, rng: random.Random, count: int) -> float:
    """Mean hair IoU on ``count`` fresh portraits."""
    from pipelines.hair.segment import HairSegmenter

    segmenter = HairSegmenter(proc, model.eval())
    scores = []
    for _ in range(count):
        p = toy_hair.random_portrait(rng)
        truth, found = toy_hair.hair_mask(p), segmenter.mask(toy_hair.render(p))
        scores.append((truth & found).sum() / max(1, (truth | found).sum()))
    return float(np.mean(scores))


def train(s: SegmenterSettings, output: Path) -> dict:
    """Train, save the model and processor into ``output``, and return the report written beside them."""
    torch.manual_seed(s.seed)
    rng, proc, model = random.Random(s.seed), processor(), tiny_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=s.learning_rate)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=s.learning_rate, total_steps=s.steps)
    start, loss = time.time(), torch.tensor(0.0)
    model.train()
    for _ in tqdm(range(s.steps), desc="segmenter"):
        pixels, labels, _ = toy_batch(rng, s.batch_size, proc)
        logits = F.interpolate(model(pixel_values=pixels).logits, size=labels.shape[-2:], mode="bilinear",
                               align_corners=False)
        loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    report = {"steps": s.steps, "seconds": round(time.time() - start, 1), "final_loss": round(loss.item(), 4),
              "held_out_hair_iou": round(iou(model, proc, random.Random(s.seed + 10_000), s.eval_portraits), 4),
              "eval_portraits": s.eval_portraits, "parameters": sum(p.numel() for p in model.parameters()),
              "made_by": f"python -m training.hair segmenter --output {output} --steps {s.steps}"}
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output, safe_serialization=True)
    proc.save_pretrained(output)
    (output / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    log.info("hair segmenter: IoU %.3f on %d held-out portraits", report["held_out_hair_iou"], s.eval_portraits)
    return report
