"""app.py refuses bad flags with one line and exit code 2, before importing any model library."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from conftest import ROOT, free_port


def run_app(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "app.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0]


@pytest.mark.parametrize("args, words", [
    (["--profile", "fast"], ["Unknown profile 'fast'", "auto, tiny, full"]),
    (["--model", "sd15"], ["ROLE=ID_OR_PATH"]),
    (["--model", "unet=a/b"], ["Unknown model role 'unet'"]),
    (["--model", "sd15=/no/such/model"], ["/no/such/model does not exist"]),
    (["--auth", "onlyuser"], ["USER:PASS"]),
    (["--port", "notaport"], ["--port"]),
])
def test_bad_flags(args, words):
    assert_one_line_error(run_app(*args), *words)


def test_port_in_use():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert_one_line_error(run_app("--profile", "tiny", "--port", str(port)), f"Port {port}", "in use")


def test_unwritable_cache_dir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_app("--profile", "tiny", "--port", str(free_port()), env={"ATELIER_CACHE": str(blocker / "cache")})
    assert_one_line_error(result, "cache folder", "not writable", "ATELIER_CACHE")


def test_the_first_image_on_a_cpu_skips_bitsandbytes(tmp_path):
    # diffusers and peft import bitsandbytes (and torch's compiler) whenever it is installed: ~1.2 s of the first
    # image's wait on a CPU, where nothing uses it. The app's preload hides it; the image is still made.
    code = """
import sys, tempfile
from pathlib import Path
import app
from pipelines.models.profile import choose_profile
from pipelines.models.runtime import Runtime
from pipelines.generate.text_to_image import defaults_for, generate
from dataclasses import replace
runtime = Runtime(profile=choose_profile("tiny"), cache_dir=Path(sys.argv[1]))
app.preload(runtime)
[t for t in __import__("threading").enumerate() if t.name == "preload"][0].join()
images, _ = generate(runtime, replace(defaults_for("tiny"), prompt="a red square on a white background", steps=2))
print(len(images), sys.modules.get("bitsandbytes"))
"""
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert result.stdout.split()[-2:] == ["1", "None"], result.stderr[-2000:]


def test_building_the_page_imports_no_torch(tmp_path):
    # torch (and diffusers) add seconds to the page's start; every tab must load them on first use, not at build time
    code = """
import sys
from pathlib import Path
import app
from pipelines.models.profile import choose_profile
from pipelines.models.runtime import Runtime
runtime = Runtime(profile=choose_profile("tiny"), cache_dir=Path(sys.argv[1]) / "cache")
app.build_app(runtime, runs_root=Path(sys.argv[1]) / "runs")
print(sorted(m for m in ("torch", "diffusers", "transformers") if m in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert result.stdout.strip().splitlines()[-1:] == ["[]"], (result.stdout[-500:], result.stderr[-2000:])
