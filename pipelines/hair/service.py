"""Hair try-on (seed 000): a portrait in, the same face with other hair out, for the Hair tab and the API.

The hair mask comes from the ``hair_segmenter`` role (or the user), the face identity from the ``faces`` role (the
toy world's own measurements on 64 px toy portraits), the style from a reference photo's hair or, when there is none
and no colour or curl is asked in words, from the portrait's own hair, so that a change of length or bangs keeps
its colour and texture. The model paints inside the mask and the
face and background are blended back from the input, so they are unchanged by construction.
"""
from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from pipelines.hair import model as hair_model
from pipelines.hair import toy_hair
from pipelines.hair.inpaint import widen_to_inpaint
from pipelines.hair.style import style_dim, style_embedding
from pipelines.hair.tryon import blend, paint
from pipelines.hair.vocabulary import load as load_vocabulary
from pipelines.images import user_image

log = logging.getLogger(__name__)
CHOICES = ("color", "curl", "length", "bang", "basestyle")  # K-Hairstyle attributes a user can ask for
MIN_MASK, MAX_MASK = 0.005, 0.9  # of the image: less paints nothing, more leaves no face to keep
MAX_INPUT_PIXELS = 40_000_000  # far above any portrait a person uploads; stops decompression bombs early


class TryOnError(ValueError):
    """The request cannot be painted; the message is one sentence for the user."""


@dataclass(frozen=True)
class Request:
    """One try-on; attribute values in English or Korean, "" keeps the portrait's own."""
    portrait: Image.Image
    color: str = ""
    curl: str = ""
    length: str = ""
    bang: str = ""
    basestyle: str = ""
    text: str = ""  # added to the prompt as it is
    reference: Image.Image | None = None  # a photo whose hair gives the style tokens
    mask: np.ndarray | None = None  # the user's mask at the portrait's size, True/255 = repaint
    grow: int = 0  # pixels the automatic mask grows by (a longer target length)
    style_strength: float = 1.0
    identity_strength: float = 1.0
    steps: int = 20
    guidance: float = 7.5
    seed: int = 0  # -1: a random one, returned in the result


@dataclass
class Result:
    image: Image.Image  # at the portrait's size
    mask: Image.Image  # the mask used, white = repainted
    identity: float  # cosine of the face region's identity, result (before blending) vs portrait
    prompt: str
    seed: int
    notes: list[str] = field(default_factory=list)


def prompt_for(request: Request) -> str:
    """The English prompt of the requested attributes (as training.prepare hair writes prompts) plus the free text."""
    vocabulary = load_vocabulary()
    attributes = {}
    for name in CHOICES:
        value = getattr(request, name).strip()
        if value and vocabulary.english(name, value) is None:
            known = ", ".join(vocabulary.values(name))
            raise TryOnError(f"The {name} {value!r} is not one the model knows; choose one of: {known}.")
        if value:
            attributes[name] = value
    words = vocabulary.prompt(attributes)[0] if attributes else "hairstyle"
    return f"{words}, {request.text.strip()}" if request.text.strip() else words


def grown(mask: np.ndarray, pixels: int) -> np.ndarray:
    """``mask`` dilated by ``pixels`` (a disc), for a target longer or fuller than the hair there now."""
    import cv2

    if pixels <= 0:
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1,) * 2)
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


def automatic_mask(segmenter, image: Image.Image, grow: int = 0) -> np.ndarray:
    """The segmented hair of ``image``, grown by 1 % of its side (as prepare grows label polygons) plus ``grow``."""
    return grown(segmenter.mask(image), max(1, round(min(image.size) / 100)) + max(0, grow))


class HairTryOn:
    """A base pipeline with one hair model installed, and the roles a try-on reads."""

    def __init__(self, runtime, model_path: Path):
        from pipelines.models import loaders

        self.model = hair_model.load(model_path)
        self.name = Path(model_path).stem
        self.base_name = Path(runtime.ref("sdxl_inpaint").ref).name
        device, dtype = runtime.profile.device, runtime.dtype
        self.pipe = loaders.load("sdxl_inpaint", runtime.ref("sdxl_inpaint").ref, device=device, dtype=dtype)
        self.pipe.set_progress_bar_config(desc="hair try-on")  # tqdm: the Hair tab's progress bar follows it
        widen_to_inpaint(self.pipe.unet)
        hair_model.install(self.pipe, self.model)
        self.size = int(self.model.metadata.get("resolution") or
                        self.pipe.unet.config.sample_size * self.pipe.vae_scale_factor)
        self.runtime = runtime
        texture = self.model.texture_encoder()
        self.texture = texture.to(device) if texture is not None else None
        made, trained = style_dim(runtime.model("vgg16"), self.texture), int(self.model.metadata.get("style_dim", 0))
        if trained and trained != made:
            raise hair_model.HairModelError(
                f"{Path(model_path).name} was trained with {trained}-d style vectors but this version of Atelier makes "
                f"{made}-d ones; train it again, or choose another model.")

    def __call__(self, request: Request) -> Result:
        notes: list[str] = []
        portrait = user_image(request.portrait, "portrait", MAX_INPUT_PIXELS, TryOnError)
        if request.mask is not None and np.asarray(request.mask).shape[:2] != portrait.size[::-1]:
            height, width = np.asarray(request.mask).shape[:2]
            raise TryOnError(f"The mask is {width}x{height} pixels but the portrait is {portrait.width}x"
                             f"{portrait.height}; give a mask of the portrait's size.")
        square = ImageOps.fit(portrait, (self.size, self.size), Image.Resampling.LANCZOS)
        identity, box = self._identity(square, notes)
        mask = self._mask(square, request)
        style = self._style(request, square, mask)
        self._scales(request)
        prompt = prompt_for(request)
        seed = request.seed if request.seed >= 0 else random.randrange(2**32)
        painted = paint(self.pipe, [square], [Image.fromarray(mask.astype(np.uint8) * 255)], [prompt],
                        identity[None], style, request.steps, request.guidance, seed, self.size)[0]
        score = self._identity_score(painted, square, box)
        result = blend(painted, square, mask)
        result = result.resize(portrait.size, Image.Resampling.LANCZOS) if portrait.size != square.size else result
        result.info["parameters"] = self._infotext(request, prompt, seed, portrait.size)
        shown = Image.fromarray(mask.astype(np.uint8) * 255).resize(portrait.size, Image.Resampling.NEAREST)
        return Result(result, shown, score, prompt, seed, notes)

    def _infotext(self, request: Request, prompt: str, seed: int, size: tuple[int, int]) -> str:
        """A1111-style ``parameters``, so the History tab and PNG info read a try-on like any generated image."""
        return (f"{prompt}\nSteps: {request.steps}, Sampler: Euler, CFG scale: {request.guidance:g}, Seed: {seed}, "
                f"Size: {size[0]}x{size[1]}, Model: {self.base_name}, Hair model: {self.name}, "
                f"Style strength: {request.style_strength:g}, Identity strength: {request.identity_strength:g}, "
                f"Reference: {'yes' if request.reference is not None else 'no'}")

    def _identity(self, image: Image.Image, notes: list[str]) -> tuple[torch.Tensor, tuple[float, ...]]:
        """The largest face's embedding and box (x0, y0, x1, y1); the toy world's on toy portraits."""
        found = self.runtime.model("faces").identities(image) if image.size != (toy_hair.SIZE,) * 2 else []
        if not found:
            toy = toy_hair.face_identity(image) if image.size == (toy_hair.SIZE,) * 2 else None
            if toy is None:
                raise TryOnError("No face was found in the portrait; use a photo where one face is clearly visible.")
            found = [toy]
        if len(found) > 1:
            notes.append(f"{len(found)} faces were found; the largest was used.")
        (x, y, w, h), vector = max(found, key=lambda f: f[0][2] * f[0][3])
        dims = int(self.model.metadata.get("identity_dim", len(vector)))
        if len(vector) != dims:
            raise TryOnError(f"This hair model expects {dims}-d face identities but the face model gives "
                             f"{len(vector)}-d ones; use a hair model trained with this profile's face model.")
        return torch.as_tensor(np.asarray(vector, np.float32)), (x, y, x + w, y + h)

    def _mask(self, image: Image.Image, request: Request) -> np.ndarray:
        """The region to repaint at the model's size: the user's mask, else the segmented hair, grown as asked."""
        if request.mask is not None:
            user = Image.fromarray((np.asarray(request.mask) > 0).astype(np.uint8) * 255)
            mask = np.asarray(ImageOps.fit(user, image.size, Image.Resampling.NEAREST)) > 0
            mask = grown(mask, request.grow)
        else:
            mask = automatic_mask(self.runtime.model("hair_segmenter"), image, request.grow)
        share = float(mask.mean())
        if share < MIN_MASK:
            raise TryOnError("The hair mask is empty; paint the hair in the mask editor or upload a mask.")
        if share > MAX_MASK:
            raise TryOnError("The hair mask covers almost the whole image; erase the face and background from it.")
        return mask

    def _style(self, request: Request, square: Image.Image, mask: np.ndarray) -> torch.Tensor:
        """1×D style vector: of the reference's hair; else of the portrait's own hair when no colour or curl is asked
        in words (it carries both, and would fight the words); else none (zeros, as adapter dropout trained)."""
        device = self.runtime.profile.device
        if request.reference is None and (request.color.strip() or request.curl.strip()):
            return torch.zeros(1, int(self.model.metadata["style_dim"]), device=device)
        reference, hair = self._reference(request, square, mask)
        return style_embedding(self.runtime.model("vgg16"), _tensor(reference).to(device),
                               torch.from_numpy(hair)[None, None].float().to(device), self.texture)

    def _reference(self, request: Request, square: Image.Image, mask: np.ndarray) -> tuple[Image.Image, np.ndarray]:
        """The style source: the reference photo's hair, else the portrait's own."""
        if request.reference is None:
            return square, mask
        reference = user_image(request.reference, "reference", MAX_INPUT_PIXELS, TryOnError)
        reference = ImageOps.fit(reference, square.size, Image.Resampling.LANCZOS)
        hair = self.runtime.model("hair_segmenter").mask(reference)
        if hair.mean() < MIN_MASK:
            raise TryOnError("No hair was found in the reference photo; use a photo where the hair is visible.")
        return reference, hair

    def _scales(self, request: Request) -> None:
        for processor in self.pipe.unet.attn_processors.values():
            if hasattr(processor, "to_k_ip"):
                processor.scale = [request.identity_strength, request.style_strength]

    def _identity_score(self, painted: Image.Image, square: Image.Image, box: tuple[float, ...]) -> float:
        from pipelines.face_id import identity_cosine

        face_id = self.runtime.model("face_id")
        made, original = (_tensor(im).to(next(face_id.parameters()).device) for im in (painted, square))
        with torch.no_grad():
            return float(identity_cosine(face_id, made, original, [box])[0])

    def describe(self) -> dict:
        """What the UI shows about the model: name, base, metrics and the gate verdict when it was evaluated."""
        meta = self.model.metadata
        return {"name": self.name, "base_model": meta.get("base_model", ""),
                "metrics": json.loads(meta["metrics"]) if "metrics" in meta else None,
                "gate_passed": meta.get("gate_passed"), "forced": meta.get("forced") == "true"}


def _tensor(image: Image.Image) -> torch.Tensor:
    """1×3×H×W in [-1, 1]."""
    return torch.from_numpy(np.asarray(image.convert("RGB"), np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
