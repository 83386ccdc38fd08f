"""The ``face_id`` role: a differentiable face-identity embedder, for seed 000's identity loss and evaluation.

Full: insightface's ArcFace (iResNet-50 trained on WebFace600K, ``w600k_r50.onnx`` in the ``buffalo_l`` pack)
converted to torch by onnx2torch, so that gradients flow through it into a generated face. Tiny: a small CNN with
fixed-seed random weights, built into the cache: the same interface and a stable function of the face, not a
recogniser. Either way ``FaceIdentity(faces)`` maps N×3×112×112 RGB faces in [-1, 1] to N×D unit vectors, and
``crop_faces`` cuts those faces out of images differentiably.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

INPUT_SIZE = 112  # ArcFace's aligned crop
TINY_WIDTHS = (16, 32, 64)
TINY_DIM = 128


class FaceIdentity(nn.Module):
    """A backbone that maps faces to identity vectors, with the input size and the normalisation it expects."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        if faces.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            faces = F.interpolate(faces, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        return F.normalize(self.backbone(faces).flatten(1).float(), dim=1)


def tiny_backbone(widths: Sequence[int] = TINY_WIDTHS, dim: int = TINY_DIM) -> nn.Sequential:
    """Strided 3×3 convolutions, global average pooling and a linear layer to ``dim``."""
    layers: list[nn.Module] = []
    channels = 3
    for width in widths:
        layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.ReLU()]
        channels = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, dim))


def crop_faces(images: torch.Tensor, boxes: Sequence[Sequence[float]]) -> torch.Tensor:
    """The box of each image (x0, y0, x1, y1 in pixels) resampled to 112×112; gradients reach ``images``."""
    from torchvision.ops import roi_align

    rois = torch.tensor([[i, *box] for i, box in enumerate(boxes)], dtype=images.dtype, device=images.device)
    return roi_align(images, rois, output_size=(INPUT_SIZE, INPUT_SIZE), spatial_scale=1.0, sampling_ratio=2,
                     aligned=True)


def identity_cosine(model: FaceIdentity, images: torch.Tensor, references: torch.Tensor,
                    boxes: Sequence[Sequence[float]]) -> torch.Tensor:
    """Per image, the cosine between the identity vectors of the face box in ``images`` and in ``references``."""
    return (model(crop_faces(images, boxes)) * model(crop_faces(references, boxes))).sum(dim=1)
