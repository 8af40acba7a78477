"""The dashboard in a real browser (headless Chromium, Playwright), against a real
`taskyard standalone` with a token: every main page loads with no console error and no
serious accessibility violation (axe-core), the keyboard reaches everything, a filter
narrows the job list, a dead job retried from its page runs again, pausing a queue stops
claims, the login is required and an action without the CSRF token is refused.

With `TASKYARD_SCREENSHOTS=<dir>` the page test also saves each page as a PNG there (the
docs' pictures: `TASKYARD_SCREENSHOTS=docs/images pytest tests/browser -k every_main_page`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import AXE_JS, TOKEN, VIEWPORT, Server

AXE_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations
    .filter((v) => ["serious", "critical"].includes(v.impact))
    .map((v) => v.id + " (" + v.impact + "): " + v.nodes.map((n) => n.target.join(" ")).join(", "));
}"""


@pytest.fixture(scope="module")
def data(server: Server) -> Iterator[dict[str, Any]]:
    """A small, fixed data set: jobs that succeed, one that failed once first, two dead in
    `reports`, one scheduled for later in `mail` and one waiting for it, and one running
    (cancelled at the end of the module)."""
    done = [server.submit(task="sleep", args={"seconds": 0}) for _ in range(3)]
    flaky = server.submit(
        task="sleep",
        args={"fail_times": 1},
        backoff={"base_seconds": 1, "jitter": "none"},
        idempotency_key="nightly-report-2026-12-05",
    )
    dead = [
        server.submit(task="sleep", args={"fail": True}, queue="reports", max_attempts=1)
        for _ in range(2)
    ]
    later = server.submit(task="sleep", queue="mail", delay_seconds=3600)
    waiting = server.submit(task="sleep", queue="mail", depends_on=[later["id"]])
    running = server.submit(task="sleep", args={"seconds": 600}, queue="reports")
    for job in done:
        server.wait_state(job["id"], "succeeded")
    server.wait_state(flaky["id"], "succeeded")
    for job in dead:
        server.wait_state(job["id"], "dead")
    server.wait_state(running["id"], "running")
    yield {"flaky": flaky, "dead": dead, "later": later, "waiting": waiting}
    server.ok("POST", f"/v1/jobs/{running['id']}/cancel")
    server.wait_state(running["id"], "cancelled")


@pytest.fixture
def context(chromium: Any) -> Iterator[Any]:
    """A browser context of this test's own: its own cookies."""
    ctx = chromium.new_context(viewport=VIEWPORT)
    ctx.set_default_timeout(15_000)
    try:
        yield ctx
    finally:
        ctx.close()


class Console:
    """Every console error and uncaught exception of a page (CSP violations included)."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))


def sign_in(page: Any, server: Server, token: str = TOKEN) -> None:
    page.goto(f"{server.url}/ui/login")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def axe_violations(page: Any) -> list[str]:
    """Serious and critical violations axe-core finds in the page as it stands. The script
    is evaluated through the DevTools protocol, which the page's CSP does not govern."""
    page.evaluate(AXE_JS.read_text())
    found: list[str] = page.evaluate(AXE_RUN)
    return found


def test_every_main_page_loads_with_no_console_error_and_no_serious_axe_violation(
    context: Any, server: Server, data: dict[str, Any]
) -> None:
    page = context.new_page()
    console = Console(page)
    shots = os.environ.get("TASKYARD_SCREENSHOTS")
    pages = {
        "login": "/ui/login",
        "overview": "/ui",
        "jobs": "/ui/jobs",
        "job": f"/ui/jobs/{data['flaky']['id']}",
        "queues": "/ui/queues",
        "workers": "/ui/workers",
        "dead": "/ui/dead",
        "confirm": "/ui/jobs/bulk?action=retry&state=dead&queue=reports",
    }
    problems: dict[str, list[str]] = {}
    for name, path in pages.items():
        if name == "overview":
            sign_in(page, server)
            page.wait_for_url(f"{server.url}/ui")
            # The chart is computed in the background; the page's own refresh brings it.
            page.locator("svg.chart").wait_for(timeout=20_000)
        else:
            response = page.goto(server.url + path)
            assert response is not None and response.status == 200, (path, response)
        page.wait_for_load_state("load")
        assert page.locator("h1").count() == 1, path
        violations = axe_violations(page)
        if violations:
            problems[path] = violations
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(shots) / f"ui-{name}.png"), full_page=name == "job")
    assert problems == {}, problems
    assert console.errors == [], console.errors
    assert re.search(r"\b2\b", page.locator("#confirm-count").inner_text())


def test_the_keyboard_reaches_the_content_the_menu_and_the_search(
    context: Any, server: Server, data: dict[str, Any]
) -> None:
    page = context.new_page()
    sign_in(page, server)
    page.wait_for_url(f"{server.url}/ui")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "content"
    page.goto(f"{server.url}/ui")
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Jobs":
            break
    page.keyboard.press("Enter")
    page.wait_for_url(f"{server.url}/ui/jobs")
    search = page.get_by_label("Job id or idempotency key")
    search.focus()
    page.keyboard.type("nightly-report-2026-12-05")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{server.url}/ui/jobs/{data['flaky']['id']}")
    for label in ("dead", "queued"):
        page.goto(f"{server.url}/ui/jobs")
        assert page.get_by_label(label, exact=True).is_visible()


def test_a_filter_narrows_the_job_list(context: Any, server: Server, data: dict[str, Any]) -> None:
    page = context.new_page()
    sign_in(page, server)
    page.goto(f"{server.url}/ui/jobs")
    rows = page.locator("table.jobs tbody tr")
    everything = rows.count()
    page.get_by_label("dead", exact=True).check()
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r".*/ui/jobs\?.*state=dead.*"))
    dead = rows.count()
    assert 0 < dead < everything
    assert set(page.locator("table.jobs tbody .state").all_inner_texts()) == {"dead"}
    page.get_by_label("Queue", exact=True).fill("mail")
    page.get_by_label("dead", exact=True).uncheck()
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r".*queue=mail.*"))
    assert set(page.locator("table.jobs tbody td:nth-child(3)").all_inner_texts()) == {"mail"}


def test_a_dead_job_is_retried_from_its_page_and_runs_again(
    context: Any, server: Server, data: dict[str, Any]
) -> None:
    # Fails its first attempt, its only one: dead. Retried, attempt 2 succeeds.
    job = server.submit(task="sleep", args={"fail_times": 1}, max_attempts=1)
    server.wait_state(job["id"], "dead")
    page = context.new_page()
    console = Console(page)
    sign_in(page, server)
    page.goto(f"{server.url}/ui/jobs/{job['id']}")
    assert page.locator("#job-state").inner_text() == "dead"
    page.get_by_role("button", name="Retry").click()
    page.wait_for_url(re.compile(r".*\?done=retry$"))
    # No reload from here on: the page's own refresh shows the new state.
    page.locator("#job-state", has_text="succeeded").wait_for(timeout=30_000)
    after = server.job(job["id"])
    assert after["state"] == "succeeded" and after["attempt"] == 2
    assert page.locator("table.attempts tbody tr").count() == 2
    assert console.errors == []


def test_pausing_a_queue_from_the_dashboard_stops_claims(
    context: Any, server: Server, data: dict[str, Any]
) -> None:
    first = server.submit(task="sleep", queue="pq")
    server.wait_state(first["id"], "succeeded")
    page = context.new_page()
    sign_in(page, server)
    page.goto(f"{server.url}/ui/queues")
    page.get_by_role("button", name="Pause queue pq").click()
    page.get_by_role("button", name="Resume queue pq").wait_for()
    held = server.submit(task="sleep", queue="pq")
    control = server.submit(task="sleep", queue="default")  # submitted after: claimed later
    server.wait_state(control["id"], "succeeded")
    # The worker claimed since `held` was due, and passed it over: the pause holds.
    still = server.job(held["id"])
    assert still["state"] == "queued" and still["attempt"] == 0
    page.get_by_role("button", name="Resume queue pq").click()
    page.get_by_role("button", name="Pause queue pq").wait_for()
    server.wait_state(held["id"], "succeeded")


def test_the_login_is_required_and_an_action_without_the_csrf_token_is_refused(
    context: Any, server: Server, data: dict[str, Any]
) -> None:
    page = context.new_page()
    response = page.goto(f"{server.url}/ui/queues")
    assert response is not None and response.status == 401
    assert page.get_by_label("API token").is_visible()
    assert page.locator("table").count() == 0
    page.get_by_label("API token").fill("not-the-token")
    page.get_by_role("button", name="Sign in").click()
    assert page.locator("#login-failed").is_visible()
    assert not context.cookies()
    page.get_by_label("API token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server.url}/ui/queues")
    [cookie] = context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and TOKEN not in cookie["value"]
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script can read it

    # The form without its hidden token, as a forged form would be.
    page.evaluate(
        """() => document.querySelectorAll('input[name="csrf_token"]')
                  .forEach((input) => input.remove())"""
    )
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="Pause queue reports").click()
    assert navigation.value.status == 403
    refused = context.request.post(f"{server.url}/ui/queues/reports/pause", form={"x": "1"})
    assert refused.status == 403
    queues = server.ok("GET", "/v1/queues")["queues"]
    assert not any(q["paused"] for q in queues if q["name"] == "reports")


def test_the_accessibility_check_finds_a_planted_violation(context: Any, server: Server) -> None:
    """The axe check can fail: the login form's field without its label is caught."""
    page = context.new_page()
    page.goto(f"{server.url}/ui/login")
    assert axe_violations(page) == []
    page.evaluate("() => document.querySelector('label[for=token]').remove()")
    assert any(v.startswith("label ") for v in axe_violations(page))
