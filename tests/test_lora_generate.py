"""Generate with LoRAs made by the trainer: loaded once by name, weighted, deleted on removal, checked."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from lora_runs import make_run
from pipelines.generate import infotext, lora_library, text_to_image
from pipelines.generate.lora_adapters import LoraApplyError, adapters_for
from pipelines.generate.lora_files import inspect
from pipelines.generate.text_to_image import GenerateSettings, InputError, run

PROMPT = "a red square on a white background"


@pytest.fixture(scope="module")
def known(toy_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    run_dir = make_run(root, toy_dataset)
    return lora_library.catalogue([("fashion/shapes", run_dir)], root.parent / "loras", "local")


def settings(**changes):
    return replace(GenerateSettings(PROMPT, steps=4, width=64, height=64, seed=5), **changes)


def pixels(image):
    return np.asarray(image, dtype=np.float32)


def test_catalogue_lists_final_weights_and_each_checkpoint(known):
    # the last step always checkpoints too (a run stopped there can resume), so step-4 sits beside final
    assert set(known) == {"fashion/shapes", "fashion/shapes@step-2", "fashion/shapes@step-4"}


def test_lora_changes_the_image_scales_with_weight_and_switching_never_reloads(tiny_runtime, known):
    pipe = tiny_runtime.model("sd15")
    base = run(tiny_runtime, settings()).images[0]
    (lora, _), = lora_library.resolve("fashion/shapes", known)
    adapters = adapters_for(pipe)
    loads = adapters.loads
    full = run(tiny_runtime, settings(loras=[(lora, 1.0)], trigger_words=False))
    assert full.lora_modules["fashion/shapes"] > 0 and full.warnings == []
    half = run(tiny_runtime, settings(loras=[(lora, 0.5)], trigger_words=False)).images[0]
    zero = run(tiny_runtime, settings(loras=[(lora, 0.0)], trigger_words=False)).images[0]
    assert adapters.loads == loads + 1  # weights changed three times, the file was read once
    assert pipe.unet is tiny_runtime.model("sd15").unet  # the base pipeline was not reloaded
    d_full = np.abs(pixels(full.images[0]) - pixels(base)).mean()
    d_half = np.abs(pixels(half) - pixels(base)).mean()
    assert d_full > d_half > 0 and np.abs(pixels(zero) - pixels(base)).mean() < 1e-3
    again = run(tiny_runtime, settings()).images[0]  # LoRA removed: deleted, the base image comes back
    assert adapters.loaded == {} and pipe.get_list_adapters() in ({}, {"unet": []})
    assert again.tobytes() == base.tobytes()


def test_two_loras_at_once_and_checkpoint_keeps_its_alpha(tiny_runtime, known):
    from pipelines.generate.lora_adapters import load_arguments

    chosen = lora_library.resolve("fashion/shapes:0.7, fashion/shapes@step-2:0.3", known)
    result = run(tiny_runtime, settings(loras=chosen))
    assert set(result.lora_modules) == {"fashion/shapes", "fashion/shapes@step-2"}
    assert len(adapters_for(tiny_runtime.model("sd15")).loaded) == 2
    # a checkpoint has no adapter config: it is loaded with the run's alpha (24, rank 12), not alpha = rank
    tensors, _ = load_arguments(chosen[1][0])
    alphas = {float(v) for k, v in tensors.items() if k.endswith(".alpha")}
    assert alphas == {24.0}
    run(tiny_runtime, settings())


def test_trigger_word_goes_in_front_of_the_prompt_and_infotext_has_lora_hashes(tiny_runtime, known):
    chosen = lora_library.resolve("fashion/shapes:0.8", known)
    image = run(tiny_runtime, settings(loras=chosen, sampler="Euler a", batch_count=2, num_images=1)).images
    assert len(image) == 2
    text = image[1].info["parameters"]
    assert text.startswith(f"sks, {PROMPT} <lora:fashion/shapes:0.8>\n")
    assert f'Lora hashes: "fashion/shapes: {chosen[0][0].short_hash}"' in text and "Sampler: Euler a" in text
    parsed = infotext.parse(text)
    assert parsed["loras"] == [("fashion/shapes", 0.8)] and parsed["seed"] == 6 and parsed["sampler"] == "Euler a"
    assert parsed["prompt"] == f"sks, {PROMPT}" and parsed["steps"] == 4 and parsed["width"] == 64
    off = run(tiny_runtime, settings(loras=chosen, trigger_words=False)).images[0].info["parameters"]
    assert off.startswith(f"{PROMPT} <lora")
    run(tiny_runtime, settings())


@pytest.mark.parametrize("sampler", ["DDIM", "Euler", "DPM++ 2M", "UniPC"])
def test_each_sampler_runs_and_is_recorded(tiny_runtime, sampler):
    image = run(tiny_runtime, settings(sampler=sampler)).images[0]
    assert f"Sampler: {sampler}," in image.info["parameters"]


def test_bad_sampler_batch_and_weight_are_one_sentence(known):
    with pytest.raises(InputError, match="Sampler must be one of"):
        text_to_image.check_inputs(settings(sampler="Heun++"))
    with pytest.raises(InputError, match="Batch count"):
        text_to_image.check_inputs(settings(batch_count=0))
    (lora, _), = lora_library.resolve("fashion/shapes", known)
    with pytest.raises(InputError, match="weight of LoRA fashion/shapes"):
        text_to_image.check_inputs(settings(loras=[(lora, 5.0)]))


def test_a_lora_for_another_model_is_one_sentence_and_leaves_nothing_behind(tiny_runtime, tmp_path):
    save_file({"unet.down_blocks.0.attentions.0.proj_in.lora_A.weight": torch.zeros(4, 320),
               "unet.down_blocks.0.attentions.0.proj_in.lora_B.weight": torch.zeros(320, 4)},
              tmp_path / "big.safetensors")
    save_file({"unet.nowhere.lora_A.weight": torch.zeros(4, 8), "unet.nowhere.lora_B.weight": torch.zeros(8, 4)},
              tmp_path / "nowhere.safetensors")
    for name, words in (("big", "layer shapes that differ"), ("nowhere", "matched no layer")):
        with pytest.raises(LoraApplyError, match=words):
            run(tiny_runtime, settings(loras=[(inspect(tmp_path / f"{name}.safetensors"), 1.0)]))
    assert adapters_for(tiny_runtime.model("sd15")).loaded == {}
    assert run(tiny_runtime, settings()).images  # the app keeps working


def test_a_lora_that_applies_to_nothing_is_a_warning(tiny_runtime, known, monkeypatch):
    from pipelines.generate import lora_adapters

    monkeypatch.setattr(lora_adapters, "count_modules", lambda pipe, name: 0)
    result = run(tiny_runtime, settings(loras=lora_library.resolve("fashion/shapes", known)))
    assert result.warnings == ["The LoRA fashion/shapes matched no layer of the base model, so it changed nothing; "
                               "it was probably trained for another model."]
    run(tiny_runtime, settings())
