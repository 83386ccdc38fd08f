"""Seconds from `python app.py --profile tiny` to the first HTTP 200 and to the first generated image.

    python bench/startup.py [--runs 3]

Each run starts a fresh server with a warm model cache (the first run builds it). Targets on an idle 2-core
machine (issue 14): page <= 3 s, first image <= 6 s. Prints each run and the medians; asserts nothing.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_page(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer")


def one_start(cache: str) -> tuple[float, float]:
    """(page seconds, first image seconds) of one server start."""
    from gradio_client import Client

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ATELIER_CACHE": cache}
    start = time.monotonic()
    server = subprocess.Popen([sys.executable, "app.py", "--profile", "tiny", "--port", str(port)], cwd=ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_page(url, start + 120)
        page_s = time.monotonic() - start
        client = Client(url, verbose=False)
        client.predict("a red square on a white background", seed=0, api_name="/generate")
        image_s = time.monotonic() - start
    finally:
        server.terminate()
        server.wait(timeout=30)
    return page_s, image_s


def main() -> None:
    import argparse
    import statistics

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    cache = tempfile.mkdtemp(prefix="atelier-bench-")
    one_start(cache)  # builds the tiny models into the cache: what every later start finds
    pages, images = zip(*(one_start(cache) for _ in range(args.runs)))
    print("page (first HTTP 200): " + ", ".join(f"{p:.2f}" for p in pages) + " s; "
          f"median {statistics.median(pages):.2f} s (target <= 3 s)")
    print("first generated image: " + ", ".join(f"{i:.2f}" for i in images) + " s; "
          f"median {statistics.median(images):.2f} s (target <= 6 s)")


if __name__ == "__main__":
    main()
