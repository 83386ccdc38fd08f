"""Stylise a photo with a trained photo → anime checkpoint (seed 002): the Anime tab's ``stylize`` endpoint."""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipelines.anime.style_images import STYLE_DIR, style_images  # noqa: F401 (re-exported)
from pipelines.anime.model import IMAGE_SIZE, AnimeStyleModel, decoder_widths_of, load_into, read_checkpoint

log = logging.getLogger(__name__)

MAX_INPUT_PIXELS = 40_000_000  # far above any photo a person uploads; stops decompression bombs early
MAX_OUTPUT_SIDE = 1024  # the model works at 224 px; upscaling further only blurs


class StylizeError(ValueError):
    """An input to stylize is refused; the message names it and says why."""


def check_image(image, name: str) -> Image.Image:
    """An uploaded PIL image or file path as RGB; refuses non-images and huge images in one sentence."""
    from pipelines.images import user_image

    return user_image(image, name, MAX_INPUT_PIXELS, StylizeError)


def to_batch(image: Image.Image) -> torch.Tensor:
    """The inference transform: the whole image squeezed to 224 x 224 (so nothing is cut off), in [0, 1]."""
    image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]


def to_image(output: torch.Tensor) -> Image.Image:
    """A decoder output in [-1, 1] (1, 3, H, W) as an RGB image."""
    array = ((output[0].float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array)


def output_size(size: tuple[int, int]) -> tuple[int, int]:
    """The input's aspect ratio, its own size but at most MAX_OUTPUT_SIDE on the longer side."""
    w, h = size
    scale = min(1.0, MAX_OUTPUT_SIDE / max(w, h))
    return max(1, round(w * scale)), max(1, round(h * scale))


def preserve_colour(stylised: Image.Image, content: Image.Image) -> Image.Image:
    """The stylised luminance with the content's colours (YCbCr channel swap, Gatys et al. 2016)."""
    y, _, _ = stylised.convert("YCbCr").split()
    _, cb, cr = content.resize(stylised.size, Image.Resampling.BICUBIC).convert("YCbCr").split()
    return Image.merge("YCbCr", (y, cb, cr)).convert("RGB")


def face_centred(image: Image.Image, detector) -> Image.Image:
    """A square crop around the single face, or the image unchanged when there is not exactly one."""
    from pipelines.faces import face_box

    box = face_box(image, detector)
    return image.crop(box) if box else image


class Stylizer:
    """Checkpoints loaded once per path, on top of the runtime's shared ViT."""

    def __init__(self, runtime):
        self.runtime = runtime
        self._models: dict[tuple[str, float], AnimeStyleModel] = {}
        self._lock = threading.Lock()

    def model(self, checkpoint: str | Path) -> AnimeStyleModel:
        path = Path(checkpoint)
        key = (str(path.resolve()), path.stat().st_mtime if path.exists() else 0.0)
        with self._lock:
            if key not in self._models:
                self._models[key] = load_model(self.runtime, path)
            return self._models[key]

    @torch.no_grad()
    def __call__(self, checkpoint, content, style, alpha: float = 1.0, keep_colours: bool = False,
                 face_crop: bool = False) -> Image.Image:
        """The content photo in the style image's look, at the photo's aspect ratio."""
        if not checkpoint:
            raise StylizeError("Choose a trained checkpoint; train one in the Anime tab's Train section first.")
        alpha = float(alpha)
        if not 0.0 <= alpha <= 1.0:
            raise StylizeError(f"Alpha must be between 0 and 1, not {alpha}.")
        content, style = check_image(content, "content"), check_image(style, "style")
        if face_crop:
            content = face_centred(content, self.runtime.model("faces"))
        model = self.model(checkpoint)
        param = next(model.decoder.parameters())
        out = model(to_batch(content).to(param.device, param.dtype), to_batch(style).to(param.device, param.dtype),
                    alpha)
        result = to_image(out).resize(output_size(content.size), Image.Resampling.BICUBIC)
        return preserve_colour(result, content) if keep_colours else result


def load_model(runtime, checkpoint: Path) -> AnimeStyleModel:
    """An AnimeStyleModel over the runtime's ``vit`` role with the checkpoint's weights, in eval mode."""
    import copy

    state, config = read_checkpoint(checkpoint)
    vit = runtime.model("vit")
    if any(k.startswith("vit_encoder.") for k in state):
        vit = copy.deepcopy(vit)  # a fine-tuned encoder must not change the shared one
    widths = tuple(config.get("decoder_widths") or decoder_widths_of(state))
    model = AnimeStyleModel(vit, widths)
    load_into(model, state, Path(checkpoint).name)
    param = next(vit.parameters())  # follow the shared encoder's device and dtype (fp16 on a GPU)
    log.info("loaded anime checkpoint %s (decoder %s) on %s", checkpoint, widths, param.device)
    return model.to(device=param.device, dtype=param.dtype).eval()
