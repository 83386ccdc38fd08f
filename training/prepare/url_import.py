"""Download images listed in a text file, politely and defensively.

Each URL gets a timeout, a few retries with exponential backoff (only for failures that can pass: timeouts,
refused connections, 5xx, 429), a size limit, a check that the server says it is an image, and a pause between
requests to the same host. A URL that fails is reported with its reason; the others go on.
"""
from __future__ import annotations

import logging
import mimetypes
import re
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tqdm.auto import tqdm

log = logging.getLogger(__name__)

USER_AGENT = "atelier-dataset-prepare/1.0 (+https://github.com/; polite, rate-limited)"
RETRY_STATUSES = {408, 429, 500, 502, 503, 504}


class DownloadError(Exception):
    """One URL failed; ``retry`` says whether trying again could help."""

    def __init__(self, message: str, retry: bool = False):
        super().__init__(message)
        self.retry = retry


@dataclass(frozen=True)
class DownloadSettings:
    timeout: float = 20.0  # seconds per connection attempt and per read
    retries: int = 3  # extra attempts after the first
    backoff: float = 1.0  # seconds before the first retry; doubled each time
    max_bytes: int = 25 * 1024**2
    delay: float = 0.5  # seconds between two requests to the same host


@dataclass
class DownloadResult:
    files: dict[Path, str] = field(default_factory=dict)  # downloaded file -> its URL
    failures: list[tuple[str, str]] = field(default_factory=list)  # (url, reason)


def read_url_list(path: str | Path) -> tuple[list[str], list[tuple[str, str]]]:
    """(http/https URLs, (line, reason) for lines that are not) from a file; blanks and # comments skipped."""
    urls, bad = [], []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if urlsplit(line).scheme.lower() in ("http", "https") and urlsplit(line).netloc:
            urls.append(line)
        else:
            bad.append((line, f"{Path(path).name} line {number} is not an http(s) URL; skipped."))
    return urls, bad


def safe_filename(url: str, content_type: str, index: int) -> str:
    """``0007-name.ext``: the URL's last path part reduced to safe characters, the extension from the type."""
    stem = Path(unquote(urlsplit(url).path).rsplit("/", 1)[-1]).stem
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_")[:60] or "image"
    ext = {"image/jpeg": ".jpg"}.get(content_type) or mimetypes.guess_extension(content_type) or ".img"
    return f"{index:04d}-{stem}{ext}"


class Fetcher:
    """Fetches URLs one at a time, spacing requests to each host by ``settings.delay``."""

    def __init__(self, settings: DownloadSettings = DownloadSettings(), sleep=time.sleep):
        self.settings = settings
        self.sleep = sleep
        self._last: dict[str, float] = {}  # host -> time of the last request

    def fetch(self, url: str) -> tuple[bytes, str]:
        """(body, content type) of an image URL, retrying what can pass; raises DownloadError."""
        for attempt in range(self.settings.retries + 1):
            try:
                return self._once(url)
            except DownloadError as err:
                if not err.retry or attempt == self.settings.retries:
                    raise
                wait = self.settings.backoff * 2 ** attempt
                log.info("%s: %s; retrying in %.1f s", url, err, wait)
                self.sleep(wait)
        raise AssertionError("unreachable")

    def _wait_turn(self, host: str) -> None:
        since = time.monotonic() - self._last.get(host, -1e9)
        if since < self.settings.delay:
            self.sleep(self.settings.delay - since)
        self._last[host] = time.monotonic()

    def _once(self, url: str) -> tuple[bytes, str]:
        self._wait_turn(urlsplit(url).netloc)
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "image/*"})
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout) as response:
                content_type = response.headers.get_content_type()
                if not content_type.startswith("image/") or content_type == "image/svg+xml":
                    raise DownloadError(f"the server sent {content_type}, not a raster image")
                return self._read_limited(response), content_type
        except urllib.error.HTTPError as err:
            raise DownloadError(f"HTTP {err.code} {err.reason}", retry=err.code in RETRY_STATUSES) from None
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as err:
            reason = getattr(err, "reason", err)
            raise DownloadError(f"could not connect ({reason})", retry=True) from None

    def _read_limited(self, response) -> bytes:
        limit = self.settings.max_bytes
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise DownloadError(f"it is {int(declared):,} bytes, over the limit of {limit:,}")
        body = response.read(limit + 1)  # never more than the limit, whatever the header said
        if len(body) > limit:
            raise DownloadError(f"it is over the limit of {limit:,} bytes")
        return body


def download_all(urls: list[str], dest: Path, settings: DownloadSettings = DownloadSettings(),
                 fetcher: Fetcher | None = None) -> DownloadResult:
    """Download every URL into ``dest``; failures are collected, not raised."""
    dest.mkdir(parents=True, exist_ok=True)
    fetcher = fetcher or Fetcher(settings)
    result = DownloadResult()
    for index, url in enumerate(tqdm(urls, desc="download", unit="url"), start=1):
        try:
            body, content_type = fetcher.fetch(url)
        except DownloadError as err:
            result.failures.append((url, f"{url} could not be downloaded: {err}."))
            continue
        path = dest / safe_filename(url, content_type, index)
        path.write_bytes(body)
        result.files[path] = url
    return result
