"""The tiny models build deterministically, offline, and load through the same loaders as the full models."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
from PIL import Image

from pipelines.models import loaders, registry, tiny_models
from pipelines.models.loaders import ModelLoadError

BUILD_ROLES = [name for name, role in registry.ROLES.items() if role.tiny == "build"]


@pytest.fixture(scope="module", autouse=True)
def no_network():
    """Any connection to a non-loopback address fails, so a hidden download cannot pass unnoticed."""
    real_connect = socket.socket.connect

    def guarded(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if sock.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
            raise OSError(f"test tried to reach the network: {address}")
        return real_connect(sock, address)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", guarded)
        yield


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {role: tiny_models.build(role, root / role) for role in BUILD_ROLES}


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def image(color=(200, 120, 60), size=64) -> Image.Image:
    return Image.new("RGB", (size, size), color)


def test_every_build_role_has_a_builder():
    assert set(BUILD_ROLES) == set(tiny_models.BUILDERS)


@pytest.mark.parametrize("role", BUILD_ROLES)
def test_second_build_is_a_noop(built, role):
    before = snapshot(built[role])
    assert (built[role] / tiny_models.MARKER).is_file()
    assert any(name.endswith(".safetensors") for name in before)
    assert not any(name.endswith((".bin", ".pt", ".pth", ".ckpt")) for name in before)
    assert tiny_models.build(role, built[role]) == built[role]
    assert snapshot(built[role]) == before


@pytest.mark.parametrize("role", BUILD_ROLES)
def test_builds_are_byte_identical(built, role, tmp_path):
    again = tiny_models.build(role, tmp_path / role)
    files = sorted(p.relative_to(built[role]) for p in built[role].rglob("*.safetensors"))
    assert files == sorted(p.relative_to(again) for p in again.rglob("*.safetensors"))
    for rel in files:
        assert (built[role] / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_builds_stay_small(built):
    for role, folder in built.items():
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        assert size < 8_000_000, (role, size)


def test_captioner_captions(built):
    processor, model = loaders.load("captioner", str(built["captioner"]))
    ids = model.generate(**processor(images=image(), return_tensors="pt"), max_new_tokens=5)
    assert isinstance(processor.decode(ids[0], skip_special_tokens=True), str)


def test_vit_keeps_the_full_geometry(built):
    model = loaders.load("vit", str(built["vit"]))
    assert not model.training
    with torch.no_grad():
        tokens = model.forward_features(torch.zeros(1, 3, 224, 224))
    assert tokens.shape == (1, 1 + 14 * 14, model.embed_dim)
    assert loaders.load("vit", "local-dir:" + str(built["vit"])).embed_dim == model.embed_dim


@pytest.mark.parametrize("role,relus", [("vgg19", [1, 6, 11, 20, 29]), ("vgg16", [3, 8, 15, 22, 29])])
def test_vgg_keeps_the_layer_indices(built, role, relus):
    features = loaders.load(role, str(built[role]))
    assert all(isinstance(features[i], torch.nn.ReLU) for i in relus)
    assert not any(p.requires_grad for p in features.parameters())
    with torch.no_grad():
        assert features(torch.zeros(1, 3, 64, 64)).shape[-1] == 2


def test_lpips_distance(built):
    model = loaders.load("lpips", str(built["lpips"]))
    a = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    b = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        assert model(a, a).item() == pytest.approx(0.0, abs=1e-6)
        assert model(a, b).item() > 0


def test_clip_scorer_logits(built):
    processor, model = loaders.load("clip_scorer", str(built["clip_scorer"]))
    inputs = processor(text=["a red circle", "a blue square"], images=[image(), image((0, 0, 255))],
                       return_tensors="pt", padding=True)
    with torch.no_grad():
        assert model(**inputs).logits_per_image.shape == (2, 2)


def test_offline_faces_find_nothing_on_blank_and_tell_people_apart():
    """dlib's real models: the same photo mirrored is closer than two different people (packages' samples)."""
    import numpy as np
    from matplotlib import cbook
    from PIL import ImageOps
    from skimage import data

    faces = loaders.load("faces", registry.ROLES["faces"].tiny)
    assert faces.detect(Image.new("RGB", (128, 128), "white")) == []
    hopper = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    astronaut = Image.fromarray(data.astronaut())
    (box, a), (_, b), (_, c) = (faces.identities(im)[0] for im in (hopper, ImageOps.mirror(hopper), astronaut))
    assert box[2] > 100 and abs(np.linalg.norm(a) - 1) < 1e-5  # the largest face comes first
    same, other = float(a @ b), float(a @ c)
    assert same > 0.95 and other < same - 0.05, (same, other)  # measured 0.990 and 0.882


def test_faces_missing_models_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="dlib face models are missing"):
        loaders.load("faces", f"dlib:{tmp_path}")


def test_insightface_boxes_become_xywh():
    class Face:
        bbox = [10.2, 20.0, 50.0, 80.4, 0.9]
        normed_embedding = [1.0, 0.0]

    class App:
        def get(self, bgr):
            assert bgr.shape == (100, 100, 3)
            return [Face()]

    assert loaders.InsightFaces(App()).detect(image(size=100)) == [(10, 20, 40, 60)]


@pytest.mark.parametrize("role", [*BUILD_ROLES, "sd15"])
def test_missing_folder_names_the_path(role, tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError, match=str(missing)):
        loaders.load(role, str(missing))


def test_broken_folder_is_a_load_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="clip_scorer"):
        loaders.load("clip_scorer", str(tmp_path))


def test_unknown_role_is_a_load_error():
    with pytest.raises(ModelLoadError, match="known roles"):
        loaders.load("nope", "x")


def test_failed_build_leaves_nothing(tmp_path, monkeypatch):
    def explode(out: Path) -> None:
        (out / "half.safetensors").write_bytes(b"x")
        raise RuntimeError("boom")

    monkeypatch.setitem(tiny_models.BUILDERS, "vgg16", explode)
    with pytest.raises(RuntimeError, match="boom"):
        tiny_models.build("vgg16", tmp_path / "vgg16")
    assert list(tmp_path.iterdir()) == []


def test_foreign_folder_is_not_overwritten(tmp_path):
    target = tmp_path / "vgg16"
    target.mkdir()
    (target / "mine.txt").write_text("keep")
    with pytest.raises(tiny_models.TinyBuildError, match=str(target)):
        tiny_models.build("vgg16", target)
    assert (target / "mine.txt").read_text() == "keep"


def test_outdated_build_is_replaced(tmp_path, monkeypatch):
    target = tiny_models.build("vgg16", tmp_path / "vgg16")
    monkeypatch.setattr(tiny_models, "BUILD_VERSION", tiny_models.BUILD_VERSION + 1)
    assert tiny_models.build("vgg16", target) == target
    assert tiny_models._is_current(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vgg16"]
