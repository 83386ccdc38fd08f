"""A real browser (Debian chromium, headless, driven by Playwright) types a prompt and sees an image."""
from __future__ import annotations

import shutil

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not shutil.which("chromium"),
                                reason="Debian's chromium is not installed (make test installs it as root)")
LAUNCH_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def page(served_app):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(served_app)
        yield page
        browser.close()


def test_type_a_prompt_click_generate_and_see_an_image(page, tmp_path):
    assert "Profile: tiny" in page.locator("#profile-banner").inner_text()
    page.locator("#prompt textarea").fill("a green triangle on a black background")
    page.locator("#generate-button").click()
    image = page.locator("#gallery img").first
    image.wait_for(state="visible", timeout=60_000)
    assert image.evaluate("img => img.naturalWidth") == 64
    page.screenshot(path=str(tmp_path / "generate.png"), full_page=True)
    assert (tmp_path / "generate.png").stat().st_size > 0


def test_empty_prompt_shows_an_error_and_the_page_stays_up(page):
    page.locator("#prompt textarea").fill("")
    page.locator("#generate-button").click()
    page.get_by_text("The prompt is empty").first.wait_for(timeout=30_000)
    assert page.locator("#generate-button").is_enabled()


def test_stylize_a_photo_with_the_default_anime_model(page, tmp_path):
    from PIL import Image

    from pipelines.anime.style_images import style_images

    photo = tmp_path / "photo.png"
    Image.new("RGB", (96, 64), (200, 120, 60)).save(photo)
    page.get_by_role("tab", name="Anime").click()
    assert page.locator("#anime-checkpoint input").input_value() == "Default model (toy)"
    assert "does not draw anime" in page.locator("#anime-toy-note").inner_text()  # the tiny profile says so
    page.locator("#anime-content input[type=file]").set_input_files(str(photo))
    page.locator("#anime-style input[type=file]").set_input_files(str(style_images()[0]))
    page.locator("#anime-stylize").click()
    result = page.locator("#anime-result img").first
    result.wait_for(state="visible", timeout=60_000)
    assert result.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [96, 64]
