"""Downloading an image list from a local http.server: timeouts, retries with backoff, size and type checks,
a polite delay, safe file names; and a Ghibli set built from URLs."""
from __future__ import annotations

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.prepare_images import photo
from training.prepare.ghibli import GhibliOptions, prepare_ghibli
from training.prepare.url_import import DownloadSettings, Fetcher, download_all, read_url_list, safe_filename

FAST = DownloadSettings(timeout=0.5, retries=2, backoff=0.01, max_bytes=200_000, delay=0.0)


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    photo(seed, (96, 96)).save(buffer, "PNG")
    return buffer.getvalue()


class Handler(BaseHTTPRequestHandler):
    hits: dict[str, int] = {}

    def log_message(self, *args):  # keep the test output clean
        pass

    def send(self, status: int, body: bytes, content_type: str, length: int | None = None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?")[0]
        Handler.hits[path] = Handler.hits.get(path, 0) + 1
        if path.startswith("/img/"):
            self.send(200, png(int(path.rsplit("-", 1)[-1].split(".")[0])), "image/png")
        elif path == "/flaky.png" and Handler.hits[path] == 1:
            self.send(503, b"busy", "text/plain")
        elif path == "/flaky.png":
            self.send(200, png(7), "image/png")
        elif path == "/page.html":
            self.send(200, b"<html>not an image</html>", "text/html")
        elif path == "/huge.png":
            self.send(200, b"\0" * 10, "image/png", length=10**9)  # a header that admits it
        elif path == "/endless.png":
            self.send_response(200)  # no length: HTTP/1.0 ends the body when the connection closes
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(b"\0" * 300_000)
        elif path == "/slow.png":
            time.sleep(1.5)
            self.send(200, png(1), "image/png")
        elif path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/img/photo-3.png")
            self.end_headers()
        else:
            self.send(404, b"no", "text/plain")


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # the client gave up on /slow.png: expected
        pass


@pytest.fixture(scope="module")
def server():
    httpd = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_fetch_rules(server, tmp_path):
    sleeps = []
    fetcher = Fetcher(FAST, sleep=sleeps.append)
    body, kind = fetcher.fetch(f"{server}/img/photo-1.png")
    assert kind == "image/png" and body.startswith(b"\x89PNG")
    assert fetcher.fetch(f"{server}/moved")[0] == png(3)

    assert fetcher.fetch(f"{server}/flaky.png")[0] == png(7)  # 503 first, then fine
    assert Handler.hits["/flaky.png"] == 2 and sleeps == [0.01]

    result = download_all([f"{server}/page.html", f"{server}/huge.png", f"{server}/endless.png",
                           f"{server}/gone.png", f"{server}/slow.png"], tmp_path, FAST, fetcher)
    reasons = dict(result.failures)
    assert not result.files
    assert "the server sent text/html, not a raster image" in reasons[f"{server}/page.html"]
    assert "1,000,000,000 bytes, over the limit of 200,000" in reasons[f"{server}/huge.png"]
    assert "over the limit of 200,000 bytes" in reasons[f"{server}/endless.png"]
    assert "HTTP 404" in reasons[f"{server}/gone.png"] and Handler.hits["/gone.png"] == 1  # 4xx: no retry
    assert "timed out" in reasons[f"{server}/slow.png"] and Handler.hits["/slow.png"] == 3  # 1 + 2 retries
    assert sleeps[1:] == [0.01, 0.02]  # backoff doubles
    assert all(message.endswith(".") and url in message for url, message in result.failures)


def test_polite_delay_between_requests_to_one_host(server):
    sleeps = []
    fetcher = Fetcher(DownloadSettings(delay=0.5), sleep=sleeps.append)
    fetcher.fetch(f"{server}/img/photo-1.png")
    fetcher.fetch(f"{server}/img/photo-2.png")
    assert len(sleeps) == 1 and 0.3 < sleeps[0] <= 0.5


def test_url_list_and_file_names(tmp_path):
    (tmp_path / "urls.txt").write_text("# Ghibli stills\n\nhttps://example.org/a.jpg\nftp://example.org/b.jpg\n"
                                       "not a url\nhttp://example.org/c.png?size=large\n")
    urls, bad = read_url_list(tmp_path / "urls.txt")
    assert urls == ["https://example.org/a.jpg", "http://example.org/c.png?size=large"]
    assert [line for line, _ in bad] == ["ftp://example.org/b.jpg", "not a url"]
    assert "urls.txt line 5 is not an http(s) URL" in bad[1][1]
    assert safe_filename("http://x.org/../../etc/passwd", "image/png", 1) == "0001-passwd.png"
    assert safe_filename("http://x.org/a%20b%2F..%2Fc.jpeg?x=1", "image/jpeg", 12) == "0012-c.jpg"
    assert safe_filename("http://x.org/", "image/webp", 3) == "0003-image.webp"


def test_ghibli_set_from_urls(server, tmp_path):
    lines = [f"{server}/img/still-{i}.png" for i in range(1, 4)] + [f"{server}/page.html", "mailto:someone"]
    (tmp_path / "urls.txt").write_text("\n".join(lines) + "\n")
    options = GhibliOptions(out=tmp_path / "out", urls=tmp_path / "urls.txt", size=64, min_size=64, download=FAST)
    report = prepare_ghibli(options)
    assert sorted(report.kept.values()) == lines[:3]  # the report traces every image to its URL
    assert {n.file: n.kind for n in report.dropped} == {f"{server}/page.html": "download failed",
                                                        "mailto:someone": "bad url"}
    assert len((tmp_path / "out" / "metadata.jsonl").read_text().splitlines()) == 3
    assert json.loads((tmp_path / "out" / "report.json").read_text())["counts"]["kept"] == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # downloads and staging cleaned up
