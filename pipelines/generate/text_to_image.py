"""Text-to-image generation on the ``sd15`` role: settings, input checks and the call itself."""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field, replace

from PIL import Image

from pipelines.generate.lora_files import LoraFile
from pipelines.models.runtime import Runtime

log = logging.getLogger(__name__)

# Seed 001's negative prompt: blur, distortion, low quality, anatomy problems, several people.
DEFAULT_NEGATIVE_PROMPT = ("blurry, distorted, low quality, worst quality, bad anatomy, deformed, "
                           "extra limbs, multiple people, watermark, text")
MAX_SIDE = 2048
MAX_STEPS = 150
MAX_IMAGES = 8
MAX_SEED = 2**32 - 1
MAX_BATCHES = 16
MAX_LORAS = 5
# diffusers scheduler class → the sampler name A1111 writes in its infotext
SAMPLER_NAMES = {"DPMSolverMultistepScheduler": "DPM++ 2M", "EulerDiscreteScheduler": "Euler",
                 "EulerAncestralDiscreteScheduler": "Euler a", "DDIMScheduler": "DDIM", "PNDMScheduler": "PLMS",
                 "UniPCMultistepScheduler": "UniPC", "LMSDiscreteScheduler": "LMS"}
# what the sampler menu offers; "" keeps the model's own scheduler
SAMPLERS = {name: cls for cls, name in SAMPLER_NAMES.items()}


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
    sampler: str = ""  # a SAMPLERS name; "" keeps the model's scheduler
    batch_count: int = 1  # batches run one after another, seeds continue
    loras: list[tuple[LoraFile, float]] = field(default_factory=list)
    trigger_words: bool = True  # put each LoRA's trigger word in front of the prompt


@dataclass
class GenerateResult:
    """Images (each with ``info["parameters"]``), the base seed, and what each LoRA applied to."""
    images: list[Image.Image]
    seed: int
    lora_modules: dict[str, int]

    @property
    def warnings(self) -> list[str]:
        return [f"The LoRA {name} matched no layer of the base model, so it changed nothing; it was probably "
                "trained for another model." for name, count in self.lora_modules.items() if count == 0]


# The toy model works at 64×64 and likes little guidance: at CFG 7.5 its colours over-saturate (orange on
# black turns yellow) and joint accuracy drops from 0.98 to 0.92 (bench/toy_quality.py).
TINY_DEFAULTS = dict(width=64, height=64, steps=25, cfg=2.5)


def defaults_for(profile: str) -> GenerateSettings:
    """Defaults for a profile, ``tiny`` or ``full`` (the tiny profile's toy model: see TINY_DEFAULTS)."""
    base = GenerateSettings(prompt="")
    return replace(base, **TINY_DEFAULTS) if profile == "tiny" else base


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
    if s.sampler and s.sampler not in SAMPLERS:
        raise InputError(f"Sampler must be one of {', '.join(SAMPLERS)}, not {s.sampler!r}.")
    if s.batch_count != int(s.batch_count) or not 1 <= s.batch_count <= MAX_BATCHES:
        raise InputError(f"Batch count must be from 1 to {MAX_BATCHES}, not {s.batch_count}.")
    if len(s.loras) > MAX_LORAS:
        raise InputError(f"Use at most {MAX_LORAS} LoRAs at once, not {len(s.loras)}.")
    for lora, weight in s.loras:
        if not -2 <= weight <= 2:
            raise InputError(f"The weight of LoRA {lora.name} must be between -2 and 2, not {weight}.")


def resolve_seed(seed: int) -> int:
    return random.randint(0, MAX_SEED) if seed == -1 else int(seed)


def effective_prompt(s: GenerateSettings) -> str:
    """The prompt with the LoRAs' trigger words in front (when on and not already there)."""
    if not s.trigger_words:
        return s.prompt
    words = [f.trigger_word for f, w in s.loras if f.trigger_word and f.trigger_word not in s.prompt and w]
    return ", ".join([*dict.fromkeys(words), s.prompt])


def infotext(s: GenerateSettings, seed: int, sampler: str, model: str) -> str:
    """A1111-style ``parameters`` text: prompt (with ``<lora:name:weight>`` tags), negative prompt, settings."""
    tags = "".join(f" <lora:{f.name}:{w:g}>" for f, w in s.loras)
    lines = [s.prompt + tags]
    if s.negative_prompt:
        lines.append(f"Negative prompt: {s.negative_prompt}")
    settings = (f"Steps: {s.steps}, Sampler: {sampler}, CFG scale: {s.cfg}, Seed: {seed}, "
                f"Size: {s.width}x{s.height}, Model: {model}")
    if s.loras:
        settings += ', Lora hashes: "' + ", ".join(f"{f.name}: {f.short_hash}" for f, _ in s.loras) + '"'
    lines.append(settings)
    return "\n".join(lines)


def use_sampler(pipe, name: str) -> str:
    """Put the named scheduler on the pipeline (built from the model's own config); returns its A1111 name."""
    import diffusers

    own = _OWN_SCHEDULERS.setdefault(id(pipe), pipe.scheduler)
    wanted = SAMPLERS.get(name)
    if not wanted or wanted == type(own).__name__:
        pipe.scheduler = own
    elif type(pipe.scheduler).__name__ != wanted:
        pipe.scheduler = getattr(diffusers, wanted).from_config(own.config)
    return SAMPLER_NAMES.get(type(pipe.scheduler).__name__, type(pipe.scheduler).__name__)


_OWN_SCHEDULERS: dict[int, object] = {}


def run(runtime: Runtime, s: GenerateSettings, keep_loras: list[LoraFile] | None = None) -> GenerateResult:
    """Generate ``batch_count`` × ``num_images`` images; image k uses seed + k.

    LoRAs are activated on the shared pipeline (loaded once, others deleted unless in ``keep_loras``).
    """
    import torch

    from pipelines.generate.lora_adapters import adapters_for

    check_inputs(s)
    seed = resolve_seed(s.seed)
    pipe = runtime.model("sd15")
    modules = adapters_for(pipe).apply(s.loras, keep=keep_loras or ())
    sampler = use_sampler(pipe, s.sampler)
    prompt = effective_prompt(s)
    model = runtime.ref("sd15").ref.rstrip("/").split("/")[-1]
    images: list[Image.Image] = []
    for batch in range(int(s.batch_count)):
        first = seed + batch * s.num_images
        generators = [torch.Generator("cpu").manual_seed((first + i) % (MAX_SEED + 1)) for i in range(s.num_images)]
        out = pipe(prompt=[prompt] * s.num_images, negative_prompt=[s.negative_prompt] * s.num_images,
                   num_inference_steps=int(s.steps), guidance_scale=float(s.cfg), width=int(s.width),
                   height=int(s.height), generator=generators).images
        for i, image in enumerate(out):
            k = first + i
            image.info["parameters"] = infotext(replace(s, prompt=prompt, seed=k), k, sampler, model)
        images += out
    log.info("generated %d image(s) %dx%d, seed %d, LoRAs %s", len(images), s.width, s.height, seed, modules)
    return GenerateResult(images, seed, modules)


def generate(runtime: Runtime, s: GenerateSettings) -> tuple[list[Image.Image], int]:
    """Generate the images of ``s``; returns them (each with its infotext) and the base seed."""
    result = run(runtime, s)
    return result.images, result.seed
