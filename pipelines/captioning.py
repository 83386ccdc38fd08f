"""Image captions from the ``captioner`` role (BLIP large in ``full``, a tiny BLIP in ``tiny``)."""
from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image

from pipelines.models.loaders import Captioner

MAX_NEW_TOKENS = 40
NUM_BEAMS = 3  # beam search: BLIP's greedy captions repeat words ("a girl a girl with a girl")
BATCH_SIZE = 8  # images per generate call: bounded GPU memory, progress every few images


@torch.no_grad()
def caption_images(captioner: Captioner, images: list[Image.Image], max_new_tokens: int = MAX_NEW_TOKENS,
                   num_beams: int = NUM_BEAMS) -> list[str]:
    """One unconditional caption per RGB image, in order."""
    processor, model = captioner
    parameter = next(model.parameters())
    inputs = processor(images=[im.convert("RGB") for im in images], return_tensors="pt")
    pixels = inputs["pixel_values"].to(parameter.device, parameter.dtype)
    ids = model.generate(pixel_values=pixels, max_new_tokens=max_new_tokens, num_beams=num_beams)
    return [text.strip() for text in processor.batch_decode(ids, skip_special_tokens=True)]


def runtime_captioner(runtime) -> Callable[[list[Image.Image]], list[str]]:
    """A images -> captions function on the runtime's captioner, loaded (and built, in tiny) on first use."""
    return lambda images: caption_images(runtime.model("captioner"), images)
