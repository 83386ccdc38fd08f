"""A run started from the Train tab, followed in the Runs tab, in a real browser (issue 14): friendly use-case
names, an estimate that says what it is measured from, the stage / speed / elapsed / ETA line, and a run without a
checkpoint that says so and starts again. The fake trainer stands in for training.lora, so this takes seconds."""
from __future__ import annotations

import shutil

import pytest

from conftest import free_port, render_dataset
from test_browser import CHROMIUM, LAUNCH_ARGS
from test_launcher import FAKE, state_of, wait_for

pytestmark = pytest.mark.skipif(not shutil.which("chromium"),
                                reason="Debian's chromium is not installed (make test installs it as root)")
TIMEOUT = 30_000  # ms


@pytest.fixture(scope="module")
def hub(tiny_runtime, tmp_path_factory):
    """The Train and Runs tabs over the fake trainer; yields (URL, RunManager, dataset folder)."""
    import gradio as gr

    from tabs import runs, train
    from training.runs.launcher import RunManager

    root = tmp_path_factory.mktemp("hub")
    data = render_dataset(root / "data", 2)
    manager = RunManager(root / "runs", module=FAKE, poll_seconds=0.2)
    with gr.Blocks() as demo:
        train.build(manager, tiny_runtime, data_roots=(data,))
        runs.build(manager)
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/", manager, data
    manager.close()
    demo.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, hub):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(hub[0])
    yield page
    page.close()


def wait_text(page, selector: str, *words: str) -> str:
    """The element's text once it holds every one of ``words``."""
    page.wait_for_function("([sel, words]) => { const el = document.querySelector(sel);"
                           " return el && words.every(w => el.innerText.includes(w)); }",
                           arg=[selector, list(words)], timeout=TIMEOUT)
    return page.locator(selector).inner_text()


def test_start_a_run_in_the_train_tab_and_follow_its_stage_and_speed(page, hub, monkeypatch):
    _, manager, data = hub
    monkeypatch.setenv("FAKE_TRAINER_LOAD_SECONDS", "1")
    monkeypatch.setenv("FAKE_TRAINER_STEP_SECONDS", "0.25")
    page.get_by_role("tab", name="Train").click()
    page.get_by_text("Fashion LoRA from captioned photos").wait_for(timeout=TIMEOUT)
    assert "seed" not in page.locator("#train-use-case").inner_text()
    wait_text(page, "#train-estimate", "Estimate", "a rough guess")
    page.locator("#train-data textarea").fill(str(data))
    page.locator("#train-run-name textarea").fill("browser")
    page.locator("#train-max_steps input").fill("24")
    page.locator("#train-start").click()
    wait_text(page, "#train-message", "Started fashion/browser", "24 steps")

    page.get_by_role("tab", name="Runs").click()
    line = wait_text(page, "#runs-progress-line", "Training · step", "it/s · elapsed", "left")
    assert "step 0 of" not in line
    wait_text(page, "#runs-state", "fashion/browser", "done")
    page.locator("#runs-loss img").wait_for(state="visible", timeout=TIMEOUT)  # the curves and their legend

    page.get_by_role("tab", name="Train").click()  # the finished run makes the next estimate a measured one
    wait_text(page, "#train-estimate", "measured from the last fashion run on this server")


def test_resume_without_a_checkpoint_says_so_and_starts_again(page, hub, monkeypatch):
    _, manager, data = hub
    monkeypatch.setenv("FAKE_TRAINER_FAIL_AT", "1")
    failed = manager.submit("fashion", "nan", data, {}, "local", "tiny", max_steps=6)
    wait_for(lambda: state_of(manager, failed, "failed"))
    monkeypatch.delenv("FAKE_TRAINER_FAIL_AT")
    page.get_by_role("tab", name="Runs").click()
    wait_text(page, "#runs-state", "fashion/nan", "failed")
    page.locator("#runs-resume").click()
    wait_text(page, "#runs-notice", "fashion/nan has no checkpoint to resume from; start it again with the same "
                                    "settings instead.")
    page.locator("#runs-start-again").click()
    wait_text(page, "#runs-notice", "Started fashion/nan-2 with the settings of fashion/nan.")
    wait_for(lambda: state_of(manager, manager.find("fashion/nan-2", "local"), "done"))
