"""The admission rule of `domain/flow.py`, on generated queues, loads and candidates: it
never exceeds a limit, it leaves a job out only for a full limit (or a full claim), keys
take turns, queues share by weight, and `headroom` never hides what `admit` would take."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from uuid import UUID

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from taskyard.domain.flow import (
    Load,
    QueueClaim,
    QueueLimits,
    RateLimit,
    Start,
    WaitingReason,
    admit,
    check_limits,
    headroom,
    in_turns,
    parse_limits,
    proposed,
    turn_name,
    waiting_reason,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
KEYS = st.sampled_from([None, "a", "b", "c", "ü", "aa"])


@attrs.frozen(kw_only=True)
class Cand:
    id: UUID
    queue: str
    priority: int
    run_at: datetime
    concurrency_key: str | None


def rates() -> st.SearchStrategy[RateLimit | None]:
    return st.none() | st.builds(
        RateLimit, count=st.integers(1, 6), period_s=st.sampled_from([0.5, 1.0, 3.0])
    )


LIMITS = st.builds(
    QueueLimits,
    concurrency_limit=st.none() | st.integers(1, 8),
    key_concurrency_limit=st.none() | st.integers(1, 4),
    rate_limit=rates(),
    key_rate_limit=rates(),
    weight=st.integers(1, 5),
)


@st.composite
def parts(draw: st.DrawFn) -> dict[str, QueueClaim]:
    names = draw(st.lists(st.sampled_from(["q1", "q2", "q3"]), min_size=1, max_size=3, unique=True))
    out: dict[str, QueueClaim] = {}
    serial = 0
    for name in names:
        limits = draw(LIMITS)
        running = draw(st.dictionaries(KEYS, st.integers(0, 4), max_size=4))
        starts = draw(
            st.lists(
                st.builds(
                    Start,
                    key=KEYS,
                    at=st.integers(0, 4000).map(lambda ms: NOW - timedelta(milliseconds=ms)),
                ),
                max_size=10,
            )
        )
        candidates = []
        for key, priority, age in draw(
            st.lists(st.tuples(KEYS, st.integers(-1, 1), st.integers(0, 3)), max_size=20)
        ):
            serial += 1
            candidates.append(
                Cand(
                    id=UUID(int=serial),
                    queue=name,
                    priority=priority,
                    run_at=NOW - timedelta(seconds=age),
                    concurrency_key=key,
                )
            )
        after = draw(st.none() | KEYS.map(turn_name))
        out[name] = QueueClaim(
            limits=limits,
            load=Load(running=running, starts=starts),
            candidates=candidates,
            after=after,
        )
    return out


def _in_window(starts: list[Start], rate: RateLimit) -> list[Start]:
    return [s for s in starts if NOW - timedelta(seconds=rate.period_s) < s.at <= NOW]


def room_left(part: QueueClaim, taken: list[Cand], job: Cand) -> bool:
    """Whether `job` would still fit every limit of its queue after `taken` (its queue's)."""
    limits, load = part.limits, part.load
    running = load.running_total + len(taken)
    if limits.concurrency_limit is not None and running >= limits.concurrency_limit:
        return False
    new_starts = [*load.starts, *(Start(key=j.concurrency_key, at=NOW) for j in taken)]
    if limits.rate_limit and len(_in_window(new_starts, limits.rate_limit)) >= (
        limits.rate_limit.count
    ):
        return False
    key = job.concurrency_key
    if key is None:
        return True
    key_running = load.running.get(key, 0) + sum(1 for j in taken if j.concurrency_key == key)
    if limits.key_concurrency_limit is not None and key_running >= limits.key_concurrency_limit:
        return False
    if limits.key_rate_limit is not None:
        started = [s for s in _in_window(new_starts, limits.key_rate_limit) if s.key == key]
        if len(started) >= limits.key_rate_limit.count:
            return False
    return True


@settings(max_examples=300, deadline=None)
@given(parts(), st.integers(1, 30))
def test_admit_never_exceeds_a_limit_and_leaves_a_job_out_only_for_a_full_one(
    queues: dict[str, QueueClaim], limit: int
) -> None:
    admitted = admit(queues, now=NOW, limit=limit)
    jobs = list(admitted.jobs)
    assert len(jobs) <= limit
    assert len({j.id for j in jobs}) == len(jobs)
    by_queue: dict[str, list[Cand]] = defaultdict(list)
    for job in jobs:
        assert isinstance(job, Cand)
        by_queue[job.queue].append(job)
    for name, part in queues.items():
        taken = by_queue[name]
        # Every job fitted when it was taken (in its queue's order).
        for index, job in enumerate(taken):
            if part.limits.governed:
                assert room_left(part, taken[:index], job), (name, index)
        if len(jobs) < limit and part.limits.governed:
            # Nothing was left out that would still fit: the claim is as full as allowed.
            for job in part.candidates:
                assert isinstance(job, Cand)
                if job not in taken:
                    assert not room_left(part, taken, job), job
        if not part.limits.governed:
            expected = sorted(part.candidates, key=lambda j: (-j.priority, j.run_at, j.id))
            assert taken == expected[: len(taken)]
        if name in admitted.last_key:
            assert admitted.last_key[name] == turn_name(taken[-1].concurrency_key)
        if part.limits.longest_period() is not None and taken:
            assert len(admitted.starts[name]) == len(taken)


@settings(max_examples=300, deadline=None)
@given(parts(), st.integers(1, 30))
def test_headroom_hides_nothing_admit_would_take(queues: dict[str, QueueClaim], limit: int) -> None:
    admitted = admit(queues, now=NOW, limit=limit)
    for name, part in queues.items():
        if not part.limits.governed:
            continue
        room = headroom(part.limits, part.load, now=NOW)
        taken = [j for j in admitted.jobs if j.queue == name]
        assert room.jobs is None or len(taken) <= room.jobs
        assert not any(j.concurrency_key in room.full_keys for j in taken)
        # What a store proposes within the headroom is exactly what the claim takes.
        narrowed = attrs.evolve(
            part, candidates=proposed(part.candidates, room, after=part.after, limit=limit)
        )
        alone = admit({name: part}, now=NOW, limit=limit).jobs
        assert admit({name: narrowed}, now=NOW, limit=limit).jobs == alone
        assert sorted(j.id for j in alone) == sorted(j.id for j in narrowed.candidates)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(KEYS, st.integers(-1, 1)), max_size=40), st.none() | KEYS.map(turn_name))
def test_in_turns_gives_every_key_its_nth_job_before_any_key_its_next(
    drawn: list[tuple[str | None, int]], after: str | None
) -> None:
    jobs = [
        Cand(id=UUID(int=i), queue="q", priority=p, run_at=NOW, concurrency_key=k)
        for i, (k, p) in enumerate(drawn)
    ]
    ordered = in_turns(jobs, after=after)
    assert sorted(j.id for j in ordered) == sorted(j.id for j in jobs)
    seen: Counter[str] = Counter()
    ranks = []
    for job in ordered:
        ranks.append(seen[turn_name(job.concurrency_key)])
        seen[turn_name(job.concurrency_key)] += 1
    assert ranks == sorted(ranks)
    for key in seen:
        mine = [j for j in ordered if turn_name(j.concurrency_key) == key]
        assert mine == sorted(mine, key=lambda j: (-j.priority, j.run_at, j.id))
    first_round = [
        turn_name(j.concurrency_key) for j, r in zip(ordered, ranks, strict=True) if r == 0
    ]
    if after is not None:
        later = [k for k in first_round if k > after]
        assert first_round == later + [k for k in first_round if k <= after]


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.integers(1, 10), min_size=1),
    st.integers(1, 60),
)
def test_queues_with_work_share_a_claim_by_weight(weights: dict[str, int], limit: int) -> None:
    queues = {
        name: QueueClaim(
            limits=QueueLimits(weight=w),
            load=Load(),
            candidates=[
                Cand(
                    id=UUID(int=i + 1000 * n),
                    queue=name,
                    priority=0,
                    run_at=NOW,
                    concurrency_key=None,
                )
                for i in range(limit)
            ],
        )
        for n, (name, w) in enumerate(sorted(weights.items()))
    }
    counts = Counter(j.queue for j in admit(queues, now=NOW, limit=limit).jobs)
    assert sum(counts.values()) == limit
    # Sainte-Laguë's criterion: no queue's last job taken has a later tag than another's
    # first job left, so every share is its weight's within the rounding of one job.
    for q, wq in weights.items():
        for r, wr in weights.items():
            if counts[q]:
                assert (counts[q] - 0.5) / wq <= (counts[r] + 0.5) / wr, (counts, weights)
    total = sum(weights.values())
    for name, w in weights.items():
        assert abs(counts[name] - limit * w / total) < 2, (counts, weights)


@given(
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    LIMITS,
    st.dictionaries(KEYS, st.integers(0, 9), max_size=3),
    KEYS,
)
def test_waiting_reason_follows_its_order(
    waiting: bool,
    due: bool,
    met: bool,
    paused: bool,
    limits: QueueLimits,
    running: dict[str | None, int],
    key: str | None,
) -> None:
    load = Load(running=running)
    reason = waiting_reason(
        waiting=waiting,
        due=due,
        dependencies_met=met,
        paused=paused,
        key=key,
        limits=limits,
        load=load,
        now=NOW,
    )
    if not waiting:
        assert reason is None
        return
    expected = (
        WaitingReason.RUN_AT
        if not due
        else WaitingReason.DEPENDENCY
        if not met
        else WaitingReason.QUEUE_PAUSED
        if paused
        else None
    )
    if expected is not None:
        assert reason is expected
        return
    room = headroom(limits, load, now=NOW)
    if room.jobs == 0 or (key is not None and key in room.full_keys):
        assert reason in (
            WaitingReason.CONCURRENCY_LIMIT,
            WaitingReason.KEY_CONCURRENCY_LIMIT,
            WaitingReason.RATE_LIMIT,
        )
    else:
        assert reason is WaitingReason.NO_FREE_WORKER


@given(LIMITS)
def test_limits_survive_their_json(limits: QueueLimits) -> None:
    assert parse_limits(limits.to_json()) == check_limits(limits)
