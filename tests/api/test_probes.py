"""`/readyz` and `/metrics` answer within about 2 s whatever the store does (`probes.py`).

The bounds below (6 s) are deadlines on answers that used to take 10 s, not timings."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import falcon.testing
import pytest

from taskyard.adapters.memory import InMemoryJobStore
from taskyard.adapters.postgres import PostgresJobStore
from taskyard.entrypoints.api import create_app
from taskyard.entrypoints.bootstrap import bootstrap
from taskyard.entrypoints.config import Settings
from tests.api.conftest import make_api

ANSWER_BOUND_S = 6.0
"""Well under the 10 s a probe took when PostgreSQL was down, well over the 2 s bound."""


def _answer_within(bound_s: float, ask: Callable[[], falcon.testing.Result]) -> Any:
    answers: list[falcon.testing.Result] = []
    thread = threading.Thread(target=lambda: answers.append(ask()), daemon=True)
    thread.start()
    thread.join(timeout=bound_s)
    assert answers, f"no answer within {bound_s} s"
    return answers[0]


@pytest.fixture
def unreachable_postgres() -> Iterator[PostgresJobStore]:
    """A store whose server is a closed local port: every connection attempt is refused,
    and the pool waits its timeout (10 s) for one."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = PostgresJobStore.from_url(f"postgresql://postgres@127.0.0.1:{port}/taskyard")
    try:
        yield store
    finally:
        store.close()


def test_readiness_and_metrics_answer_in_time_when_postgresql_is_unreachable(
    unreachable_postgres: PostgresJobStore,
) -> None:
    services = bootstrap(Settings(), store=unreachable_postgres, coordinator=None).services()
    client = falcon.testing.TestClient(create_app(services))
    ready = _answer_within(ANSWER_BOUND_S, lambda: client.simulate_get("/readyz"))
    assert ready.status_code == 503
    assert ready.json["checks"] == {"store": "down: no answer within 2 s"}
    metrics = _answer_within(ANSWER_BOUND_S, lambda: client.simulate_get("/metrics"))
    assert metrics.status_code == 200
    assert 'taskyard_up{component="store"} 0.0' in metrics.text


class HangingStore:
    """The in-memory store, except that `now()` (what readiness asks) waits for `release`."""

    def __init__(self, inner: InMemoryJobStore) -> None:
        self.inner = inner
        self.release = threading.Event()

    def now(self) -> datetime:
        assert self.release.wait(timeout=60), "the test never released the store"
        return self.inner.now()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _probe_threads(name: str) -> int:
    return sum(1 for t in threading.enumerate() if t.name == f"taskyard-probe-{name}")


def test_a_hanging_store_holds_one_helper_thread_however_many_probes_come() -> None:
    holder: list[HangingStore] = []

    def wrap(store: InMemoryJobStore) -> Any:
        holder.append(HangingStore(store))
        return holder[0]

    api = make_api(wrap_store=wrap, with_coordinator=False)
    [store] = holder
    try:
        answers: list[int] = []

        def probe() -> None:
            answers.append(api.client.simulate_get("/readyz").status_code)

        threads = [threading.Thread(target=probe, daemon=True) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=ANSWER_BOUND_S)
        assert answers == [503] * 8
        assert _probe_threads("store") == 1
    finally:
        store.release.set()
    ok = _answer_within(ANSWER_BOUND_S, lambda: api.client.simulate_get("/readyz"))
    assert ok.status_code == 200
