"""`RedisCoordinator` against a real Redis (the shared one, under this test's own prefix)."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator

import pytest
import redis

from taskyard.adapters.redis_coordinator import RedisCoordinator, RedisSettings
from taskyard.domain.errors import CoordinatorUnavailable
from taskyard.domain.ports import Leadership
from taskyard.entrypoints.bootstrap import bootstrap
from taskyard.entrypoints.config import ConfigError, Settings
from tests.eventually import eventually
from tests.services import free_port, throwaway_redis

WAIT_S = 20.0

Make = Callable[[], RedisCoordinator]


@pytest.fixture
def make(redis_url: str, redis_prefix: str) -> Iterator[Make]:
    """Coordinators on the shared Redis, all under this test's prefix (one per "process")."""
    made: list[RedisCoordinator] = []

    def build() -> RedisCoordinator:
        coordinator = RedisCoordinator(redis_url, settings=RedisSettings(key_prefix=redis_prefix))
        made.append(coordinator)
        return coordinator

    yield build
    for coordinator in made:
        coordinator.close()


def test_one_leader_among_five_contenders_in_every_round(make: Make) -> None:
    contenders = [make() for _ in range(5)]
    barrier = threading.Barrier(len(contenders))
    last_term = 0
    for round_number in range(10):
        results: dict[int, Leadership | None] = {}

        def contend(index: int, into: dict[int, Leadership | None]) -> None:
            barrier.wait(WAIT_S)
            into[index] = contenders[index].campaign(candidate=f"s{index}", ttl_s=30)

        threads = [
            threading.Thread(target=contend, args=(i, results)) for i in range(len(contenders))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT_S)
        winners = {i: lead for i, lead in results.items() if lead is not None}
        assert len(results) == 5 and len(winners) == 1, (round_number, results)
        [(index, lead)] = winners.items()
        assert lead.term > last_term
        last_term = lead.term
        leader = contenders[(index + 1) % 5].leader()
        assert leader is not None and (leader.holder, leader.term) == (f"s{index}", lead.term)
        assert contenders[index].resign(candidate=f"s{index}") is True


def test_the_lease_passes_on_when_the_holder_stops_renewing(make: Make) -> None:
    store = bootstrap(Settings(database_url="memory://")).store
    schedulers = [
        bootstrap(Settings(), store=store, coordinator=make())
        .scheduler_runtime(scheduler_id=f"s{i}", leader_ttl_s=1.0, tick_interval_s=0.1)
        .start()
        for i in range(2)
    ]
    observer = make()
    try:
        eventually(lambda: observer.leader() is not None, timeout_s=WAIT_S, what="someone leads")
        first = observer.leader()
        assert first is not None
        [holder] = [s for s in schedulers if s.config.scheduler_id == first.holder]
        [other] = [s for s in schedulers if s is not holder]
        holder.kill()  # stops renewing, does not resign
        eventually(
            lambda: (lead := observer.leader()) is not None and lead.holder != first.holder,
            timeout_s=WAIT_S,
            what="the lease passed on",
        )
        second = observer.leader()
        assert second is not None and second.holder == other.config.scheduler_id
        assert second.term > first.term
        eventually(lambda: other.leading, timeout_s=WAIT_S, what="the other knows it leads")
    finally:
        for scheduler in schedulers:
            scheduler.stop()


def test_a_paused_leader_cannot_renew_or_release_the_new_leaders_lease(make: Make) -> None:
    paused, fresh, impostor, observer = make(), make(), make(), make()
    old = paused.campaign(candidate="s1", ttl_s=0.3)
    assert old is not None
    eventually(lambda: observer.leader() is None, timeout_s=WAIT_S, what="the old lease lapsed")
    new = fresh.campaign(candidate="s2", ttl_s=30)
    assert new is not None and new.term > old.term
    # The paused holder wakes up and carries on as if it still led.
    assert paused.campaign(candidate="s1", ttl_s=30) is None
    assert paused.resign(candidate="s1") is False
    # Another process using the new holder's name, without its token, gets nothing either.
    assert impostor.campaign(candidate="s2", ttl_s=30) is None
    assert impostor.resign(candidate="s2") is False
    lead = observer.leader()
    assert lead is not None and (lead.holder, lead.term) == ("s2", new.term)
    renewed = fresh.campaign(candidate="s2", ttl_s=30)
    assert renewed is not None and renewed.term == new.term


def test_one_ring_wakes_every_idle_waiter(make: Make, redis_url: str, redis_prefix: str) -> None:
    waiters = [make() for _ in range(3)]
    woke: list[bool] = []
    lock = threading.Lock()

    def wait(coordinator: RedisCoordinator) -> None:
        rung = coordinator.wait(["mail"], timeout_s=WAIT_S)
        with lock:
            woke.append(rung)

    threads = [threading.Thread(target=wait, args=(c,)) for c in waiters]
    for thread in threads:
        thread.start()
    peek = redis.Redis.from_url(redis_url)
    try:
        eventually(
            lambda: peek.zcard(f"{redis_prefix}waiters:mail") == 3,
            timeout_s=WAIT_S,
            what="three waiters registered",
        )
    finally:
        peek.close()
    make().ring(["mail"])  # once
    for thread in threads:
        thread.join(WAIT_S)
    assert woke == [True, True, True]


def test_every_redis_error_is_coordinator_unavailable() -> None:
    nowhere = RedisCoordinator(
        f"redis://127.0.0.1:{free_port()}/0",
        settings=RedisSettings(connect_timeout_s=0.5, socket_timeout_s=0.5),
    )
    calls: list[Callable[[], object]] = [
        lambda: nowhere.campaign(candidate="s1", ttl_s=1),
        nowhere.leader,
        nowhere.workers,
        nowhere.schedulers,
        lambda: nowhere.unregister_worker("w1"),
        lambda: nowhere.ring(["mail"]),
        lambda: nowhere.wait(["mail"], timeout_s=1),
        lambda: nowhere.wait(None, timeout_s=0),
    ]
    for call in calls:
        with pytest.raises(CoordinatorUnavailable):
            call()
    nowhere.close()


def _coordinator(url: str, prefix: str = "taskyard:") -> RedisCoordinator:
    settings = Settings(database_url="memory://", redis_url=url, redis_key_prefix=prefix)
    coordinator = bootstrap(settings).coordinator
    assert isinstance(coordinator, RedisCoordinator)
    return coordinator


def test_the_composition_root_builds_redis_from_a_url_with_a_key_prefix(
    redis_url: str, redis_prefix: str
) -> None:
    coordinator = _coordinator(f"{redis_url}?socket_timeout=2", f"{redis_prefix}app:")
    coordinator.ring(["mail"])
    assert coordinator.flush_bells(WAIT_S), "the composition root's rings go from a thread"
    peek = redis.Redis.from_url(redis_url)
    try:
        assert peek.exists(f"{redis_prefix}app:bell:mail") == 1
    finally:
        peek.close()
        coordinator.close()
    with pytest.raises(ConfigError, match="TASKYARD_REDIS_URL"):
        _coordinator(f"{redis_url}?no_such_option=1")
    with pytest.raises(ConfigError, match="unsupported scheme"):
        _coordinator("amqp://127.0.0.1")


def test_a_unix_socket_url_reaches_redis_through_the_composition_root() -> None:
    folder = tempfile.mkdtemp(prefix="ty-sock-", dir="/tmp")  # socket paths are short
    try:
        with throwaway_redis(unix_socket=os.path.join(folder, "redis.sock")) as server:
            coordinator = _coordinator(server.url, "unix-test:")
            try:
                lead = coordinator.campaign(candidate="s1", ttl_s=30)
                assert lead is not None and lead.holder == "s1"
                coordinator.ring(["mail"])
                assert coordinator.wait(["mail"], timeout_s=1.0) is True
            finally:
                coordinator.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- bells sent from a thread of their own (`bells_in_background`, bootstrap's choice) ---


def _background(redis_url: str, prefix: str, **options: float) -> RedisCoordinator:
    return RedisCoordinator(
        redis_url,
        settings=RedisSettings(key_prefix=prefix, bells_in_background=True, **options),
    )


def test_rings_from_the_bells_thread_wake_a_waiter_and_merge(
    make: Make, redis_url: str, redis_prefix: str
) -> None:
    ringer = _background(redis_url, redis_prefix)
    waiter = make()
    try:
        callers = [
            threading.Thread(target=lambda q=q: [ringer.ring([q]) for _ in range(50)])
            for q in ("mail", "reports", "mail")
        ]
        for thread in callers:
            thread.start()
        for thread in callers:
            thread.join(WAIT_S)
        assert ringer.flush_bells(WAIT_S), "every ring asked for was sent"
        bells = ringer._bells
        assert bells is not None and bells.failures == 0
        assert 1 <= bells.sent_rings <= 150, "rings that gathered meanwhile went as one"
        # Each queue's ring was kept for its next waiter, the any-queue one too.
        assert waiter.wait(["mail"], timeout_s=0) is True
        assert waiter.wait(["reports"], timeout_s=0) is True
        assert waiter.wait(None, timeout_s=0) is True
        assert waiter.wait(["other"], timeout_s=0) is False
    finally:
        ringer.close()


def test_an_announcement_from_the_bells_thread_is_heard_by_a_waiter(
    make: Make, redis_url: str, redis_prefix: str
) -> None:
    from uuid import uuid4

    announcer = _background(redis_url, redis_prefix)
    listener = make()
    job = uuid4()
    try:
        mark = listener.finished_mark()
        announcer.announce_finished([uuid4(), job])
        heard = listener.wait_finished([job], after=mark, timeout_s=WAIT_S)
        assert job in heard.finished
    finally:
        announcer.close()


def test_close_sends_the_bells_still_pending(redis_url: str, redis_prefix: str) -> None:
    ringer = _background(redis_url, redis_prefix)
    ringer.ring(["closing"])
    ringer.close()
    peek = redis.Redis.from_url(redis_url)
    try:
        assert peek.exists(f"{redis_prefix}bell:closing") == 1
    finally:
        peek.close()


def test_a_ring_to_a_redis_that_is_gone_is_lost_without_troubling_the_caller() -> None:
    nowhere = _background(
        f"redis://127.0.0.1:{free_port()}/0", "gone:", connect_timeout_s=0.5, socket_timeout_s=0.5
    )
    nowhere.ring(["mail"])  # returns: the caller never waits on Redis for a ring
    nowhere.announce_finished([])
    assert nowhere.flush_bells(WAIT_S)
    bells = nowhere._bells
    assert bells is not None and bells.failures == 1 and bells.sent_rings == 0
    with pytest.raises(CoordinatorUnavailable):
        nowhere.wait(["mail"], timeout_s=0)  # everything else still says so
    nowhere.close()


def test_a_forked_child_rings_through_a_thread_of_its_own(
    redis_url: str, redis_prefix: str
) -> None:
    ringer = _background(redis_url, redis_prefix)
    try:
        ringer.ring(["parent"])  # the parent's thread runs from here
        assert ringer.flush_bells(WAIT_S)
        child = os.fork()
        if child == 0:  # pragma: no cover - the child reports through its exit code
            try:
                ringer.ring(["child"])
                os._exit(0 if ringer.flush_bells(WAIT_S) else 1)
            except BaseException:
                os._exit(2)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the child's ring went out"
        peek = redis.Redis.from_url(redis_url)
        try:
            assert peek.exists(f"{redis_prefix}bell:child") == 1
        finally:
            peek.close()
        ringer.ring(["after"])
        assert ringer.flush_bells(WAIT_S), "the parent's thread still serves it"
    finally:
        ringer.close()
