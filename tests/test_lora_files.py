"""LoRA files: pickles refused unread, foreign and SDXL files named in one sentence, the per-user catalogue."""
from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save, save_file

from pipelines.generate import lora_library
from pipelines.generate.lora_files import LoraFileError, inspect


class Boom:
    """Unpickling this writes a marker file: proof that a loader ran code from the file."""
    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_is_refused_without_being_unpickled(tmp_path):
    Boom.marker = str(tmp_path / "pwned")
    for name in ("evil.safetensors", "evil.bin", "evil.ckpt"):
        with open(tmp_path / name, "wb") as f:
            pickle.dump(Boom(), f)
        with pytest.raises(LoraFileError, match=f"^{name} is a pickle file, .*LoRAs\\.$"):
            inspect(tmp_path / name)
    torch.save({"x": torch.zeros(1)}, tmp_path / "zipped.safetensors")  # torch's zip pickle format
    with pytest.raises(LoraFileError, match="^zipped.safetensors is a pickle file, .*LoRAs\\.$"):
        inspect(tmp_path / "zipped.safetensors")
    assert not (tmp_path / "pwned").exists()


def resaved_with_header_starting(lora: Path, prefix: bytes, dest: Path) -> Path:
    """``lora`` saved again with a metadata pad sized so that its 8-byte header length begins with ``prefix``."""
    tensors = load_file(lora)
    with safe_open(str(lora), "pt") as f:
        metadata = f.metadata() or {}
    unpadded = save(tensors, {**metadata, "pad": ""})
    json_length = len(unpadded[8:8 + int.from_bytes(unpadded[:8], "little")].rstrip(b" "))
    modulus, target = 256 ** len(prefix), int.from_bytes(prefix, "little")  # a multiple of 8: no alignment pad
    data = save(tensors, {**metadata, "pad": "x" * ((target - json_length) % modulus)})
    assert data.startswith(prefix)
    dest.write_bytes(data)
    return dest


@pytest.mark.parametrize("prefix", [b"\x80", b"PK"])
def test_a_lora_whose_header_length_looks_like_a_pickle_is_loaded(tmp_path, prefix):
    lora = tmp_path / "style.safetensors"
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.randn(4, 32),
               "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.randn(32, 4),
               "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": torch.tensor(4.0)}, lora,
              metadata={"atelier_trigger_word": "sks"})
    padded = resaved_with_header_starting(lora, prefix, tmp_path / "padded.safetensors")
    found = inspect(padded)
    assert (found.format, found.trigger_word, len(load_file(padded))) == ("kohya", "sks", 3)


def test_a_deeply_nested_header_is_not_a_safetensors_file(tmp_path):
    header = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    (tmp_path / "deep.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(LoraFileError) as info:
        inspect(tmp_path / "deep.safetensors")
    assert str(info.value).startswith("deep.safetensors is not a safetensors file")


def test_a_folder_of_pickles_is_refused(tmp_path):
    torch.save({"x": torch.zeros(1)}, tmp_path / "pytorch_lora_weights.bin")
    with pytest.raises(LoraFileError, match="only pickle weights"):
        inspect(tmp_path)


def test_a_checkpoint_that_is_not_a_lora_names_a_foreign_key(tmp_path):
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(2)}, tmp_path / "model.safetensors")
    with pytest.raises(LoraFileError, match="is not a LoRA .*input_blocks"):
        inspect(tmp_path / "model.safetensors")


@pytest.mark.parametrize("tensors, metadata", [
    ({"lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.zeros(2, 2)}, None),
    ({"lora_unet_down_blocks_0.lora_down.weight": torch.zeros(2, 2)}, {"ss_base_model_version": "sdxl_base_v1-0"}),
])
def test_an_sdxl_lora_is_refused_for_sd15(tmp_path, tensors, metadata):
    save_file(tensors, tmp_path / "xl.safetensors", metadata=metadata)
    with pytest.raises(LoraFileError, match="SDXL LoRA; the live base model is Stable Diffusion 1.5"):
        inspect(tmp_path / "xl.safetensors")


def test_garbage_is_not_a_safetensors_file(tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(LoraFileError, match="not a safetensors file"):
        inspect(tmp_path / "junk.safetensors")


def test_kohya_file_format_trigger_word_and_hash(tmp_path):
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(2, 2)}, tmp_path / "k.safetensors",
              metadata={"atelier_trigger_word": "sks"})
    lora = inspect(tmp_path / "k.safetensors")
    assert (lora.format, lora.trigger_word, len(lora.short_hash)) == ("kohya", "sks", 12)
    assert "." not in lora.adapter_name


def test_trigger_word_from_a_model_card(tmp_path):
    save_file({"unet.a.lora_A.weight": torch.zeros(2, 2)}, tmp_path / "pytorch_lora_weights.safetensors")
    (tmp_path / "README.md").write_text("---\ninstance_prompt: photo of zwx\n---\n# card\n")
    assert inspect(tmp_path).trigger_word == "photo of zwx"


def test_spec_parsing_and_unknown_names():
    assert lora_library.parse_spec("fashion/a:0.8, file/b ,fashion/a@step-2:-1") == [
        ("fashion/a", 0.8), ("file/b", 1.0), ("fashion/a@step-2", -1.0)]
    with pytest.raises(LoraFileError, match="no LoRA named 'x'; you have none yet"):
        lora_library.resolve("x:1", {})


def test_uploads_are_per_user_and_a_pickle_upload_is_not_kept(tmp_path):
    good = tmp_path / "good.safetensors"
    save_file({"unet.a.lora_A.weight": torch.zeros(2, 2)}, good)
    root = tmp_path / "loras"
    assert lora_library.add_file(good, root, "alice") == "file/good"
    assert "file/good" in lora_library.catalogue([], root, "alice")
    assert lora_library.catalogue([], root, "bob") == {}
    assert lora_library.catalogue([], root, "../alice") == {}
    bad = tmp_path / "bad.safetensors"
    torch.save({"x": torch.zeros(1)}, bad)
    with pytest.raises(LoraFileError, match="pickle"):
        lora_library.add_file(bad, root, "alice")
    assert sorted(p.name for p in (root / "alice" / "files").iterdir()) == ["good.safetensors"]
