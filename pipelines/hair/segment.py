"""The hair segmenter (``hair_segmenter`` role): a transformers SegFormer whose ``id2label`` names a "hair" class.

Full: ``jonathandinu/face-parsing`` (CelebAMask-HQ labels). Tiny: the same class at a tiny size, trained on the toy
hair world (``python -m training.hair segmenter``) and shipped in ``assets/hair-segmenter-tiny``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

HAIR_LABEL = "hair"


class HairSegmenterError(ValueError):
    """The segmentation model has no hair class; the message says which model."""


class HairSegmenter:
    """``mask(image)``: the hair pixels of a portrait, at the portrait's own size."""

    def __init__(self, processor: Any, model: Any):
        self.processor, self.model = processor, model
        labels = {str(name).lower(): int(i) for i, name in model.config.id2label.items()}
        if HAIR_LABEL not in labels:
            raise HairSegmenterError(f"The segmentation model {model.config.name_or_path!r} has no {HAIR_LABEL!r} "
                                     f"label (it has {', '.join(sorted(labels))}); use a face-parsing model.")
        self.hair_id = labels[HAIR_LABEL]

    @torch.no_grad()
    def logits(self, images: list[Image.Image]) -> torch.Tensor:
        """Class scores of each image at the processor's size (N × classes × h × w)."""
        inputs = self.processor(images=[im.convert("RGB") for im in images], return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.model.device, self.model.dtype)
        return self.model(pixel_values=pixels).logits.float()

    def mask(self, image: Image.Image) -> np.ndarray:
        """A boolean H×W hair mask of ``image``."""
        scores = F.interpolate(self.logits([image]), size=(image.height, image.width), mode="bilinear",
                               align_corners=False)
        return (scores[0].argmax(0) == self.hair_id).cpu().numpy()
