"""A newcomer's first clicks in a real browser: Generate's main button under the prompt, no fake seed before the
first image, a PNG-info restore that fills the LoRA menu, broken uploads named in one sentence (PNG info and
Anime), and the Datasets form's BLIP box off where the captioner is an untrained toy."""
from __future__ import annotations

import shutil

import pytest
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from safetensors.torch import save_file

from conftest import serve

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not shutil.which("chromium"),
                                reason="Debian's chromium is not installed (make test installs it as root)")
LAUNCH_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 900}


@pytest.fixture(scope="module")
def page(tiny_runtime, tmp_path_factory):
    """The hub with one uploaded LoRA file of user "local" (file/style-a), open in a browser tab."""
    from playwright.sync_api import sync_playwright

    from pipelines.generate import lora_library

    root = tmp_path_factory.mktemp("newcomer") / "runs"
    lora = tmp_path_factory.mktemp("lora") / "style-a.safetensors"
    save_file({"unet.a.lora_A.weight": torch.zeros(2, 2)}, lora)
    lora_library.add_file(lora, root.parent / "loras", "local")
    demo, url = serve(tiny_runtime, root)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(url)
        yield page
        browser.close()
    demo.close()


def test_generate_sits_under_the_prompt_and_no_seed_shows_before_the_first_image(page):
    button, loras = page.locator("#generate-button").bounding_box(), page.locator("#lora-0").bounding_box()
    assert button["y"] < loras["y"] and button["y"] + button["height"] < VIEWPORT["height"]  # seen without scrolling
    assert not page.locator("#seed-used").is_visible()  # an empty Number reads "0", which looks like a seed
    assert not page.get_by_role("button", name="♻ Reuse seed").is_visible()
    page.locator("#prompt textarea").fill("a blue circle on a gray background")
    page.get_by_label("Seed (-1 = random)").fill("5")
    page.locator("#generate-button").click()
    page.locator("#gallery img").first.wait_for(state="visible", timeout=60_000)
    page.locator("#seed-used").wait_for(state="visible", timeout=10_000)
    assert page.locator("#seed-used input").input_value() == "5"


def test_a_png_info_restore_fills_the_lora_menu_too(page, tmp_path):
    info = PngInfo()
    info.add_text("parameters", "a red square <lora:file/style-a:0.7>\nNegative prompt: dark\n"
                                "Steps: 7, Sampler: Euler, CFG scale: 6.5, Seed: 42, Size: 64x64, Model: toy-sd")
    Image.new("RGB", (64, 64), "white").save(tmp_path / "made.png", pnginfo=info)
    page.get_by_text("PNG info").first.click()
    page.locator("#png-info-image input[type=file]").set_input_files(str(tmp_path / "made.png"))
    page.wait_for_function("() => document.querySelector('#png-info-text textarea').value.includes('Steps: 7')",
                           timeout=30_000)
    page.get_by_role("button", name="↩ Restore into Generate").click()
    page.wait_for_function("() => document.querySelector('#lora-0 input').value === 'file/style-a'",
                           timeout=10_000)
    assert page.locator("#lora-spec textarea").input_value() == "file/style-a:0.7"
    assert page.locator("#prompt textarea").input_value() == "a red square"


@pytest.mark.parametrize("name, content, says", [
    ("notes.png", b"not an image, just text", "notes.png is not an image"),
    ("empty.png", b"", "empty.png is empty (0 bytes)")])
def test_a_broken_upload_is_named_in_one_sentence_in_png_info_and_anime(page, tmp_path, name, content, says):
    from pipelines.anime.style_images import style_images

    (tmp_path / name).write_bytes(content)
    page.get_by_role("tab", name="Generate").click()
    page.locator("#png-info-image").scroll_into_view_if_needed()
    page.locator("#png-info-image input[type=file]").set_input_files(str(tmp_path / name))
    page.get_by_text(says).first.wait_for(timeout=30_000)
    page.get_by_role("tab", name="Anime").click()
    page.locator("#anime-content input[type=file]").set_input_files(str(tmp_path / name))
    page.locator("#anime-style input[type=file]").set_input_files(str(style_images()[0]))
    page.locator("#anime-stylize").click()
    page.get_by_text(f"The content image: {says}").first.wait_for(timeout=30_000)


def test_the_datasets_blip_box_is_off_and_says_why(page):
    page.get_by_role("tab", name="Datasets").click()
    page.locator("#data-use-case").get_by_text("ghibli").click()
    box = page.locator("#data-caption input[type=checkbox]")
    box.wait_for(state="visible", timeout=10_000)
    assert not box.is_checked()
    assert page.get_by_text("untrained model that writes gibberish").first.is_visible()
