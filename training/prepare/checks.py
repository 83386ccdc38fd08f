"""The image checks every preparation runs: their names, their order and the settings they read.

Fashion, Ghibli and DreamBooth run the same checks in the same order (``CHECKS``), so one file gets the same
verdict whatever it is prepared for; a use case only adds its own checks around them (captions before, faces
after). Each threshold a message cites is a setting here and a field of the Datasets form.
"""
from __future__ import annotations

from dataclasses import dataclass

from pipelines.images import DEFAULT_MAX_PIXELS
from training.prepare.dedupe import DEFAULT_TOLERANCE

# Report kinds, in the order the checks run: bytes first (no decoding), then one image at a time, then groups.
CHECKS = ("exact duplicate", "unreadable", "too small", "aspect ratio", "blurry", "near duplicate", "text")

DEFAULT_MIN_SIZE = 256  # seed 001's filter; below it an image is upscaled to the training size and trains soft
DEFAULT_MAX_ASPECT = 2.5  # a 2:3 portrait is 1.5; beyond 2.5 a square crop loses most of the picture
# Sharpness (pipelines.images.sharpness) below which an image counts as blurry. Hard-edged flat drawings such
# as the toy world score 1,800 or more, sharp photos 400 or more, photos blurred with a Gaussian of radius 3
# (at 512 pixels) under 30; very soft photos (microscopy, haze) can fall under it too.
DEFAULT_MIN_SHARPNESS = 50.0
DEFAULT_TEXT_THRESHOLD = 0.02  # fraction of the image covered by text lines that gets an image flagged


@dataclass(kw_only=True)
class CheckSettings:
    """What the shared checks read; every use case's options carry these."""
    min_size: int = DEFAULT_MIN_SIZE  # pixels on the shorter side
    max_aspect: float = DEFAULT_MAX_ASPECT  # longer side over shorter side
    min_sharpness: float = DEFAULT_MIN_SHARPNESS
    duplicate_tolerance: int = DEFAULT_TOLERANCE  # colour levels; 0 keeps all but identical layouts apart
    drop_text: bool = False  # drop images with text (else they are kept with a warning)
    text_threshold: float = DEFAULT_TEXT_THRESHOLD
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger files are refused before decoding
