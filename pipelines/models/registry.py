"""The model registry: every model role of the hub, its hub id in the ``full`` profile and its local tiny
model in the ``tiny`` profile. One table, one way to resolve a role to what a loader opens.

An override (``--model ROLE=ID_OR_PATH`` or ``ATELIER_MODEL_<ROLE>``) wins over both profiles.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[2] / "assets"
TOY_SD = ASSETS / "toy-sd"
ANIME_TINY = ASSETS / "anime-tiny" / "model.safetensors"  # made by ``python -m training.anime.default``
HAIR_SEGMENTER_TINY = ASSETS / "hair-segmenter-tiny"  # made by ``python -m training.hair segmenter``
TOY_HAIR = ASSETS / "toy-hair"  # made by ``python -m training.hair toy``: the inpainting base and its hair model


@dataclass(frozen=True)
class Role:
    name: str
    purpose: str
    full: str  # a Hugging Face hub id, a scheme the role's loader understands, or "" when none is published
    tiny: str  # "toy-sd", "build" (built from config into the cache) or a scheme like full


ROLES: dict[str, Role] = {r.name: r for r in (
    Role("sd15", "text-to-image base (fashion and Ghibli LoRAs)",
         "stable-diffusion-v1-5/stable-diffusion-v1-5", "toy-sd"),
    Role("portrait", "DreamBooth portrait base (Realistic Vision 5.1)",
         "SG161222/Realistic_Vision_V5.1_noVAE", "toy-sd"),
    Role("sdxl_inpaint", "hair try-on inpainting (SDXL, 9-channel UNet)",
         "diffusers/stable-diffusion-xl-1.0-inpainting-0.1", str(TOY_HAIR)),
    # Like anime: no full-size hair model is published; the full profile paints with the caller's own runs, models
    # exported to $ATELIER_MODELS/hair, or --model hair=OWNER/REPO (a repo holding hair_model.safetensors).
    Role("hair", "hair try-on model, the Hair tab's default (seed 000)", "", str(TOY_HAIR / "hair_model.safetensors")),
    Role("captioner", "image captions (BLIP large)", "Salesforce/blip-image-captioning-large", "build"),
    Role("vit", "photo→anime encoder (timm ViT-B/16)",
         "hf-hub:timm/vit_base_patch16_224.augreg2_in21k_ft_in1k", "build"),
    # No full-size anime model is published: the full profile stylises with the caller's own runs, or with a
    # teammate's shared run given as --model anime=OWNER/REPO (a repo holding model.safetensors) or a path.
    Role("anime", "photo→anime style model, the Anime tab's default (seed 002)", "", str(ANIME_TINY)),
    Role("vgg19", "style/content loss network", "torchvision:vgg19", "build"),
    Role("vgg16", "perceptual loss network", "torchvision:vgg16", "build"),
    Role("faces", "face detection and identity (insightface; dlib offline)", "insightface:buffalo_l",
         "dlib:face_recognition_models"),
    Role("face_id", "differentiable face identity for the hair identity loss (ArcFace iResNet-50 via onnx2torch)",
         "insightface:buffalo_l/w600k_r50.onnx", "build"),
    Role("hair_segmenter", "hair mask for try-on (SegFormer face parsing, CelebAMask-HQ labels)",
         "jonathandinu/face-parsing", str(HAIR_SEGMENTER_TINY)),
    Role("lpips", "perceptual distance", "lpips:alex", "build"),
    Role("clip_scorer", "prompt/image agreement (CLIP score)", "openai/clip-vit-large-patch14", "build"),
)}
PROFILES = ("auto", "tiny", "full")


class RegistryError(ValueError):
    """A user-supplied role, override or profile is wrong; the message says what to do."""


def env_var(role: str) -> str:
    return f"ATELIER_MODEL_{role.upper()}"


def parse_overrides(items: list[str]) -> dict[str, str]:
    """Turn ``ROLE=ID_OR_PATH`` strings into a dict, checking roles and local paths."""
    overrides: dict[str, str] = {}
    for item in items:
        role, sep, ref = item.partition("=")
        if not sep or not role or not ref:
            raise RegistryError(f"--model {item!r} is not ROLE=ID_OR_PATH, e.g. --model sd15=./my-model.")
        overrides[check_role(role.strip())] = check_ref(ref.strip(), f"--model {item}")
    return overrides


def env_overrides(environ: dict[str, str] | None = None) -> dict[str, str]:
    environ = os.environ if environ is None else environ
    return {role: check_ref(environ[env_var(role)], env_var(role))
            for role in ROLES if environ.get(env_var(role))}


def check_role(role: str) -> str:
    if role not in ROLES:
        raise RegistryError(f"Unknown model role {role!r}; known roles: {', '.join(ROLES)}.")
    return role


def check_ref(ref: str, where: str) -> str:
    """A local-looking reference must exist; hub ids are checked when first loaded."""
    if ref.startswith((".", "/", "~")):
        path = Path(ref).expanduser()
        if not path.exists():
            raise RegistryError(f"{where}: the path {ref} does not exist; give an existing model folder "
                                "or file, or a hub id such as owner/name.")
        return str(path.resolve())
    return ref


@dataclass(frozen=True)
class ModelRef:
    """What a loader opens for a role: a hub id, a local path or a scheme (``torchvision:vgg19``)."""
    role: str
    ref: str
    source: str  # "full", "tiny" or "override"
    build: bool = False  # the tiny model must be built into the cache before loading


def resolve(role: str, profile: str, overrides: dict[str, str], cache_dir: Path) -> ModelRef:
    """Which model a role uses in a concrete profile (``tiny`` or ``full``)."""
    spec = ROLES[check_role(role)]
    if role in overrides:
        return ModelRef(role, overrides[role], "override")
    if profile == "full":
        return ModelRef(role, spec.full, "full")
    if spec.tiny == "toy-sd":
        return ModelRef(role, str(TOY_SD), "tiny")
    if spec.tiny == "build":
        return ModelRef(role, str(cache_dir / "tiny" / role), "tiny", build=True)
    return ModelRef(role, spec.tiny, "tiny")
