"""Fixtures of the browser tier: Debian's Chromium driven by Playwright for Python, against a
real `taskyard standalone` process with tokens set.

One browser and one server per module (both are slow to start); each test opens its own
browser context (cookies of its own). Playwright's own browser download is never used:
the browser is `CHROMIUM` (Debian's package `chromium`; `.ci/run` installs it). Where it is
missing the tier is skipped with a loud reason, or fails when TASKYARD_REQUIRE_SERVICES=1
(CI), so CI can never pass without running it.

`TASKYARD_SCREENSHOTS=docs/images pytest tests/browser` also writes the screenshots the
docs show (see `test_dashboard.py`).
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from tests.e2e.harness import Procs, clean_environment
from tests.eventually import eventually

CHROMIUM = os.environ.get("TASKYARD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE_VERSION = "4.14.1"
AXE_JS = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
TOKEN = "browser-test-token"
VIEWPORT = {"width": 1100, "height": 760}


def browser_missing(executable: str = CHROMIUM) -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not (Path(executable).exists() or shutil.which(executable)):
        return f"no Chromium at {executable} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -e '.[dev]')"
    return None


def require_browser(executable: str = CHROMIUM) -> None:
    """Skip loudly without a browser; fail instead when TASKYARD_REQUIRE_SERVICES=1 (CI)."""
    missing = browser_missing(executable)
    if missing is not None:
        if os.environ.get("TASKYARD_REQUIRE_SERVICES") == "1":
            pytest.fail(f"the browser tests must run: {missing}")
        pytest.skip(f"BROWSER TESTS SKIPPED: {missing}")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A headless Chromium of Debian's, launched once per module (a fresh profile)."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


@attrs.define
class Server:
    """A `taskyard standalone` with `TOKEN` configured, and a bearer-token JSON client."""

    url: str
    token: str = TOKEN

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, doc = self.call(method, path, body)
        assert 200 <= status < 300, (method, path, status, doc)
        return doc

    def submit(self, **job: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.ok("POST", "/v1/jobs", job)
        return result

    def job(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.ok("GET", f"/v1/jobs/{job_id}")
        return result

    def wait_state(self, job_id: str, state: str, timeout_s: float = 30) -> dict[str, Any]:
        seen: list[str] = []

        def reached() -> bool:
            seen.append(self.job(job_id)["state"])
            return seen[-1] == state

        eventually(reached, timeout_s=timeout_s, what=f"job {job_id} {state} (saw {seen[-3:]})")
        return self.job(job_id)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real standalone process for the module, on SQLite, with tokens set."""
    directory = tmp_path_factory.mktemp("browser")
    procs = Procs(directory)
    try:
        env = clean_environment(
            TASKYARD_API_TOKENS=TOKEN,
            TASKYARD_LEASE_TTL_SECONDS="2",
            TASKYARD_POLL_INTERVAL_SECONDS="0.2",
        )
        args = ["standalone", "--db", f"sqlite:///{directory / 'ui.db'}", "--port", "0"]
        proc = procs.start("standalone", args, env=env)
        running = Server(url=proc.url())
        eventually(lambda: running.call("GET", "/readyz")[0] == 200, timeout_s=30, what="ready")
        yield running
        assert proc.stop() == 0
    finally:
        procs.close()
