"""A real browser opens Compare, makes a 2×2 X/Y grid and sees the labelled grid and its four cells."""
from __future__ import annotations

import shutil

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not shutil.which("chromium"),
                                reason="Debian's chromium is not installed (make test installs it as root)")
LAUNCH_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]


def test_make_a_grid_in_the_compare_tab(served_app, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(served_app)
        page.get_by_role("tab", name="Compare").click()
        page.locator("#x-values textarea, #x-values input").first.fill("2, 3")
        page.locator("#y-axis input").first.click()
        page.get_by_role("option", name="Seed").click()
        page.locator("#y-values textarea, #y-values input").first.fill("1, 2")
        page.locator("#grid-button").click()
        grid = page.locator("#grid-image img").first
        grid.wait_for(state="visible", timeout=90_000)
        assert grid.evaluate("img => img.naturalWidth") > 128  # two 64-px cells plus the row labels
        page.locator("#grid-cells img").nth(3).wait_for(state="visible", timeout=30_000)
        assert page.locator("#grid-cells img").count() == 4
        page.screenshot(path=str(tmp_path / "grid.png"), full_page=True)
        browser.close()
