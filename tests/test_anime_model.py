"""The photo → anime model (seed 002) in the tiny profile: shapes, AdaIN/alpha, losses, checkpoints, inputs."""
from __future__ import annotations

import pickle

import pytest
import torch
from PIL import Image

from pipelines.anime.stylize import Stylizer, StylizeError, check_image, output_size
from pipelines.anime.model import (AnimeStyleModel, CheckpointError, TINY_DECODER_WIDTHS, adain, read_checkpoint,
                                   save_checkpoint)
from training.anime.loss import VGGFeatures, losses
from training.anime.settings import AnimeSettingsError, resolve


@pytest.fixture(scope="module")
def model(tiny_runtime):
    torch.manual_seed(0)
    return AnimeStyleModel(tiny_runtime.model("vit"), TINY_DECODER_WIDTHS).eval()


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(1)
    return torch.rand(2, 3, 224, 224, generator=g), torch.rand(2, 3, 224, 224, generator=g)


def test_encoder_gives_a_14x14_map_of_the_vit_width(model, batch):
    feats = model.vit_encoder(batch[0])
    assert feats.shape == (2, model.vit_encoder.vit.embed_dim, 14, 14)


def test_output_is_an_rgb_224_image_in_tanh_range(model, batch):
    with torch.no_grad():
        out = model(*batch)
    assert out.shape == (2, 3, 224, 224)
    assert out.min() >= -1 and out.max() <= 1 and out.std() > 0


def test_adain_gives_the_style_statistics():
    content, style = torch.randn(2, 8, 14, 14), torch.randn(2, 8, 14, 14) * 3 + 5
    out = adain(content, style)
    assert torch.allclose(out.mean((2, 3)), style.mean((2, 3)), atol=1e-4)
    assert torch.allclose(out.std((2, 3), unbiased=False), style.std((2, 3), unbiased=False), atol=1e-3)


def test_alpha_zero_is_exactly_the_decoder_on_the_content_features(model, batch):
    with torch.no_grad():
        assert torch.equal(model(*batch, alpha=0.0), model.decoder(model.vit_encoder(batch[0])))
        assert not torch.equal(model(*batch, alpha=1.0), model(*batch, alpha=0.0))


def test_alpha_outside_0_1_is_refused(model, batch):
    with pytest.raises(ValueError, match="alpha must be between 0 and 1"):
        model(*batch, alpha=1.5)


@pytest.mark.parametrize("channels", [1, 4])
def test_grayscale_or_rgba_tensors_are_refused_in_one_sentence(model, channels):
    with pytest.raises(ValueError, match=r"content batch must be \(B, 3, H, W\) RGB"):
        model(torch.rand(1, channels, 224, 224), torch.rand(1, 3, 224, 224))


def _loss_net(tiny_runtime):
    return VGGFeatures(tiny_runtime.model("vgg19"), resolve().layer_indices())


def test_gram_and_tv_options_change_the_loss(tiny_runtime, model, batch):
    vgg = _loss_net(tiny_runtime)
    with torch.no_grad():
        generated = model(*batch)
        base = losses(vgg, generated, *batch, resolve())
        gram = losses(vgg, generated, *batch, resolve({"style_loss": "gram"}))
        tv = losses(vgg, generated, *batch, resolve({"lambda_tv": "10"}))
    base, gram, tv = ({k: v.item() for k, v in d.items()} for d in (base, gram, tv))
    assert base["tv"] == 0 and tv["tv"] > 0
    assert tv["total"] == pytest.approx(base["total"] + 10 * tv["tv"], rel=1e-5)
    assert gram["style"] != pytest.approx(base["style"], rel=1e-3)
    assert gram["content"] == pytest.approx(base["content"])


def test_bad_style_loss_is_named():
    with pytest.raises(AnimeSettingsError, match="style_loss must be one of meanstd, gram"):
        resolve({"style_loss": "fancy"})


def test_loss_decreases_on_a_fixed_batch(tiny_runtime, batch):
    torch.manual_seed(0)
    model = AnimeStyleModel(tiny_runtime.model("vit"), TINY_DECODER_WIDTHS)
    vgg, s = _loss_net(tiny_runtime), resolve()
    opt = torch.optim.AdamW(model.decoder.parameters(), lr=1e-3)
    first = last = None
    for _ in range(12):
        total = losses(vgg, model(*batch), *batch, s)["total"]
        opt.zero_grad()
        total.backward()
        opt.step()
        first, last = first or total.item(), total.item()
    assert last < 0.8 * first


def test_dataparallel_and_plain_checkpoints_give_identical_outputs(tmp_path, tiny_runtime, model, batch):
    wrapped = torch.nn.DataParallel(model)  # on the CPU it only adds the ``module.`` prefix, as on the seed's GPUs
    assert all(k.startswith("module.") for k in wrapped.state_dict())
    torch.save(wrapped.state_dict(), tmp_path / "seed_style.pth")  # what the seed's notebook wrote
    save_checkpoint(wrapped, tmp_path / "wrapped.safetensors")
    save_checkpoint(model, tmp_path / "plain.safetensors")
    stylize = Stylizer(tiny_runtime)
    outputs = []
    for name in ("seed_style.pth", "wrapped.safetensors", "plain.safetensors"):
        loaded = stylize.model(tmp_path / name)
        with torch.no_grad():
            outputs.append(loaded(*batch))
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[1], outputs[2])
    with torch.no_grad():
        assert torch.equal(outputs[2], model(*batch))


def test_pickled_objects_are_never_unpickled(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("ran",))
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"decoder.x": Evil()}, protocol=2))
    with pytest.raises(CheckpointError, match="evil.pt is not a plain PyTorch state dict"):
        read_checkpoint(path)


def test_a_checkpoint_of_another_width_is_refused(tmp_path, tiny_runtime, model):
    other = AnimeStyleModel(tiny_runtime.model("vit"), (8, 8, 8, 8))
    state = {k: v for k, v in other.state_dict().items() if k.startswith("decoder.")}
    state["decoder.layers.0.weight"] = torch.zeros(3, 8, 4, 4)
    from safetensors.torch import save_file
    save_file(state, tmp_path / "odd.safetensors")
    with pytest.raises(CheckpointError, match="odd.safetensors does not fit this model"):
        Stylizer(tiny_runtime).model(tmp_path / "odd.safetensors")


def test_stylize_keeps_the_input_aspect_and_accepts_gray_and_rgba(tmp_path, tiny_runtime, model):
    ckpt = save_checkpoint(model, tmp_path / "m.safetensors")
    stylize = Stylizer(tiny_runtime)
    photo = Image.new("L", (120, 60), 128)  # grayscale
    style = Image.new("RGBA", (50, 50), (255, 0, 0, 128))
    out = stylize(ckpt, photo, style, alpha=0.5)
    assert out.mode == "RGB" and out.size == (120, 60)
    kept = stylize(ckpt, Image.new("RGB", (64, 96), (200, 30, 30)), style, keep_colours=True)
    assert kept.size == (64, 96)
    r, g, b = kept.getpixel((32, 48))
    assert r > g and r > b  # the content's red survives colour preservation
    assert output_size((4000, 2000)) == (1024, 512)


def test_bad_inputs_give_one_sentence(tmp_path, tiny_runtime):
    not_image = tmp_path / "notes.png"
    not_image.write_text("hello")
    with pytest.raises(StylizeError, match="The content image: notes.png"):
        check_image(not_image, "content")
    with pytest.raises(StylizeError, match="more than the limit"):
        check_image(Image.new("L", (7000, 6000)), "style")
    with pytest.raises(StylizeError, match="Choose a trained checkpoint"):
        Stylizer(tiny_runtime)(None, Image.new("RGB", (8, 8)), Image.new("RGB", (8, 8)))
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.safetensors")


def test_a_fine_tuned_encoder_is_loaded_without_touching_the_shared_one(tmp_path, tiny_runtime, model, batch):
    import copy
    with torch.no_grad():
        before = model(*batch)
    tuned = copy.deepcopy(model)
    with torch.no_grad():
        tuned.vit_encoder.vit.blocks[0].mlp.fc1.weight.add_(0.5)
    ckpt = save_checkpoint(tuned, tmp_path / "tuned.safetensors", include_encoder=True)
    loaded = Stylizer(tiny_runtime).model(ckpt)
    with torch.no_grad():
        assert torch.equal(loaded(*batch), tuned(*batch))
        assert not torch.equal(loaded(*batch), before)
        assert torch.equal(model(*batch), before)  # the runtime's shared ViT is unchanged


def test_face_crop_centres_on_the_single_face():
    from pipelines.anime.stylize import face_centred

    class OneFace:
        def detect(self, image):
            return [(150, 40, 20, 20)]
    image = Image.new("RGB", (200, 100))
    assert face_centred(image, OneFace()).size == (44, 44)
    assert face_centred(image, type("NoFace", (), {"detect": lambda self, im: []})()).size == (200, 100)


def test_stylize_with_face_crop_uses_the_faces_role(tmp_path, tiny_runtime, model):
    ckpt = save_checkpoint(model, tmp_path / "m.safetensors")
    out = Stylizer(tiny_runtime)(ckpt, Image.new("RGB", (80, 50), "gray"), Image.new("RGB", (20, 20), "red"),
                                 face_crop=True)
    assert out.size == (80, 50)  # no face in a plain image: the whole photo is used


def test_a_seed_notebook_checkpoint_loads(tmp_path, tiny_runtime, model, batch):
    """The seed saved DataParallel keys, the timm model directly under vit_encoder, its Sequential nested, and VGG."""
    state = {f"module.vit_encoder.{k}": v for k, v in model.vit_encoder.vit.state_dict().items()
             if not k.startswith("head.")}  # the seed replaced the head by Identity
    state.update({f"module.decoder.decoder.{k.removeprefix('layers.')}": v
                  for k, v in model.decoder.state_dict().items()})
    state["module.vgg_loss_net.0.weight"] = torch.zeros(4, 3, 3, 3)
    torch.save(state, tmp_path / "vit_style_epoch_50.pth")
    loaded = Stylizer(tiny_runtime).model(tmp_path / "vit_style_epoch_50.pth")
    with torch.no_grad():
        assert torch.equal(loaded(*batch), model(*batch))


def test_the_anime_role_fetches_model_safetensors_from_a_repo_or_a_folder(tmp_path, monkeypatch):
    import huggingface_hub

    from pipelines.models import loaders

    calls = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download",
                        lambda repo, filename: calls.append((repo, filename)) or str(tmp_path / filename))
    assert loaders.load("anime", "team/anime-run") == tmp_path / "model.safetensors"
    assert calls == [("team/anime-run", "model.safetensors")]
    (tmp_path / "run" / "final").mkdir(parents=True)
    assert loaders.load("anime", str(tmp_path / "run" / "final")) == tmp_path / "run" / "final" / "model.safetensors"
    with pytest.raises(loaders.ModelLoadError, match="--model anime=OWNER/REPO"):
        loaders.load("anime", "")
