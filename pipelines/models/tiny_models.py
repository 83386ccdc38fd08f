"""Build the ``tiny`` profile's models from configs with fixed seeds into a cache folder, downloading nothing.

Each builder writes a folder that the role's loader in :mod:`pipelines.models.loaders` opens exactly as it opens the
``full`` model: a diffusers/transformers ``save_pretrained`` folder, a timm ``local-dir`` folder, or
``config.json`` + ``model.safetensors`` for the torchvision VGG features and LPIPS. Weights are safetensors only.
A build happens in a temporary sibling folder that is renamed into place once complete, so a crash never leaves
a half model behind; the ``.complete`` marker says which build version wrote the folder.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

log = logging.getLogger(__name__)

MARKER = ".complete"
BUILD_VERSION = 2  # bump when a builder changes, so cached folders are rebuilt
SEED = 0
VGG_WIDTH_DIVISOR = 8
VGG_CFGS = {"vgg16": "D", "vgg19": "E"}  # torchvision.models.vgg.cfgs keys
WORDS = ("a", "an", "the", "photo", "picture", "of", "person", "man", "woman", "girl", "boy", "face", "hair",
         "with", "and", "in", "on", "red", "blue", "green", "black", "white", "pink", "dress", "shirt", "shoes",
         "smiling", "standing", "sitting", "street", "room", "background", "anime", "style", "painting", "cat",
         "dog", "circle", "square", "triangle", "sky", "tree", "house", "long", "short", "blonde", "brown")


class TinyBuildError(RuntimeError):
    """A tiny model cannot be built into the requested folder; the message says what to do."""


def build(role: str, target: Path) -> Path:
    """Build the tiny model of ``role`` into ``target`` unless a current build is already there."""
    target = Path(target)
    if _is_current(target):
        return target
    builder = BUILDERS.get(role)
    if builder is None:
        raise TinyBuildError(f"No tiny model builder for role {role!r}; buildable roles: {', '.join(BUILDERS)}.")
    if target.exists() and not (target / MARKER).is_file() and any(target.iterdir()):
        raise TinyBuildError(f"{target} holds files but no finished tiny {role} build; delete it or pick "
                             "another cache folder.")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=target.parent))
    try:
        log.info("building the tiny %s model into %s", role, target)
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.manual_seed(SEED)
            builder(tmp)
        (tmp / MARKER).write_text(json.dumps({"role": role, "version": BUILD_VERSION}) + "\n")
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache folder is not
        _swap_into_place(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _is_current(target: Path) -> bool:
    try:
        return json.loads((target / MARKER).read_text()).get("version") == BUILD_VERSION
    except (OSError, ValueError, AttributeError):
        return False


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Rename the finished build over ``target``; an outdated build of ours is moved aside and deleted."""
    old = None
    if (target / MARKER).is_file():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except OSError:
        if not _is_current(target):  # a concurrent builder may have won the race, which is fine
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _clip_tokenizer():
    from pipelines.models.toy_tokenizer import build_tokenizer
    return build_tokenizer(model_max_length=77)


def _clip_text_config(tokenizer, hidden: int = 32, projection: int = 32):
    from transformers import CLIPTextConfig
    return CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                          num_hidden_layers=2, num_attention_heads=4, projection_dim=projection,
                          max_position_embeddings=tokenizer.model_max_length, bos_token_id=tokenizer.bos_token_id,
                          eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def _wordpiece_vocab() -> dict[str, int]:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces = [*specials, *WORDS, *letters, *(f"##{c}" for c in letters), ".", ","]
    return {tok: i for i, tok in enumerate(dict.fromkeys(pieces))}


def build_captioner(out: Path) -> None:
    """BLIP captioner: 64-pixel ViT (patch 16), 2-layer BERT decoder, generated WordPiece vocab."""
    from transformers import (BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor,
                              BlipProcessor)
    vocab = _wordpiece_vocab()
    tokenizer = BertTokenizer(vocab=vocab, bos_token="[DEC]", model_max_length=32)
    size = 64
    image_processor = BlipImageProcessor(size={"height": size, "width": size})
    config = BlipConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=size, patch_size=16, projection_dim=32),
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=64, projection_dim=32,
                         bos_token_id=vocab["[DEC]"], eos_token_id=vocab["[SEP]"], sep_token_id=vocab["[SEP]"],
                         pad_token_id=vocab["[PAD]"]),
        projection_dim=32, image_text_hidden_size=32)
    BlipForConditionalGeneration(config).save_pretrained(out)
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)


def build_vit(out: Path) -> None:
    """ViT-B/16 geometry (224 pixels, 14x14 tokens) with 64 wide, 2 deep blocks, in timm's local-dir format."""
    import timm
    from timm.models import save_for_hf
    size = dict(embed_dim=64, depth=2, num_heads=2)
    model = timm.create_model("vit_base_patch16_224", pretrained=False, **size)
    # model_args named: not every timm version records the creation arguments in config.json by itself
    save_for_hf(model, str(out), model_config={"pretrained_cfg": {"tag": "tiny_random"}}, model_args=size,
                safe_serialization=True)


def vgg_cfg(arch: str, divisor: int = VGG_WIDTH_DIVISOR) -> list[int | str]:
    """torchvision's VGG layer list for ``arch`` with every width divided by ``divisor``."""
    from torchvision.models.vgg import cfgs
    return [v if v == "M" else v // divisor for v in cfgs[VGG_CFGS[arch]]]


def make_vgg_features(cfg: list[int | str]) -> torch.nn.Sequential:
    """VGG ``.features`` built by torchvision's own ``make_layers`` (same conv/ReLU/pool indices as the full net)."""
    from torchvision.models.vgg import make_layers
    return make_layers(cfg, batch_norm=False)


def _build_vgg(arch: str, out: Path) -> None:
    """Only ``.features`` is saved: the classifier is unused and would dominate the size."""
    from safetensors.torch import save_file
    cfg = vgg_cfg(arch)
    features = make_vgg_features(cfg)
    for m in features.modules():  # the initialisation torchvision's VGG applies
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            torch.nn.init.zeros_(m.bias)
    (out / "config.json").write_text(json.dumps({"arch": arch, "cfg": cfg, "part": "features"}, indent=2) + "\n")
    save_file({k: v.contiguous() for k, v in features.state_dict().items()}, str(out / "model.safetensors"))


def build_lpips(out: Path) -> None:
    """LPIPS-alex: the linear heads shipped in the lpips package over a random AlexNet trunk (stored as float16)."""
    import lpips
    from safetensors.torch import save_file
    config = {"net": "alex", "version": "0.1", "lpips": True, "storage_dtype": "float16"}
    model = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(state, str(out / "model.safetensors"))


def build_clip_scorer(out: Path) -> None:
    """CLIP with 32-pixel images (patch 8), 32-wide towers and the generated CLIP tokenizer."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor
    tokenizer = _clip_tokenizer()
    size = 32
    image_processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    text = _clip_text_config(tokenizer).to_dict()
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  image_size=size, patch_size=8, projection_dim=32)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=32)).save_pretrained(out)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)


def build_face_id(out: Path) -> None:
    """The face_id role's small CNN (pipelines.face_id.tiny_backbone) with seed-0 random weights."""
    from safetensors.torch import save_file

    from pipelines.face_id import TINY_DIM, TINY_WIDTHS, tiny_backbone
    torch.manual_seed(SEED)
    backbone = tiny_backbone(TINY_WIDTHS, TINY_DIM)
    config = {"arch": "tiny_cnn", "widths": list(TINY_WIDTHS), "dim": TINY_DIM}
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file({k: v.contiguous() for k, v in backbone.state_dict().items()}, str(out / "model.safetensors"))


BUILDERS: dict[str, Callable[[Path], None]] = {
    "captioner": build_captioner,
    "vit": build_vit,
    "vgg19": lambda out: _build_vgg("vgg19", out),
    "vgg16": lambda out: _build_vgg("vgg16", out),
    "lpips": build_lpips,
    "clip_scorer": build_clip_scorer,
    "face_id": build_face_id,
}
