"""Seconds from `python app.py --profile tiny` to the first HTTP 200 and to the first generated image.

Targets on a 2-core machine: page ≤ 5 s, first image ≤ 10 s. Prints figures; asserts nothing.
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


def main() -> None:
    from gradio_client import Client

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ATELIER_CACHE": tempfile.mkdtemp(prefix="atelier-bench-")}
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
    print(f"page (first HTTP 200): {page_s:.2f} s   (target <= 5 s)")
    print(f"first generated image: {image_s:.2f} s   (target <= 10 s)")


if __name__ == "__main__":
    main()
