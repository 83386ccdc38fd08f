"""Model registry, overrides and profile selection."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.models.profile import choose_profile
from pipelines.models.registry import (ROLES, TOY_HAIR, TOY_SD, RegistryError, env_overrides, parse_overrides,
                                resolve)

EXPECTED_ROLES = {"sd15", "portrait", "sdxl_inpaint", "captioner", "vit", "anime", "vgg19", "vgg16", "faces", "face_id",
                  "hair_segmenter", "hair", "lpips", "clip_scorer"}


def test_every_role_has_a_full_and_a_tiny_model(tmp_path):
    assert set(ROLES) == EXPECTED_ROLES
    for role in ROLES:
        full, tiny = resolve(role, "full", {}, tmp_path), resolve(role, "tiny", {}, tmp_path)
        assert full.ref == ROLES[role].full and full.source == "full"
        assert tiny.ref != full.ref and tiny.source == "tiny"


def test_the_anime_default_ships_for_tiny_only(tmp_path):
    tiny = resolve("anime", "tiny", {}, tmp_path)
    assert Path(tiny.ref).is_file() and not tiny.build
    assert resolve("anime", "full", {}, tmp_path).ref == ""
    assert resolve("anime", "full", {"anime": "team/anime-run"}, tmp_path).ref == "team/anime-run"


def test_the_hair_roles_ship_the_toy_hair_model_for_tiny(tmp_path):
    from pipelines.models import loaders

    base, model = resolve("sdxl_inpaint", "tiny", {}, tmp_path), resolve("hair", "tiny", {}, tmp_path)
    assert base.ref == str(TOY_HAIR) and not base.build and Path(model.ref) == TOY_HAIR / "hair_model.safetensors"
    assert resolve("hair", "full", {}, tmp_path).ref == ""
    if (TOY_HAIR / "model_index.json").is_file():
        pipe = loaders.load("sdxl_inpaint", base.ref)
        assert pipe.unet.config.in_channels == 9 and pipe.unet.config.addition_embed_type == "text_time"
        assert loaders.load("hair", base.ref) == Path(model.ref)


def test_tiny_sd_roles_use_the_toy_model_and_built_roles_the_cache(tmp_path):
    assert resolve("sd15", "tiny", {}, tmp_path).ref == str(TOY_SD)
    assert resolve("portrait", "tiny", {}, tmp_path).ref == str(TOY_SD)
    vit = resolve("vit", "tiny", {}, tmp_path)
    assert vit.build and Path(vit.ref) == tmp_path / "tiny" / "vit"


def test_override_wins_over_both_profiles(tmp_path):
    overrides = parse_overrides([f"sd15={tmp_path}", "captioner=someone/blip"])
    for profile in ("tiny", "full"):
        assert resolve("sd15", profile, overrides, tmp_path).ref == str(tmp_path.resolve())
        assert resolve("captioner", profile, overrides, tmp_path).source == "override"


def test_env_override(tmp_path):
    assert env_overrides({"ATELIER_MODEL_VIT": "hf-hub:timm/other"}) == {"vit": "hf-hub:timm/other"}
    with pytest.raises(RegistryError, match="ATELIER_MODEL_SD15"):
        env_overrides({"ATELIER_MODEL_SD15": str(tmp_path / "missing")})


@pytest.mark.parametrize("item, words", [
    ("sd15", "ROLE=ID_OR_PATH"),
    ("=x/y", "ROLE=ID_OR_PATH"),
    ("unet=x/y", "Unknown model role 'unet'"),
    ("sd15=/no/such/folder", "/no/such/folder does not exist"),
])
def test_bad_overrides_say_what_is_wrong(item, words):
    with pytest.raises(RegistryError, match=words.replace("(", r"\(")):
        parse_overrides([item])


def _probes(gpu=None, hub=False, cached=False):
    return dict(gpu_name=lambda: gpu, hub_up=lambda: hub, cached=lambda: cached)


@pytest.mark.parametrize("requested, probes, name, reason", [
    ("tiny", _probes(gpu="H100", hub=True), "tiny", "chosen with --profile tiny"),
    ("auto", _probes(), "tiny", "no GPU found"),
    ("auto", _probes(gpu="RTX 4090", hub=True), "full", "Hub answers"),
    ("auto", _probes(gpu="RTX 4090", cached=True), "full", "weights are cached"),
    ("auto", _probes(gpu="RTX 4090"), "tiny", "Hub is unreachable"),
    ("full", _probes(gpu="RTX 3090"), "full", "RTX 3090"),
])
def test_profile_choice_and_reason(requested, probes, name, reason):
    choice = choose_profile(requested, **probes)
    assert choice.name == name and reason in choice.reason
    assert choice.device == ("cuda" if name == "full" and probes["gpu_name"]() else "cpu")


def test_unknown_profile_is_refused():
    with pytest.raises(RegistryError, match="Unknown profile 'fast'"):
        choose_profile("fast", **_probes())
