"""The face_id role: a differentiable identity embedder (tiny CNN; ArcFace ONNX converted to torch in full)."""
from __future__ import annotations

import pytest
import torch

from pipelines.face_id import INPUT_SIZE, FaceIdentity, crop_faces, identity_cosine, tiny_backbone
from pipelines.models.loaders import ModelLoadError, load_face_id


@pytest.fixture(scope="module")
def face_id(tiny_runtime):
    return tiny_runtime.model("face_id")


def test_tiny_face_id_gives_unit_vectors_and_lets_gradients_reach_the_image(face_id):
    torch.manual_seed(0)
    images = torch.rand(2, 3, 64, 64, requires_grad=True)
    boxes = [(16, 12, 48, 52), (10, 10, 40, 44)]
    vectors = face_id(crop_faces(images * 2 - 1, boxes))
    assert vectors.shape == (2, 128) and torch.allclose(vectors.norm(dim=1), torch.ones(2), atol=1e-5)
    same = identity_cosine(face_id, images, images.detach(), boxes)
    assert torch.allclose(same, torch.ones(2), atol=1e-5)
    (1 - identity_cosine(face_id, images, torch.rand(2, 3, 64, 64), boxes)).sum().backward()
    inside, outside = images.grad[0, :, 20:40, 20:40], images.grad[0, :, :, 56:]
    assert inside.abs().sum() > 0 and outside.abs().sum() == 0  # only the face box counts


def test_an_arcface_onnx_file_loads_as_the_same_network_in_torch(tmp_path):
    # The full profile converts insightface's w600k_r50.onnx with onnx2torch; an ONNX export of a known network
    # takes that same path here, where nothing can be downloaded.
    torch.manual_seed(1)
    network = tiny_backbone().eval()
    path = tmp_path / "arcface.onnx"
    torch.onnx.export(network, torch.randn(1, 3, INPUT_SIZE, INPUT_SIZE), str(path), input_names=["input"],
                      dynamic_axes={"input": {0: "batch"}}, dynamo=False)
    loaded = load_face_id(str(path), "cpu", torch.float32)
    faces = torch.rand(3, 3, INPUT_SIZE, INPUT_SIZE) * 2 - 1
    assert torch.allclose(loaded(faces), FaceIdentity(network)(faces), atol=1e-5)
    assert not any(p.requires_grad for p in loaded.parameters())


def test_a_broken_onnx_file_is_named(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not an onnx model")
    with pytest.raises(ModelLoadError, match="broken.onnx"):
        load_face_id(str(path), "cpu", torch.float32)
