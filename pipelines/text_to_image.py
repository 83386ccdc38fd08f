"""Text-to-image generation on the ``sd15`` role: settings, input checks and the call itself."""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, replace

from PIL import Image

from pipelines.runtime import Runtime

log = logging.getLogger(__name__)

# Seed 001's negative prompt: blur, distortion, low quality, anatomy problems, several people.
DEFAULT_NEGATIVE_PROMPT = ("blurry, distorted, low quality, worst quality, bad anatomy, deformed, "
                           "extra limbs, multiple people, watermark, text")
MAX_SIDE = 2048
MAX_STEPS = 150
MAX_IMAGES = 8
MAX_SEED = 2**32 - 1
# diffusers scheduler class → the sampler name A1111 writes in its infotext
SAMPLER_NAMES = {"DPMSolverMultistepScheduler": "DPM++ 2M", "EulerDiscreteScheduler": "Euler",
                 "EulerAncestralDiscreteScheduler": "Euler a", "DDIMScheduler": "DDIM", "PNDMScheduler": "PLMS",
                 "UniPCMultistepScheduler": "UniPC", "LMSDiscreteScheduler": "LMS"}


class InputError(ValueError):
    """A user input is out of range; the message is one sentence naming the field."""


@dataclass
class GenerateSettings:
    prompt: str
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT
    steps: int = 30
    cfg: float = 7.5
    seed: int = -1  # -1 picks a random seed; the one used is returned
    width: int = 512
    height: int = 512
    num_images: int = 1


def defaults_for(runtime: Runtime) -> GenerateSettings:
    """Defaults for the live profile: the toy model works at 64×64."""
    base = GenerateSettings(prompt="")
    return replace(base, width=64, height=64, steps=25) if runtime.profile.name == "tiny" else base


def check_inputs(s: GenerateSettings) -> None:
    """Raise InputError with one sentence for the first bad field."""
    if not s.prompt or not s.prompt.strip():
        raise InputError("The prompt is empty; describe the image you want, e.g. "
                         "'a red square on a white background'.")
    for name, value in (("Width", s.width), ("Height", s.height)):
        if value != int(value) or value <= 0 or value > MAX_SIDE or int(value) % 8:
            raise InputError(f"{name} must be a multiple of 8 between 8 and {MAX_SIDE} pixels, not {value}.")
    if s.steps != int(s.steps) or not 1 <= s.steps <= MAX_STEPS:
        raise InputError(f"Steps must be a whole number from 1 to {MAX_STEPS}, not {s.steps}.")
    if not 0 <= s.cfg <= 30:
        raise InputError(f"CFG scale must be between 0 and 30, not {s.cfg}.")
    if s.num_images != int(s.num_images) or not 1 <= s.num_images <= MAX_IMAGES:
        raise InputError(f"Number of images must be from 1 to {MAX_IMAGES}, not {s.num_images}.")
    if s.seed != int(s.seed) or not -1 <= s.seed <= MAX_SEED:
        raise InputError(f"Seed must be -1 (random) or a whole number from 0 to {MAX_SEED}, not {s.seed}.")


def resolve_seed(seed: int) -> int:
    return random.randint(0, MAX_SEED) if seed == -1 else int(seed)


def infotext(s: GenerateSettings, seed: int, sampler: str, model: str) -> str:
    """A1111-style ``parameters`` text: prompt, negative prompt, then the settings line."""
    lines = [s.prompt]
    if s.negative_prompt:
        lines.append(f"Negative prompt: {s.negative_prompt}")
    lines.append(f"Steps: {s.steps}, Sampler: {sampler}, CFG scale: {s.cfg}, Seed: {seed}, "
                 f"Size: {s.width}x{s.height}, Model: {model}")
    return "\n".join(lines)


def generate(runtime: Runtime, s: GenerateSettings) -> tuple[list[Image.Image], int]:
    """Generate ``num_images`` images; image i uses seed + i. Returns the images and the base seed.

    Each image carries its infotext in ``image.info["parameters"]``.
    """
    import torch

    check_inputs(s)
    seed = resolve_seed(s.seed)
    pipe = runtime.model("sd15")
    generators = [torch.Generator("cpu").manual_seed((seed + i) % (MAX_SEED + 1)) for i in range(s.num_images)]
    images = pipe(prompt=[s.prompt] * s.num_images, negative_prompt=[s.negative_prompt] * s.num_images,
                  num_inference_steps=int(s.steps), guidance_scale=float(s.cfg), width=int(s.width),
                  height=int(s.height), generator=generators).images
    model = runtime.ref("sd15").ref.rstrip("/").split("/")[-1]
    sampler = SAMPLER_NAMES.get(type(pipe.scheduler).__name__, type(pipe.scheduler).__name__)
    for i, image in enumerate(images):
        image.info["parameters"] = infotext(replace(s, seed=seed + i), seed + i, sampler, model)
    log.info("generated %d image(s) %dx%d, seed %d", len(images), s.width, s.height, seed)
    return images, seed
