"""The dashboard (`/ui`) through Falcon's test client: access, the session cookie, CSRF,
headers, hostile input, and what the pages read. The browser tests (`tests/browser/`)
drive the same pages in Chromium."""

from __future__ import annotations

import doctest
import importlib
import re
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import falcon.testing
import pytest

from taskyard.domain.errors import StoreUnavailable
from taskyard.domain.model import JobState
from taskyard.domain.ports import WorkerInfo
from taskyard.entrypoints.api.access import Access
from taskyard.entrypoints.ui import UI_ROUTES
from taskyard.entrypoints.ui.session import COOKIE_NAME, SESSION_S, SessionKeys
from taskyard.entrypoints.ui.views import CACHE_S, TtlCache
from tests.api.conftest import TOKENS, Api, make_api
from tests.eventually import eventually
from tests.factories import claim_one, enqueue, enqueue_many, fail

CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')
PAGES = ["/ui", "/ui/jobs", "/ui/queues", "/ui/workers", "/ui/dead", "/ui/schedules"]


class Browser:
    """A client that keeps the dashboard's cookie, as a browser would."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.cookie: str | None = None

    def request(
        self,
        method: str,
        path: str,
        *,
        form: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        body: str | None = None,
    ) -> falcon.testing.Result:
        sent = dict(headers or {})
        if self.cookie is not None:
            sent["Cookie"] = f"{COOKIE_NAME}={self.cookie}"
        if form is not None:
            body = urlencode(form, doseq=True)
            sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
        result = self.api.client.simulate_request(method, path, headers=sent, body=body)
        for header in result.headers.get("set-cookie", "").split("\n"):
            match = re.match(rf"{COOKIE_NAME}=([^;]*)", header)
            if match:
                self.cookie = match.group(1).strip('"') or None
        # Never a 5xx but the store's or coordinator's own 503.
        assert result.status_code < 500 or result.status_code == 503, (
            method,
            path,
            result.status_code,
            result.text[:2000],
        )
        return result

    def get(self, path: str, **kwargs: Any) -> falcon.testing.Result:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, form: Mapping[str, Any], **kwargs: Any) -> falcon.testing.Result:
        return self.request("POST", path, form=form, **kwargs)

    def login(self, token: str = TOKENS[0]) -> falcon.testing.Result:
        return self.post("/ui/login", {"token": token, "next": "/ui"})

    def csrf(self, path: str = "/ui/queues") -> str:
        match = CSRF.search(self.get(path).text)
        assert match is not None, "the page has no CSRF token"
        return match.group(1)


@pytest.fixture
def locked() -> Api:
    return make_api(tokens=TOKENS)


def _queue_paused(api: Api, name: str) -> bool:
    return any(q.paused for q in api.store.queues() if q.name == name)


def _every_page_route() -> list[str]:
    concrete = {"{job_id}": "0190f3c4-1a2b-7c3d-8e4f-0123456789ab", "{name}": "ui.css"}
    out = []
    for template in (route.template for route in UI_ROUTES):
        path = template
        for key, value in concrete.items():
            path = path.replace(key, value)
        out.append(path)
    return out


# --- access -------------------------------------------------------------------------------


def test_with_tokens_every_page_is_a_401_login_form_until_signed_in(locked: Api) -> None:
    browser = Browser(locked)
    for path in [
        *PAGES,
        "/ui/jobs/bulk?action=retry&state=dead",
        "/ui/dead/retry?task=a&error_type=b",
    ]:
        result = browser.get(path)
        assert result.status_code == 401, path
        assert result.headers["content-type"].startswith("text/html")
        assert 'action="/ui/login"' in result.text and 'name="token"' in result.text
        assert "Jobs by state" not in result.text and browser.cookie is None
    assert browser.login().status_code == 303
    for path in PAGES:
        assert browser.get(path).status_code == 200, path


def test_only_the_login_form_and_static_files_are_open(locked: Api) -> None:
    """Deny by default: every dashboard route but the declared open ones refuses a
    request without a session, whatever its method."""
    browser = Browser(locked)
    opened = set()
    for template, path in zip((r.template for r in UI_ROUTES), _every_page_route(), strict=True):
        for method in ("GET", "POST"):
            result = browser.request(method, path, form={})
            if result.status_code not in (401, 405):
                opened.add(template)
    assert opened == {"/ui/login", "/ui/static/{name}"}


def test_the_open_dashboard_routes_are_declared_as_exactly_the_login_and_static_files() -> None:
    assert {r.template for r in UI_ROUTES if r.access is Access.OPEN} == {
        "/ui/login",
        "/ui/static/{name}",
    }


def test_a_bearer_token_reads_the_pages_but_acts_only_with_a_session_and_its_csrf_token(
    locked: Api,
) -> None:
    locked.submit(queue="mail")
    bearer = {"Authorization": f"Bearer {TOKENS[0]}"}
    client = Browser(locked)
    assert client.get("/ui/queues", headers=bearer).status_code == 200
    assert client.cookie is None  # no session is made for it
    refused = client.post("/ui/queues/mail/pause", {}, headers=bearer)
    assert refused.status_code == 403 and not _queue_paused(locked, "mail")
    wrong = client.get("/ui/queues", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and 'name="token"' in wrong.text


def test_the_login_cookie_is_httponly_strict_signed_and_holds_no_token(locked: Api) -> None:
    result = Browser(locked).login()
    assert result.status_code == 303 and result.headers["location"] == "/ui"
    cookie = result.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui" in cookie
    assert f"Max-Age={SESSION_S}" in cookie
    assert "Secure" not in cookie  # plain http://127.0.0.1: a Secure cookie would be dropped
    assert TOKENS[0] not in cookie and TOKENS[1] not in cookie
    behind_tls = Browser(locked).post(
        "/ui/login", {"token": TOKENS[1]}, headers={"X-Forwarded-Proto": "https"}
    )
    assert "Secure" in behind_tls.headers["set-cookie"]


def test_a_wrong_token_is_a_401_with_no_cookie(locked: Api) -> None:
    browser = Browser(locked)
    for token in ("nope", "", TOKENS[0] + "x", "\x00", "x" * 5000):
        result = browser.login(token)
        assert result.status_code == 401 and browser.cookie is None
        assert "not one this server accepts" in result.text


def test_login_goes_back_only_to_a_dashboard_page(locked: Api) -> None:
    for target, expected in (
        ("/ui/jobs?state=dead", "/ui/jobs?state=dead"),
        ("https://evil.example/", "/ui"),
        ("//evil.example/ui", "/ui"),
        ("/ui/../v1/jobs", "/ui"),
        ("/ui\r\nSet-Cookie: x=1", "/ui"),
    ):
        result = Browser(locked).post("/ui/login", {"token": TOKENS[0], "next": target})
        assert result.headers["location"] == expected, target


def test_a_session_ends_when_it_expires_or_its_token_is_removed(locked: Api) -> None:
    browser = Browser(locked)
    browser.login()
    assert browser.get("/ui").status_code == 200
    locked.clock.advance(SESSION_S + 1)
    assert browser.get("/ui").status_code == 401
    browser.login(TOKENS[1])
    rotated = make_api(tokens=(TOKENS[0],))  # the same server after TOKENS[1] was removed
    stale = Browser(rotated)
    stale.cookie = browser.cookie
    assert stale.get("/ui").status_code == 401


def test_a_forged_or_tampered_cookie_is_no_session(locked: Api) -> None:
    browser = Browser(locked)
    browser.login()
    assert browser.cookie is not None
    expires, nonce, mac = browser.cookie.split(".")
    for forged in (
        f"{int(expires) + 10**6}.{nonce}.{mac}",
        f"{expires}.{'0' * 32}.{mac}",
        SessionKeys(("attacker",)).issue(now_s=int(expires) - SESSION_S, token="attacker"),
        SessionKeys(()).issue(now_s=int(expires) - SESSION_S),  # the open dashboard's key
        "\x00",
        "a" * 5000,
    ):
        browser.cookie = forged
        assert browser.get("/ui").status_code == 401, forged


# --- CSRF ---------------------------------------------------------------------------------


@pytest.mark.parametrize("tokens", [TOKENS, ()], ids=["tokens", "open"])
def test_an_action_without_this_sessions_csrf_token_is_403_and_does_nothing(
    tokens: tuple[str, ...],
) -> None:
    api = make_api(tokens=tokens)
    api.submit(queue="mail")
    browser = Browser(api)
    if tokens:
        browser.login()
    token = browser.csrf()
    other = Browser(api)
    if tokens:
        other.login()
    for form, headers in (
        ({}, {}),
        ({"csrf_token": ""}, {}),
        ({"csrf_token": "0" * 64}, {}),
        ({"csrf_token": other.csrf()}, {}),
        ({"csrf_token": token, "x": "\x00"}, {"Content-Type": "application/json"}),
        ({"csrf_token": token}, {"Sec-Fetch-Site": "cross-site"}),
    ):
        result = browser.post("/ui/queues/mail/pause", form, headers=headers)
        assert result.status_code in (403, 415), (form, headers, result.status_code)
        assert result.headers["content-type"].startswith("text/html")
        assert not _queue_paused(api, "mail")
    stranger = Browser(api)  # no cookie at all: a form posted from another site
    assert stranger.post("/ui/queues/mail/pause", {"csrf_token": token}).status_code in (401, 403)
    assert not _queue_paused(api, "mail")
    result = browser.post("/ui/queues/mail/pause", {"csrf_token": token})
    assert result.status_code == 303 and _queue_paused(api, "mail")


def test_without_tokens_the_dashboard_is_open_and_gives_a_session_for_its_forms() -> None:
    api = make_api()
    browser = Browser(api)
    page = browser.get("/ui/queues")
    assert page.status_code == 200 and browser.cookie is not None
    assert "HttpOnly" in page.headers["set-cookie"]
    assert "Sign out" not in page.text
    assert browser.get("/ui/login").headers["location"] == "/ui"


def test_signing_out_deletes_the_cookie(locked: Api) -> None:
    browser = Browser(locked)
    browser.login()
    result = browser.post("/ui/logout", {"csrf_token": browser.csrf()})
    assert result.status_code == 303 and browser.cookie is None
    assert browser.get("/ui").status_code == 401


# --- headers and refresh ------------------------------------------------------------------


def test_every_dashboard_response_has_the_content_security_policy(locked: Api) -> None:
    browser = Browser(locked)
    paths = [*PAGES, "/ui/login", "/ui/static/ui.js", "/ui/nowhere", "/ui/jobs/zzz"]
    for signed_in in (False, True):
        if signed_in:
            browser.login()
        for path in paths:
            result = browser.get(path)
            csp = result.headers.get("content-security-policy", "")
            assert "default-src 'self'" in csp and "script-src 'self'" in csp, path
            assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
            assert result.headers["x-content-type-options"] == "nosniff"
            if result.headers["content-type"].startswith("text/html"):
                assert "<script>" not in result.text and " style=" not in result.text
                assert result.headers.get("cache-control") == "no-store", path


def test_the_live_part_alone_comes_with_an_etag_and_a_304_when_unchanged() -> None:
    api = make_api()
    api.submit(queue="mail")
    browser = Browser(api)
    headers = {"X-Taskyard-Partial": "live"}
    part = browser.get("/ui/queues", headers=headers)
    assert part.status_code == 200 and "<html" not in part.text and "mail" in part.text
    etag = part.headers["etag"]
    assert part.headers["vary"] == "X-Taskyard-Partial"
    again = browser.get("/ui/queues", headers={**headers, "If-None-Match": etag})
    assert again.status_code == 304 and again.text == ""
    api.submit(queue="mail")
    cached = browser.get("/ui/queues", headers={**headers, "If-None-Match": etag})
    assert cached.status_code == 304  # the counts are reused for CACHE_S
    api.clock.advance(CACHE_S)  # stale: still served, while a thread recomputes them
    seen: list[int] = []

    def changed() -> bool:
        result = browser.get("/ui/queues", headers={**headers, "If-None-Match": etag})
        seen.append(result.status_code)
        return result.status_code == 200 and result.headers["etag"] != etag

    eventually(changed, timeout_s=10, what=f"the new count is shown (statuses {seen[-3:]})")


class Ticker:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_cached_value_is_fresh_then_stale_while_one_refresh_runs_then_too_old() -> None:
    clock = Ticker()
    cache: TtlCache[int] = TtlCache(2.0, clock, stale_s=10.0)
    calls: list[int] = []
    release = threading.Event()

    def compute() -> int:
        calls.append(len(calls))
        if len(calls) == 2:
            release.wait(10)  # the background refresh, held until the test lets it go
        return len(calls)

    assert cache.get(compute) == 1 and cache.get(compute) == 1 and calls == [0]
    clock.now += 2.0  # stale: served at once, one refresh started however many ask
    assert [cache.get(compute) for _ in range(5)] == [1] * 5
    eventually(lambda: len(calls) == 2, timeout_s=5, what="one background refresh")
    release.set()
    eventually(lambda: cache.get(compute) == 2, timeout_s=5, what="the refreshed value")
    assert len(calls) == 2
    clock.now += 12.5  # too old to serve: computed in the request
    assert cache.get(compute) == 3
    clock.now -= 50  # the clock stepped back: not trusted
    assert cache.get(compute) == 4
    cache.clear()
    assert cache.get(compute) == 5


def test_peek_never_computes_in_the_request_but_starts_it_in_the_background() -> None:
    clock = Ticker()
    cache: TtlCache[int] = TtlCache(2.0, clock, stale_s=10.0)
    started = threading.Event()

    def compute() -> int:
        started.set()
        return 7

    assert cache.peek(compute) is None
    assert started.wait(5)
    eventually(lambda: cache.peek(lambda: 8) == 7, timeout_s=5, what="the value computed")


def test_a_failed_refresh_keeps_the_old_value_until_it_is_too_old() -> None:
    clock = Ticker()
    cache: TtlCache[str] = TtlCache(2.0, clock, stale_s=10.0)
    assert cache.get(lambda: "old") == "old"
    clock.now += 3
    failures: list[int] = []

    def broken() -> str:
        failures.append(1)
        raise StoreUnavailable(message="down")

    assert cache.get(broken) == "old"
    eventually(lambda: failures == [1], timeout_s=5, what="the refresh ran")
    eventually(lambda: not cache._refreshing, timeout_s=5, what="the refresh ended")
    assert cache.get(broken) == "old"  # still served; another refresh tries
    eventually(lambda: not cache._refreshing, timeout_s=5, what="the refresh ended")
    clock.now += 20
    with pytest.raises(StoreUnavailable):
        cache.get(broken)


def test_static_files_are_served_from_the_package_by_name_only() -> None:
    browser = Browser(make_api())
    css = browser.get("/ui/static/ui.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert (
        browser.get("/ui/static/ui.css", headers={"If-None-Match": css.headers["etag"]}).status_code
        == 304
    )
    for name in ("..%2Fpages.py", "%2e%2e%2fpages.py", "pages.py", "ui.css%00", "..", "UI.CSS"):
        assert browser.get(f"/ui/static/{name}").status_code == 404, name


# --- hostile input ------------------------------------------------------------------------


HOSTILE_GETS = [
    "/ui/jobs?limit=0",
    "/ui/jobs?limit=201",
    "/ui/jobs?limit=99999999999999999999999",
    "/ui/jobs?limit=-1",
    "/ui/jobs?limit=%D9%A1%D9%A0",
    "/ui/jobs?limit=1e3",
    "/ui/jobs?cursor=%00",
    "/ui/jobs?cursor=" + "A" * 5000,
    "/ui/jobs?cursor=MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxLjAw",
    "/ui/jobs?state=bogus",
    "/ui/jobs?queue=a%0Ab",
    "/ui/jobs?queue=" + "q" * 101,
    "/ui/jobs?task=a%00b",
    "/ui/jobs?task=" + "t" * 201,
    "/ui/jobs?q=%00",
    "/ui/jobs?q=" + "k" * 201,
    "/ui/jobs?q=a&q=b",
    "/ui/jobs?unknown=1",
    "/ui/jobs?done=retry-1%0A",
    "/ui/jobs/%00",
    "/ui/jobs/..%2F..%2Fv1%2Fjobs",
    "/ui/jobs/" + "9" * 5000,
    "/ui/jobs/0190F3C4-1A2B-7C3D-8E4F-0123456789AB",
    "/ui/jobs/bulk?action=drop&state=dead",
    "/ui/jobs/bulk?action=retry&state=running",
    "/ui/jobs/bulk?action=retry&state=dead&state=dead&queue=%0A",
    "/ui/dead/retry?task=%00&error_type=x",
    "/ui/dead/retry",
    "/ui/queues?x=1",
    "/ui//jobs",
    "/ui/./jobs",
    "/ui/x/../jobs",
    "/ui%2Fjobs",
]


@pytest.mark.parametrize("tokens", [TOKENS, ()], ids=["tokens", "open"])
def test_hostile_requests_are_refused_as_html_never_a_5xx_and_store_nothing(
    tokens: tuple[str, ...],
) -> None:
    api = make_api(tokens=tokens)
    dead = enqueue(api.store, task="t", max_attempts=1)
    api.store.report([fail(claim_one(api.store), retryable=False)])
    before = [j.to_json() for j in api.stored()]
    browser = Browser(api)
    if tokens:
        browser.login()
    token = browser.csrf()
    for path in HOSTILE_GETS:
        result = browser.get(path)
        assert result.status_code in (303, 400, 404, 422, 200), (path, result.status_code)
    posts = [
        ("/ui/queues/%0A/pause", {}),
        ("/ui/queues/default%0A/pause", {}),
        ("/ui/queues/" + "q" * 101 + "/pause", {}),
        ("/ui/queues/a%00b/pause", {}),
        ("/ui/jobs/%00/retry", {}),
        (f"/ui/jobs/{dead.id}x/retry", {}),
        ("/ui/jobs/bulk", {"action": "retry"}),
        ("/ui/jobs/bulk", {"action": "retry", "state": "running"}),
        ("/ui/jobs/bulk", {"action": "drop", "state": "dead"}),
        ("/ui/jobs/bulk", {"action": "retry", "queue": "a\x00"}),
        ("/ui/jobs/bulk", {"action": "retry", "task": "a\x00"}),
        ("/ui/jobs/bulk", {"action": "retry", "state": "dead", "evil": "1"}),
        ("/ui/jobs/bulk", {"action": ["retry", "cancel"], "state": "dead"}),
        ("/ui/dead/retry", {"task": "t"}),
        ("/ui/dead/retry", {"task": "t\x00", "error_type": "RuntimeError"}),
    ]
    for path, form in posts:
        result = browser.post(path, {**form, "csrf_token": token})
        assert result.status_code in (400, 404, 405, 422), (path, form, result.status_code)
    for raw in ("%ff%fe", "a=%ZZ&&&", "csrf_token=" + token + "&" + "x=1&" * 200):
        result = browser.request(
            "POST",
            "/ui/queues/default/pause",
            body=raw,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert result.status_code in (400, 403), raw
    big = browser.request(
        "POST",
        "/ui/queues/default/pause",
        body="csrf_token=" + token + "&pad=" + "x" * 70_000,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert big.status_code == 413
    assert [j.to_json() for j in api.stored()] == before
    assert not any(q.paused for q in api.store.queues())


# --- what the pages show ------------------------------------------------------------------


def _signed_in(api: Api) -> Browser:
    browser = Browser(api)
    if api.services.tokens:
        browser.login()
    return browser


def test_the_jobs_filter_narrows_and_pages_by_keyset(locked: Api) -> None:
    for n in range(7):
        locked.submit(queue="mail" if n % 2 else "reports", args={"seconds": 0})
    browser = _signed_in(locked)
    everything = browser.get("/ui/jobs").text
    assert everything.count('class="id"') == 7
    mail = browser.get("/ui/jobs?queue=mail").text
    assert mail.count('class="id"') == 3
    first = browser.get("/ui/jobs?limit=4")
    assert first.text.count('class="id"') == 4
    next_url = re.search(r'href="(/ui/jobs\?[^"]*cursor=[^"]*)">Next page', first.text)
    assert next_url is not None
    rest = browser.get(next_url.group(1).replace("&amp;", "&")).text
    assert rest.count('class="id"') == 3
    ids = set(re.findall(r'class="id" href="/ui/jobs/([0-9a-f-]{36})"', first.text + rest))
    assert len(ids) == 7


def test_find_by_id_or_idempotency_key_opens_the_job(locked: Api) -> None:
    job = locked.submit(idempotency_key="order-42")
    browser = _signed_in(locked)
    for text in (job["id"], "order-42"):
        result = browser.get("/ui/jobs?" + urlencode({"q": text}))
        assert result.status_code == 303 and result.headers["location"] == f"/ui/jobs/{job['id']}"
    missing = browser.get("/ui/jobs?q=order-43")
    assert missing.status_code == 404 and "order-43" in missing.text


def test_a_bulk_action_shows_the_count_it_will_touch_then_does_it(locked: Api) -> None:
    for task in ("a", "a", "b"):
        enqueue(locked.store, task=task, queue="q1", max_attempts=1)
    for _ in range(3):
        locked.store.report([fail(claim_one(locked.store), retryable=False)])
    locked.submit(task="sleep", queue="q1")  # queued: a retry does not touch it
    browser = _signed_in(locked)
    for query, count in (("state=dead&queue=q1", 3), ("queue=q1", 3), ("task=a", 2)):
        page = browser.get(f"/ui/jobs/bulk?action=retry&{query}")
        assert page.status_code == 200
        assert re.search(rf"will retry <strong>{count}</strong> job", page.text), query
    token = browser.csrf()
    done = browser.post(
        "/ui/jobs/bulk", {"action": "retry", "task": "a", "state": "dead", "csrf_token": token}
    )
    assert done.status_code == 303 and "done=retry-2" in done.headers["location"]
    assert browser.get(done.headers["location"]).text.count("2 jobs retried") == 1
    states = sorted((j.task, j.state.value) for j in locked.stored() if j.task != "sleep")
    assert states == [("a", "queued"), ("a", "queued"), ("b", "dead")]
    cancel = browser.get("/ui/jobs/bulk?action=cancel&queue=q1")
    assert re.search(r"will cancel <strong>3</strong> jobs", cancel.text)
    # A list of several states offers each action on the states it changes.
    mixed = browser.get("/ui/jobs?state=dead&state=queued").text
    assert 'href="/ui/jobs/bulk?action=retry&amp;state=dead"' in mixed
    assert 'href="/ui/jobs/bulk?action=cancel&amp;state=queued"' in mixed
    refused = browser.get("/ui/jobs/bulk?action=retry&state=queued")
    assert refused.status_code == 422 and "retry applies to" in refused.text


def test_the_dead_letters_group_by_task_and_error_type_and_retry_one_group(locked: Api) -> None:
    for task, message in (("a", "x"), ("a", "y"), ("b", "z")):
        enqueue(locked.store, task=task, max_attempts=1)
        locked.store.report([fail(claim_one(locked.store), retryable=False, message=message)])
    browser = _signed_in(locked)
    page = browser.get("/ui/dead").text
    assert re.search(
        r"<td>a</a></td>\s*<td>RuntimeError</td>\s*<td>2</td>",
        page.replace('<a href="/ui/jobs?state=dead&amp;task=a">', ""),
    )
    confirm = browser.get("/ui/dead/retry?task=a&error_type=RuntimeError")
    assert "will retry <strong>2</strong> dead jobs" in confirm.text
    done = browser.post(
        "/ui/dead/retry", {"task": "a", "error_type": "RuntimeError", "csrf_token": browser.csrf()}
    )
    assert done.status_code == 303
    assert {(j.task, j.state) for j in locked.stored()} == {
        ("a", JobState.QUEUED),
        ("b", JobState.DEAD),
    }


def test_the_job_page_shows_error_traceback_attempts_and_dependencies_both_ways(
    locked: Api,
) -> None:
    first = enqueue(locked.store, task="first", max_attempts=2)
    then = enqueue(locked.store, task="then", depends_on=[first.id])
    claimed = claim_one(locked.store, worker="host:1:abc")
    locked.store.report([fail(claimed, message="kaboom")])
    browser = _signed_in(locked)
    page = browser.get(f"/ui/jobs/{first.id}").text
    assert "kaboom" in page and "Traceback ..." in page and "host:1:abc" in page
    assert f"/ui/jobs/{then.id}" in page  # waiting for it
    assert "failed" in page
    other = browser.get(f"/ui/jobs/{then.id}").text
    assert f"/ui/jobs/{first.id}" in other  # it waits for
    assert browser.get("/ui/jobs/0190f3c4-1a2b-7c3d-8e4f-0123456789ab").status_code == 404


def test_retry_and_cancel_from_the_job_page(locked: Api) -> None:
    job = enqueue(locked.store, task="t", max_attempts=1)
    locked.store.report([fail(claim_one(locked.store), retryable=False)])
    browser = _signed_in(locked)
    token = browser.csrf(f"/ui/jobs/{job.id}")
    retried = browser.post(f"/ui/jobs/{job.id}/retry", {"csrf_token": token})
    assert retried.status_code == 303 and locked.store.get(job.id).state is JobState.QUEUED
    again = browser.post(f"/ui/jobs/{job.id}/retry", {"csrf_token": token})
    assert again.status_code == 409 and again.headers["content-type"].startswith("text/html")
    cancelled = browser.post(f"/ui/jobs/{job.id}/cancel", {"csrf_token": token})
    assert cancelled.status_code == 303
    assert locked.store.get(job.id).state is JobState.CANCELLED


def test_the_overview_counts_states_and_queues(locked: Api) -> None:
    for queue in ("a", "a", "b"):
        locked.submit(queue=queue)
    browser = _signed_in(locked)
    page = browser.get("/ui").text
    assert re.search(r'<span class="n">3</span> <span class="label">queued</span>', page)
    assert 'href="/ui/jobs?queue=a"' in page
    # The chart is computed in the background (it is the costly part): it comes a refresh
    # later, and the page is not held up for it.
    assert 'id="chart-pending"' in page and 'role="img"' not in page
    eventually(
        lambda: 'role="img"' in browser.get("/ui").text, timeout_s=10, what="the chart is shown"
    )


def test_with_the_store_or_the_coordinator_down_a_page_is_a_503_page_never_a_500() -> None:
    from tests.api.test_system import api_with_unpluggable_coordinator, unpluggable_api

    api, store = unpluggable_api()
    api.submit(queue="mail")
    browser = Browser(api)
    assert browser.get("/ui").status_code == 200
    store.down = True
    api.clock.advance(3600)  # every cached value too old to serve
    job_page = f"/ui/jobs/{api.stored()[0].id}"  # the store under the switch, read directly
    assert browser.get("/ui/workers").status_code == 200  # reads only the coordinator
    for path in [p for p in PAGES if p != "/ui/workers"] + [job_page]:
        result = browser.get(path)
        assert result.status_code == 503, path
        assert result.headers["content-type"].startswith("text/html")
        assert result.headers["retry-after"] == "1"
    api, coordinator = api_with_unpluggable_coordinator()
    coordinator.down = True
    result = Browser(api).get("/ui/workers")
    assert result.status_code == 503 and "coordinator" in result.text


@pytest.mark.parametrize(
    "name",
    [
        "taskyard.entrypoints.ui.session",
        "taskyard.entrypoints.ui.charts",
        "taskyard.entrypoints.ui.pages",
    ],
)
def test_the_dashboards_doctests_hold(name: str) -> None:
    module = importlib.import_module(name)
    failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert failures == 0 and tried > 0


def test_the_workers_page_shows_the_leader_and_links_each_workers_running_jobs(
    locked: Api,
) -> None:
    job = enqueue(locked.store, task="t")
    claim_one(locked.store, worker="host:7:w")
    now = locked.clock.now()
    locked.coordinator.register_worker(
        WorkerInfo(
            id="host:7:w",
            host="host",
            pid=7,
            queues=(),
            concurrency=4,
            started_at=now,
            last_heartbeat_at=now,
        ),
        ttl_s=60,
    )
    assert locked.coordinator.campaign(candidate="host:8:s", ttl_s=60) is not None
    page = _signed_in(locked).get("/ui/workers").text
    assert f'href="/ui/jobs/{job.id}"' in page  # from the store's leases
    assert 'id="leader">host:8:s<' in page


def test_keys_dependents_and_dead_groups_are_found_however_many_jobs_came_after(
    locked: Api,
) -> None:
    """The store looks them up by index: nothing is limited to the newest 1,000 jobs."""
    enqueue(locked.store, task="old", max_attempts=1)
    dead = claim_one(locked.store)
    locked.store.report([fail(dead, retryable=False, message="early")])
    keyed = enqueue(locked.store, task="old", idempotency_key="order-7", delay_s=600)
    locked.clock.advance(1)
    enqueue_many(locked.store, 1100, task="filler", delay_s=600)
    locked.clock.advance(1)
    child = enqueue(locked.store, task="child", depends_on=[keyed.id])
    browser = _signed_in(locked)
    found = browser.get("/ui/jobs?" + urlencode({"q": "order-7"}))
    assert found.status_code == 303 and found.headers["location"] == f"/ui/jobs/{keyed.id}"
    assert f"/ui/jobs/{child.id}" in browser.get(f"/ui/jobs/{keyed.id}").text
    page = browser.get("/ui/dead").text
    assert f"/ui/jobs/{dead.id}" in page and "among the newest" not in page
    empty = browser.get("/ui/jobs?queue=default&task=no-such-task")
    assert empty.status_code == 200 and 'class="id"' not in empty.text


def test_a_menu_entry_for_a_page_the_store_cannot_serve_is_hidden(locked: Api) -> None:
    """A page that reads a store method has its menu entry only when the store has it."""
    from taskyard.entrypoints.ui.pages import NAV

    [schedules] = [item for item in NAV if item.href == "/ui/schedules"]

    class WithoutSchedules:
        pass

    assert schedules.available(locked.store)
    assert not schedules.available(WithoutSchedules())
    assert 'href="/ui/schedules"' in _signed_in(locked).get("/ui").text


def test_the_schedules_page_shows_each_schedule_and_links_its_fires(locked: Api) -> None:
    browser = _signed_in(locked)
    assert "No schedule yet" in browser.get("/ui/schedules").text
    made = locked.post(
        "/v1/schedules", {"name": "tick", "task": "sleep", "every_seconds": 5, "overlap": "allow"}
    )
    assert made.status_code == 201, made.text
    locked.clock.advance(6)
    locked.store.fire_schedules(limit=10)
    page = browser.get("/ui/schedules")
    assert page.status_code == 200 and "<code>tick</code>" in page.text
    [fire] = locked.get("/v1/schedules/tick").json["recent_fires"]
    assert f'href="/ui/jobs/{fire["job_id"]}"' in page.text


def test_the_queues_page_shows_each_queue_s_limits_and_what_it_uses_of_them() -> None:
    from taskyard.domain.flow import QueueLimits, RateLimit
    from taskyard.domain.ports import ClaimRequest

    api = make_api()
    limits = QueueLimits(
        concurrency_limit=2,
        key_concurrency_limit=1,
        rate_limit=RateLimit(count=3, period_s=60),
        weight=4,
    )
    api.store.set_queue_limits("mail", limits)
    api.submit(queue="mail", concurrency_key="k1")
    api.submit(queue="idle-one")
    assert len(api.store.claim(ClaimRequest(worker="w", limit=10, lease_ttl_s=30))) == 2
    page = Browser(api).get("/ui/queues").text
    mail = page.split('id="queue-mail"', 1)[1].split("</tr>", 1)[0]
    assert '<td class="limit">1 / 2, 1 per key</td>' in mail
    assert '<td class="rate">1 / 3 per 1 min 0 s</td>' in mail
    assert '<td class="weight">4</td>' in mail
    other = page.split('id="queue-idle-one"', 1)[1].split("</tr>", 1)[0]
    assert '<td class="limit">1 / no limit</td>' in other
    assert '<td class="rate">no limit</td>' in other


def test_a_job_page_says_why_the_job_waits() -> None:
    from taskyard.domain.flow import QueueLimits
    from taskyard.domain.ports import ClaimRequest

    api = make_api()
    api.store.set_queue_limits("mail", QueueLimits(concurrency_limit=1))
    first, second = api.submit(queue="mail"), api.submit(queue="mail")
    browser = Browser(api)
    assert (
        'waiting: <span id="waiting-reason">no free worker</span>'
        in browser.get(f"/ui/jobs/{first['id']}").text
    )
    api.store.claim(ClaimRequest(worker="w", limit=5, lease_ttl_s=30))
    assert "waiting-reason" not in browser.get(f"/ui/jobs/{first['id']}").text
    assert (
        'waiting: <span id="waiting-reason">concurrency limit</span>'
        in browser.get(f"/ui/jobs/{second['id']}").text
    )
