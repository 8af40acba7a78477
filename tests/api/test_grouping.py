"""Concurrent POST /v1/jobs requests share store calls (a group commit), and every request
still gets exactly the answer it would have had alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import falcon.testing
import pytest

from taskyard.adapters.memory import InMemoryJobStore
from taskyard.domain.errors import StoreUnavailable
from taskyard.domain.model import Enqueued, NewJob
from tests.api.conftest import Api, assert_problem, make_api

DEADLINE_S = 10.0


class GatedStore:
    """The in-memory store, but its first `enqueue` after `close_gate()` waits until
    `open_gate()`, so that other requests pile up behind it. Counts enqueue calls."""

    def __init__(self, inner: InMemoryJobStore) -> None:
        self.inner = inner
        self.calls: list[list[NewJob]] = []
        self.unavailable = False
        self._gate = threading.Event()
        self._gate.set()
        self.holding = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def close_gate(self) -> None:
        self._gate.clear()

    def open_gate(self) -> None:
        self._gate.set()

    def enqueue(self, jobs: Sequence[NewJob]) -> list[Enqueued]:
        self.calls.append(list(jobs))
        if not self._gate.is_set():
            self.holding.set()
            assert self._gate.wait(DEADLINE_S), "the gate was never opened"
        if self.unavailable:
            raise StoreUnavailable(message="down for the test")
        return self.inner.enqueue(jobs)


@pytest.fixture
def gated() -> tuple[Api, GatedStore]:
    holder: list[GatedStore] = []

    def wrap(memory: InMemoryJobStore) -> Any:
        holder.append(GatedStore(memory))
        return holder[0]

    api = make_api(wrap_store=wrap)
    return api, holder[0]


def _wait_until(what: str, probe: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def _post_in_thread(
    api: Api, body: dict[str, Any], out: dict[int, falcon.testing.Result], key: int
) -> threading.Thread:
    def run() -> None:
        out[key] = api.post("/v1/jobs", body, headers={"X-Request-ID": f"req-{key}"})

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _group_behind_a_held_call(
    api: Api, store: GatedStore, first: dict[str, Any], others: list[dict[str, Any]]
) -> dict[int, falcon.testing.Result]:
    """Send `first`, hold its store call, send `others` meanwhile, then let everything go."""
    results: dict[int, falcon.testing.Result] = {}
    store.close_gate()
    threads = [_post_in_thread(api, first, results, 0)]
    assert store.holding.wait(DEADLINE_S)
    groups = api.services.submissions
    for n, body in enumerate(others, start=1):
        threads.append(_post_in_thread(api, body, results, n))
        _wait_until(f"request {n} to wait", lambda n=n: len(groups._waiting) == n)
    store.open_gate()
    for thread in threads:
        thread.join(DEADLINE_S)
        assert not thread.is_alive()
    return results


def test_requests_that_arrive_during_a_store_call_share_the_next_one(
    gated: tuple[Api, GatedStore],
) -> None:
    api, store = gated
    results = _group_behind_a_held_call(
        api,
        store,
        {"task": "sleep", "args": {"seconds": 0}},
        [{"task": "sleep", "args": {"seconds": n}, "queue": f"q{n}"} for n in (1, 2, 3)],
    )
    assert [len(call) for call in store.calls] == [1, 3]
    for n, result in results.items():
        assert result.status_code == 201, result.text
        job = result.json
        assert job["args"]["seconds"] == n
        assert job["correlation_id"] == f"req-{n}"
        assert job["state"] == "queued"
    assert sorted(str(j.id) for j in api.stored()) == sorted(r.json["id"] for r in results.values())


def test_a_quiet_api_stores_each_request_at_once(gated: tuple[Api, GatedStore]) -> None:
    api, store = gated
    for n in range(3):
        api.submit(args={"seconds": n})
    assert [len(call) for call in store.calls] == [1, 1, 1]


def test_a_refused_request_in_a_group_is_refused_alone(gated: tuple[Api, GatedStore]) -> None:
    api, store = gated
    api.submit(idempotency_key="taken", args={"seconds": 5})
    store.calls.clear()
    results = _group_behind_a_held_call(
        api,
        store,
        {"task": "sleep"},
        [
            {"task": "sleep", "args": {"seconds": 1}},
            {"task": "sleep", "args": {"seconds": 9}, "idempotency_key": "taken"},
            {"task": "sleep", "args": {"seconds": 3}},
        ],
    )
    # The group of three was refused whole, then each went again on its own.
    assert [len(call) for call in store.calls] == [1, 3, 1, 1, 1]
    assert_problem(results[2], 409)
    assert {n: results[n].status_code for n in (0, 1, 3)} == {0: 201, 1: 201, 3: 201}
    stored = {j.args.get("seconds") for j in api.stored()}
    assert stored == {None, 1, 3, 5}, "nothing of the refused request was stored"


def test_a_key_repeated_within_a_group_answers_as_in_order(
    gated: tuple[Api, GatedStore],
) -> None:
    api, store = gated
    same = {"task": "sleep", "args": {"seconds": 2}, "idempotency_key": "twice"}
    results = _group_behind_a_held_call(api, store, {"task": "sleep"}, [same, same])
    assert [len(call) for call in store.calls] == [1, 2]
    assert (results[1].status_code, results[2].status_code) == (201, 200)
    assert results[1].json["id"] == results[2].json["id"]


def test_an_unavailable_store_answers_every_request_of_the_group(
    gated: tuple[Api, GatedStore],
) -> None:
    api, store = gated
    store.unavailable = True
    results = _group_behind_a_held_call(
        api, store, {"task": "sleep"}, [{"task": "sleep"}, {"task": "sleep"}]
    )
    assert [len(call) for call in store.calls] == [1, 2]
    for result in results.values():
        assert_problem(result, 503)
    assert api.stored() == []
