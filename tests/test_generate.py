"""Generate: input checks, seeds and infotext on the tiny profile, and the /generate API endpoint."""
from __future__ import annotations

import pytest
from PIL import Image

from pipelines.generate.text_to_image import GenerateSettings, InputError, check_inputs, generate


@pytest.mark.parametrize("changes, words", [
    (dict(prompt="   "), "prompt is empty"),
    (dict(width=63), "Width must be a multiple of 8"),
    (dict(height=4096), "Height must be a multiple of 8"),
    (dict(width=0), "Width"),
    (dict(height=-64), "Height"),
    (dict(steps=0), "Steps must be"),
    (dict(steps=500), "Steps must be"),
    (dict(num_images=20), "Number of images"),
    (dict(cfg=-1), "CFG scale"),
    (dict(seed=-5), "Seed must be"),
])
def test_bad_inputs_name_the_field(changes, words):
    with pytest.raises(InputError, match=words):
        check_inputs(GenerateSettings(**{"prompt": "a red square on a white background", **changes}))


def test_fixed_seed_is_reproducible_and_random_seed_is_reported(tiny_runtime):
    s = GenerateSettings("a red square on a white background", steps=4, width=64, height=64, seed=7)
    (a,), seed_a = generate(tiny_runtime, s)
    (b,), _ = generate(tiny_runtime, s)
    assert seed_a == 7 and a.tobytes() == b.tobytes()
    s.seed = -1
    (c,), used = generate(tiny_runtime, s)
    s.seed = used
    (d,), _ = generate(tiny_runtime, s)
    assert used >= 0 and c.tobytes() == d.tobytes()


def test_images_carry_a1111_infotext(tiny_runtime):
    s = GenerateSettings("a blue circle on a gray background", negative_prompt="blurry", steps=3,
                         cfg=5.0, seed=11, width=64, height=64, num_images=2)
    images, seed = generate(tiny_runtime, s)
    first, second = (im.info["parameters"] for im in images)
    assert first.startswith("a blue circle on a gray background\nNegative prompt: blurry\nSteps: 3, ")
    assert "CFG scale: 5.0, Seed: 11, Size: 64x64" in first and "Seed: 12," in second


def test_generate_api_returns_an_image_of_the_requested_size(served_app):
    from gradio_client import Client

    client = Client(served_app, verbose=False)
    gallery, used_seed = client.predict("a red square on a white background", steps=3, width=96,
                                        height=64, seed=3, api_name="/generate")
    assert used_seed == 3 and len(gallery) == 1
    with Image.open(gallery[0]["image"]) as im:
        assert im.size == (96, 64) and im.format == "PNG"
        assert "Seed: 3" in im.info["parameters"]


def test_generate_api_only_needs_the_prompt_and_reports_bad_input(served_app):
    from gradio_client import Client

    client = Client(served_app, verbose=False)
    params = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/generate"]["parameters"]
    assert params[0]["parameter_name"] == "prompt"
    assert all(p["parameter_has_default"] for p in params[1:])
    with pytest.raises(Exception, match="Width must be a multiple of 8"):
        client.predict("a red square on a white background", width=100, api_name="/generate")
