"""Shared fixtures: every test runs offline, with its own model cache."""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("atelier-cache")
    os.environ["ATELIER_CACHE"] = str(path)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_runtime(_cache_dir):
    from pipelines.models.profile import choose_profile
    from pipelines.models.runtime import Runtime

    return Runtime(profile=choose_profile("tiny"), cache_dir=_cache_dir)


def serve(runtime, runs_root: Path, logins: dict[str, str] | None = None, **build):
    """The whole hub launched in-process on a free port as app.py launches it; returns (demo, URL)."""
    from app import build_app, launch_options

    demo = build_app(runtime, runs_root=runs_root, **build)
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                        **launch_options(runs_root, logins or {}))
    return demo, f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="session")
def served_app(tiny_runtime, tmp_path_factory):
    """The whole hub launched in-process on a free port; yields its URL."""
    demo, url = serve(tiny_runtime, tmp_path_factory.mktemp("runs"))
    yield url
    demo.close()


def render_dataset(folder: Path, n: int, seed: int = 0, size: int = 64, suffix: str = ".png",
                   **attributes) -> Path:
    """n toy-world images of size x size px with metadata.jsonl captions; attributes fix colour/shape/background."""
    import json
    import random

    from pipelines import toy_world

    folder.mkdir(parents=True, exist_ok=True)
    rng, rows = random.Random(seed), []
    for i in range(n):
        scene = toy_world.random_scene(rng, **attributes)
        toy_world.render(scene, size).save(folder / f"{i:03d}{suffix}", quality=92)  # PNG ignores quality
        rows.append({"file_name": f"{i:03d}{suffix}", "text": scene.caption})
    (folder / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return folder


@pytest.fixture(scope="session")
def toy_dataset(tmp_path_factory):
    return render_dataset(tmp_path_factory.mktemp("toy-data"), 12)


def prepared_toy_hair(root: Path, count: int, seed: int) -> Path:
    """``count`` toy portraits as a K-Hairstyle folder pair under ``root``, prepared; returns the prepared folder.

    No face model is passed: on 64 px toy portraits the toy world's own face measurements stand in.
    """
    from pipelines.hair import toy_hair
    from training.prepare.hair import HairOptions, prepare_hair

    toy_hair.write_khairstyle(root / "images", root / "labels", count, seed=seed)
    prepare_hair(HairOptions(images=root / "images", labels_dir=root / "labels", out=root / "data"), None)
    return root / "data"
