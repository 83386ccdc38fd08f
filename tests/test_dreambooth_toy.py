"""DreamBooth on the toy model: a new concept (a pink square) is learnt under an identifier, and prior
preservation keeps what the model already drew — both judged from pixels."""
from __future__ import annotations

import torch

from conftest import render_dataset
from pipelines import toy_world
from training.lora import main

PALETTE = {**toy_world.COLORS, **toy_world.NEW_CONCEPT_COLORS}


def verdicts(pipe, prompt, n=8):
    images = pipe([prompt] * n, num_inference_steps=20, guidance_scale=7.5,
                  generator=[torch.Generator().manual_seed(100 + i) for i in range(n)]).images
    return [toy_world.judge(image, PALETTE) for image in images]


def test_dreambooth_learns_pink_square_and_keeps_red_circles(tmp_path):
    from diffusers import StableDiffusionPipeline

    from pipelines.registry import TOY_SD

    data = render_dataset(tmp_path / "pink", 10, color="pink", shape="square", background="white")
    run = tmp_path / "run"
    code = main(["--preset", "dreambooth", "--data", str(data), "--output", str(run), "--profile", "tiny",
                 "--max-steps", "150", "--set", "instance_prompt=a sks on a white background",
                 "--set", "class_prompt=a square on a white background", "--set", "num_class_images=16",
                 "--set", "learning_rate=2e-3", "--set", "batch_size=4", "--set", "gradient_accumulation_steps=1",
                 "--set", "sample_steps=0", "--set", "checkpointing_steps=0", "--set", "gradient_checkpointing=false"])
    assert code == 0, (run / "train.log").read_text()
    pipe = StableDiffusionPipeline.from_pretrained(TOY_SD, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(run / "final", weight_name="pytorch_lora_weights.safetensors")
    concept = verdicts(pipe, "a sks on a white background")
    prior = verdicts(pipe, "a red circle on a white background")
    assert sum(v.matches("pink", "square", "white") for v in concept) >= 5, concept
    assert sum(v.matches("red", "circle", "white") for v in prior) >= 6, prior
