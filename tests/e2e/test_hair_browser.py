"""A real browser tries hair on a toy portrait: the automatic mask, two menus, Try on, and a result whose hair the
toy judge reads as the requested colour and texture, with every pixel outside the mask unchanged."""
from __future__ import annotations

import base64
import io
import random
import shutil

import numpy as np
import pytest
from PIL import Image

from pipelines.hair import toy_hair
from pipelines.models.registry import TOY_HAIR

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.skipif(not shutil.which("chromium"),
                                 reason="Debian's chromium is not installed (make test installs it as root)"),
              pytest.mark.skipif(not (TOY_HAIR / "hair_model.safetensors").is_file(),
                                 reason="assets/toy-hair is not built (make toy-hair)")]
LAUNCH_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
# A black, straight-haired toy portrait asked for golden brown curls; seed 0 (the toy model gets most such
# requests right, not all (this one at seeds 0, 1, 2 and 4 of 0-5): a fixed seed keeps the test about the tab).
PORTRAIT_SEED, TRYON_SEED = 3, 0


def fetch(page, selector: str) -> Image.Image:
    """The image an <img> shows, read back through the page (its src is served by Gradio)."""
    data = page.locator(selector).first.evaluate(
        """async img => { const r = await fetch(img.src); const b = new Uint8Array(await r.arrayBuffer());
                          let s = ''; for (const x of b) s += String.fromCharCode(x); return btoa(s); }""")
    return Image.open(io.BytesIO(base64.b64decode(data)))


def choose(page, element_id: str, value: str) -> None:
    page.locator(f"#{element_id} input").first.click()
    page.get_by_role("option", name=value, exact=True).click()


def test_try_golden_brown_curls_on_a_toy_portrait(served_app, tmp_path):
    from playwright.sync_api import sync_playwright

    p = toy_hair.random_portrait(random.Random(PORTRAIT_SEED), color="블랙", curl="생머리")
    toy_hair.render(p).save(tmp_path / "portrait.png")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(served_app)
        page.get_by_role("tab", name="Hair").click()
        assert "toy" in page.locator("#hair-toy-note").inner_text()
        page.locator("#hair-portrait input[type=file]").set_input_files(str(tmp_path / "portrait.png"))
        page.locator("#hair-mask-editor canvas").first.wait_for(state="visible", timeout=30_000)
        choose(page, "hair-color", "golden brown")
        choose(page, "hair-curl", "curly")
        page.get_by_role("button", name="Sampling settings").click()
        page.locator("#hair-seed input").fill(str(TRYON_SEED))
        page.locator("#hair-seed input").press("Tab")
        page.wait_for_timeout(1_000)  # the automatic mask reaches the editor
        page.locator("#hair-tryon").click()
        page.locator("#hair-result img").first.wait_for(state="visible", timeout=90_000)
        page.locator("#hair-mask-used img").first.wait_for(state="visible", timeout=10_000)
        result, used = fetch(page, "#hair-result img").convert("RGB"), fetch(page, "#hair-mask-used img")
        page.screenshot(path=str(tmp_path / "hair.png"), full_page=True)
        info = page.locator("#hair-info").inner_text()
        browser.close()
    mask = np.asarray(used.convert("L")) > 127
    assert mask[toy_hair.hair_mask(p)].mean() > 0.8  # the automatic mask, sent from the editor
    verdict = toy_hair.judge(result, toy_hair.hair_mask(p))
    assert (verdict.color, verdict.curl) == ("황갈색", "곱슬"), verdict
    assert (np.asarray(result)[~mask] == np.asarray(toy_hair.render(p))[~mask]).all()
    assert f"Seed {TRYON_SEED}" in info and "golden brown curly hairstyle" in info
