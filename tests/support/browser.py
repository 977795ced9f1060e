"""Headless Chromium from Debian's package, driven by Playwright; and what to do without it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from playwright.sync_api import Page

from tests.support.gates import skip_or_fail

CHROMIUM = os.environ.get("OTTO_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip

# What Chromium logs for any resource answered 401, the page itself included.
REFUSED = "Failed to load resource: the server responded with a status of 401 (Unauthorized)"


def require_browser() -> None:
    """Skip without Chromium and Playwright; fail instead when OTTO_REQUIRE_BROWSER=1 (CI)."""
    problem = None if shutil.which(CHROMIUM) else f"{CHROMIUM} not found (apt-get install chromium)"
    skip_or_fail(problem, "OTTO_REQUIRE_BROWSER", str(problem))


@dataclass
class Watch:
    """What a page did that a test must check: console errors, uncaught exceptions, foreign requests."""

    origin: str
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def console(self, kind: str, text: str, url: str) -> None:
        if kind == "error":
            self.errors.append(f"console: {text} ({url})" if url else f"console: {text}")

    def request(self, url: str) -> None:
        self.requests.append(url)
        parts = urlsplit(url)
        if parts.scheme not in ("data", "blob") and f"{parts.scheme}://{parts.netloc}" != self.origin:
            self.foreign.append(url)

    def assert_clean(self, refused: Collection[str] = ()) -> None:
        """No errors but Chromium's line for each address in ``refused``, which the test expects refused."""
        expected = {f"console: {REFUSED} ({url})" for url in refused}
        assert [e for e in self.errors if e not in expected] == [], self.errors
        assert self.foreign == [], self.foreign


@contextmanager
def watched(page: Page, origin: str) -> Iterator[Watch]:
    """Record a Playwright page's console errors, page errors and requests while the block runs."""
    watch = Watch(origin)
    page.on("console", lambda m: watch.console(m.type, m.text, m.location.get("url", "")))
    page.on("pageerror", lambda e: watch.errors.append(f"pageerror: {e}"))
    page.on("request", lambda r: watch.request(r.url))
    yield watch
