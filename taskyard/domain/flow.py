"""Flow control: a queue's limits, the admission rule a claim follows, and why a job waits.

A queue may carry limits (`QueueLimits`, kept by the store: `JobStore.set_queue_limits`):

* `concurrency_limit`: at most N jobs of the queue running at once, across every worker;
* `key_concurrency_limit`: at most N running at once per `concurrency_key` (a job
  without a key is held by the queue's limits only);
* `rate_limit`, `key_rate_limit`: at most `count` starts (claims) in any window of
  `period_s` seconds by the store's clock, for the whole queue or per key: an exact
  sliding window over the starts the store records (the window is half-open,
  `(t - period_s, t]`, so a start exactly `period_s` ago no longer counts);
* `weight`: the queue's share against the other queues of one claim.

A job counts against concurrency while it is running with a live lease by the store's
clock (`transitions.lease_live`): an expired lease gives its capacity back at once, before
the reaper has run. A queue with any limit set is *governed*; only a governed queue's
claims are serialised and ordered in turns (an ungoverned queue's claim is today's).

The rule of a claim (`admit`), which every store follows (the engine's `plans.claim`,
and PostgreSQL's set-based statement for governed queues, held to it by a differential
test):

1. In a governed queue, keys take turns (`in_turns`): the first due job of every key,
   then the second of every key, ...; within a key, claim order (priority, then run_at,
   then id); the keys of one round in name order starting after the key served last by
   the queue's previous claim (the no-key group's name is `""`), so that turns go round
   across claims. A key with a million queued jobs cannot starve one with ten.
2. A job is admitted only if every limit that applies still has room after the jobs
   admitted before it in the same claim; a job refused for its key's limits leaves the
   other keys' jobs to be taken, a job refused for its queue's ends that queue's part.
3. Between queues, the k-th job (from 0) admitted in queue q gets the tag
   `(running_q + k + 1/2) / weight_q` (Sainte-Laguë's divisors: shares within about a
   job of `weight_q / sum of weights`, with no bias to large or small weights); the claim
   takes the lowest tags first (then queue name, then each queue's own order), so that
   the running jobs of queues that all have work come to follow their weights.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any, Protocol, TypeVar
from uuid import UUID

import attrs

from taskyard.domain.errors import FieldError, ValidationError
from taskyard.domain.schema import DURATION_S_MIN, INVALID, Integer, Number

__all__ = [
    "CONCURRENCY_LIMIT",
    "CONCURRENCY_LIMIT_MAX",
    "CONCURRENCY_LIMIT_MIN",
    "NO_KEY",
    "RATE_COUNT",
    "RATE_COUNT_MAX",
    "RATE_COUNT_MIN",
    "RATE_PERIOD",
    "RATE_PERIOD_S_MAX",
    "RATE_PERIOD_S_MIN",
    "WEIGHT",
    "WEIGHT_DEFAULT",
    "WEIGHT_MAX",
    "WEIGHT_MIN",
    "Admitted",
    "Claimable",
    "Headroom",
    "Load",
    "QueueClaim",
    "QueueLimits",
    "QueueUsage",
    "RateLimit",
    "Start",
    "WaitingReason",
    "admit",
    "check_limits",
    "headroom",
    "in_turns",
    "limit_problems",
    "parse_limits",
    "proposed",
    "usage",
    "waiting_reason",
]

CONCURRENCY_LIMIT_MIN, CONCURRENCY_LIMIT_MAX = 1, 1_000_000
"""A concurrency limit's bounds (of a queue, or per concurrency key)."""
RATE_COUNT_MIN, RATE_COUNT_MAX = 1, 1_000_000
"""The starts a rate limit allows per period."""
RATE_PERIOD_S_MIN = DURATION_S_MIN
"""A millisecond, the floor of every duration the API takes."""
RATE_PERIOD_S_MAX = 86_400
"""A day: the starts log keeps at most one period of starts."""
WEIGHT_MIN, WEIGHT_DEFAULT, WEIGHT_MAX = 1, 1, 1_000
"""A queue's weight: its share against the other queues of a claim."""

CONCURRENCY_LIMIT = Integer(low=CONCURRENCY_LIMIT_MIN, high=CONCURRENCY_LIMIT_MAX)
RATE_COUNT = Integer(low=RATE_COUNT_MIN, high=RATE_COUNT_MAX)
RATE_PERIOD = Number(low=RATE_PERIOD_S_MIN, high=RATE_PERIOD_S_MAX)
WEIGHT = Integer(low=WEIGHT_MIN, high=WEIGHT_MAX)
"""The kinds of the limits' fields (`contract.py` declares the API's body with them)."""

NO_KEY = ""
"""The name the jobs without a concurrency key take turns under (no key is empty)."""


@attrs.frozen(kw_only=True)
class RateLimit:
    count: int
    """Starts allowed per period: `RATE_COUNT_MIN` to `RATE_COUNT_MAX`."""
    period_s: float
    """The window, in seconds: `RATE_PERIOD_S_MIN` to `RATE_PERIOD_S_MAX`."""

    @property
    def period(self) -> timedelta:
        return timedelta(seconds=self.period_s)

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "period_seconds": self.period_s}


@attrs.frozen(kw_only=True)
class QueueLimits:
    """A queue's limits; None: no such limit. `QueueLimits()` means no limits at all."""

    concurrency_limit: int | None = None
    key_concurrency_limit: int | None = None
    """Per concurrency_key."""
    rate_limit: RateLimit | None = None
    """Starts per period, the whole queue."""
    key_rate_limit: RateLimit | None = None
    """Starts per period, per concurrency_key."""
    weight: int = WEIGHT_DEFAULT

    @property
    def governed(self) -> bool:
        """Any limit set (a weight other than the default counts): the queue's claims are
        serialised and taken in turns."""
        return self != NO_LIMITS

    def longest_period(self) -> timedelta | None:
        """How far back the starts matter (None: no rate limit)."""
        periods = [r.period for r in (self.rate_limit, self.key_rate_limit) if r is not None]
        return max(periods) if periods else None

    def to_json(self) -> dict[str, Any]:
        """As the API shows and takes it (`PUT /v1/queues/{name}`)."""
        return {
            "concurrency_limit": self.concurrency_limit,
            "key_concurrency_limit": self.key_concurrency_limit,
            "rate_limit": self.rate_limit.to_json() if self.rate_limit else None,
            "key_rate_limit": self.key_rate_limit.to_json() if self.key_rate_limit else None,
            "weight": self.weight,
        }


NO_LIMITS = QueueLimits()


class WaitingReason(enum.StrEnum):
    """Why a job that is not running yet waits, the first that holds in this order."""

    RUN_AT = "run_at"
    DEPENDENCY = "dependency"
    QUEUE_PAUSED = "queue_paused"
    CONCURRENCY_LIMIT = "concurrency_limit"
    KEY_CONCURRENCY_LIMIT = "key_concurrency_limit"
    RATE_LIMIT = "rate_limit"
    NO_FREE_WORKER = "no_free_worker"


@attrs.frozen(kw_only=True)
class QueueUsage:
    running: int
    """Jobs of the queue holding a live lease."""
    started_in_window: int | None
    """Starts within `rate_limit`'s period up to now; None without a rate limit."""

    def to_json(self) -> dict[str, Any]:
        return {"running": self.running, "started_in_window": self.started_in_window}


# --- checking -----------------------------------------------------------------------------

_FIELDS = ("concurrency_limit", "key_concurrency_limit", "rate_limit", "key_rate_limit", "weight")


def _rate_problems(value: object, where: str) -> list[FieldError]:
    if value is None:
        return []
    if isinstance(value, RateLimit):
        count, period = value.count, value.period_s
    elif isinstance(value, Mapping):
        unknown = sorted(str(k) for k in value if k not in ("count", "period_seconds"))
        if unknown:
            return [FieldError(f"{where}.{unknown[0]}", "not a field of a rate limit")]
        if "count" not in value or "period_seconds" not in value:
            return [FieldError(where, "give count and period_seconds")]
        count, period = value["count"], value["period_seconds"]
    else:
        return [FieldError(where, "must be an object {count, period_seconds} or null")]
    out: list[FieldError] = []
    if RATE_COUNT.read(count) is INVALID:
        out.append(FieldError(f"{where}.count", RATE_COUNT.message(count)))
    if RATE_PERIOD.read(period) is INVALID:
        out.append(FieldError(f"{where}.period_seconds", RATE_PERIOD.message(period)))
    return out


def _problems(values: Mapping[str, object]) -> list[FieldError]:
    out: list[FieldError] = []
    for name in ("concurrency_limit", "key_concurrency_limit"):
        value = values.get(name)
        if value is not None and CONCURRENCY_LIMIT.read(value) is INVALID:
            out.append(FieldError(name, CONCURRENCY_LIMIT.message(value) + " or null"))
    for name in ("rate_limit", "key_rate_limit"):
        out.extend(_rate_problems(values.get(name), name))
    weight = values.get("weight", WEIGHT_DEFAULT)
    if WEIGHT.read(weight) is INVALID:
        out.append(FieldError("weight", WEIGHT.message(weight)))
    return out


def limit_problems(limits: object) -> list[FieldError]:
    """Every problem of `limits` (a `QueueLimits` built from anything a caller passed),
    each naming its field as the API does (`rate_limit.period_seconds`)."""
    if not isinstance(limits, QueueLimits):
        return [FieldError("", "must be queue limits")]
    return _problems({name: getattr(limits, name) for name in _FIELDS})


def check_limits(limits: object) -> QueueLimits:
    """`limits` if it is within every bound; else raises `ValidationError` naming each bad
    field. The App and the store's callers check with this; `parse_limits` reads JSON."""
    problems = limit_problems(limits)
    if problems:
        raise ValidationError(problems)
    assert isinstance(limits, QueueLimits)
    return limits


def parse_limits(data: object) -> QueueLimits:
    """Limits as a client sends them: `{"concurrency_limit": int or null,
    "key_concurrency_limit": ..., "rate_limit": {"count": int, "period_seconds": number}
    or null, "key_rate_limit": ..., "weight": int}`; a field left out is no limit (weight
    1). Raises `ValidationError` naming every bad field (an unknown one too).

    >>> parse_limits({"concurrency_limit": 2, "rate_limit": {"count": 5, "period_seconds": 1}})
    ... # doctest: +NORMALIZE_WHITESPACE
    QueueLimits(concurrency_limit=2, key_concurrency_limit=None,
        rate_limit=RateLimit(count=5, period_s=1), key_rate_limit=None, weight=1)
    >>> parse_limits({"weight": True, "key_concurrency_limit": 0})
    Traceback (most recent call last):
    ...
    taskyard.domain.errors.ValidationError: key_concurrency_limit: must be an integer from 1 \
to 1000000 or null; weight: must be an integer from 1 to 1000
    """
    if not isinstance(data, Mapping):
        raise ValidationError([FieldError("", "queue limits must be a JSON object")])
    errors = [
        FieldError(str(name), "not a field of queue limits")
        for name in sorted(data, key=str)
        if name not in _FIELDS
    ]
    errors.extend(_problems(data))
    if errors:
        raise ValidationError(errors)

    def rate(value: Any) -> RateLimit | None:
        if value is None:
            return None
        return RateLimit(count=value["count"], period_s=value["period_seconds"])

    return QueueLimits(
        concurrency_limit=data.get("concurrency_limit"),
        key_concurrency_limit=data.get("key_concurrency_limit"),
        rate_limit=rate(data.get("rate_limit")),
        key_rate_limit=rate(data.get("key_rate_limit")),
        weight=data.get("weight", WEIGHT_DEFAULT),
    )


# --- load: what counts against the limits -------------------------------------------------


@attrs.frozen(kw_only=True)
class Start:
    """One claim of a job of a queue (a start), as the store's starts log keeps it."""

    key: str | None
    at: datetime


@attrs.frozen(kw_only=True)
class Load:
    """What counts against one queue's limits at the store's now: its jobs holding a live
    lease by key (None: no key), and its recorded starts (at least those of the longest
    rate period up to now; older ones are ignored)."""

    running: Mapping[str | None, int] = attrs.field(factory=dict)
    starts: Sequence[Start] = ()

    @property
    def running_total(self) -> int:
        return sum(self.running.values())


def _in_window(starts: Iterable[Start], rate: RateLimit, now: datetime) -> list[Start]:
    since = now - rate.period
    return [s for s in starts if since < s.at <= now]


def usage(limits: QueueLimits, load: Load, *, now: datetime) -> QueueUsage:
    """What `GET /v1/queues` shows of a queue's load."""
    window = (
        None if limits.rate_limit is None else len(_in_window(load.starts, limits.rate_limit, now))
    )
    return QueueUsage(running=load.running_total, started_in_window=window)


# --- the claim's rule ---------------------------------------------------------------------


class Claimable(Protocol):
    """What the rule reads of a due job (a `Job` is one)."""

    @property
    def id(self) -> UUID: ...

    @property
    def queue(self) -> str: ...

    @property
    def priority(self) -> int: ...

    @property
    def run_at(self) -> datetime: ...

    @property
    def concurrency_key(self) -> str | None: ...


C = TypeVar("C", bound=Claimable)


def _claim_order(job: Claimable) -> tuple[int, datetime, UUID]:
    return (-job.priority, job.run_at, job.id)


def turn_name(key: str | None) -> str:
    return NO_KEY if key is None else key


def in_turns(jobs: Iterable[C], *, after: str | None) -> list[C]:
    """One queue's due jobs in turns: rank within the key (claim order) first, then the
    keys after `after` in name order, then the others (`after` itself last); `after`
    None: every key in name order."""

    by_key: dict[str, list[C]] = defaultdict(list)
    for job in jobs:
        by_key[turn_name(job.concurrency_key)].append(job)
    ranked: list[tuple[int, bool, str, C]] = []
    for name, group in by_key.items():
        wrapped = after is not None and name <= after
        for rank, job in enumerate(sorted(group, key=_claim_order)):
            ranked.append((rank, wrapped, name, job))
    ranked.sort(key=lambda r: (r[0], r[1], r[2]))
    return [r[3] for r in ranked]


@attrs.frozen(kw_only=True)
class QueueClaim:
    """One queue's part of a claim: its limits, its load, its due candidates (the first
    jobs of its turns for a governed queue, of its claim order for another; the rule
    orders them itself) and the key its previous claim served last."""

    limits: QueueLimits
    load: Load
    candidates: Sequence[Claimable]
    after: str | None = None


@attrs.frozen(kw_only=True)
class Admitted:
    """What a claim takes: the jobs in the order taken, and for each governed queue that
    took any, the key served last (the next claim's turns start after it) and the starts
    to record (a queue with a rate limit)."""

    jobs: tuple[Claimable, ...]
    last_key: Mapping[str, str]
    starts: Mapping[str, tuple[Start, ...]]


@attrs.frozen(kw_only=True)
class Headroom:
    """How many more jobs a governed queue may start now: `jobs` in all (None: no
    queue-wide bound), `per_key` for a key that has nothing running nor started (None: no
    key limit), and `keys` for each key with some load (its own room, 0 when full). A
    store proposes the jobs `proposed` takes, no more: they are exactly what `admit`
    takes of the queue alone."""

    jobs: int | None
    per_key: int | None = None
    keys: Mapping[str, int] = attrs.field(factory=dict)

    def key_room(self, key: str | None) -> int | None:
        if key is None:
            return None
        return self.keys.get(key, self.per_key)

    @property
    def full_keys(self) -> frozenset[str]:
        return frozenset(key for key, room in self.keys.items() if room <= 0)


def headroom(limits: QueueLimits, load: Load, *, now: datetime) -> Headroom:
    bounds: list[int] = []
    if limits.concurrency_limit is not None:
        bounds.append(limits.concurrency_limit - load.running_total)
    if limits.rate_limit is not None:
        bounds.append(
            limits.rate_limit.count - len(_in_window(load.starts, limits.rate_limit, now))
        )
    per_key: list[int] = []
    used: dict[str, list[int]] = defaultdict(list)
    if limits.key_concurrency_limit is not None:
        per_key.append(limits.key_concurrency_limit)
        for key, n in load.running.items():
            if key is not None:
                used[key].append(limits.key_concurrency_limit - n)
    if limits.key_rate_limit is not None:
        per_key.append(limits.key_rate_limit.count)
        started: dict[str, int] = defaultdict(int)
        for start in _in_window(load.starts, limits.key_rate_limit, now):
            if start.key is not None:
                started[start.key] += 1
        for key, n in started.items():
            used[key].append(limits.key_rate_limit.count - n)
    default = min(per_key) if per_key else None
    keys = {
        key: max(0, min(rooms + ([default] if default is not None else [])))
        for key, rooms in used.items()
    }
    return Headroom(
        jobs=max(0, min(bounds)) if bounds else None,
        per_key=default,
        keys={key: room for key, room in keys.items() if default is None or room < default},
    )


def proposed(jobs: Iterable[C], room: Headroom, *, after: str | None, limit: int) -> list[C]:
    """What a store proposes of one governed queue's due jobs: in turns, each key's first
    `room.key_room(key)` only, at most `limit` and `room.jobs`."""
    seen: dict[str, int] = defaultdict(int)
    out: list[C] = []
    cap = limit if room.jobs is None else min(limit, room.jobs)
    for job in in_turns(jobs, after=after):
        if len(out) >= cap:
            break
        key = job.concurrency_key
        key_room = room.key_room(key)
        if key is not None and key_room is not None and seen[key] >= key_room:
            continue
        seen[turn_name(key)] += 1
        out.append(job)
    return out


def _admit_queue(part: QueueClaim, *, now: datetime, limit: int) -> list[Claimable]:
    """One queue's admissible jobs, in its order, at most `limit`."""
    limits, load = part.limits, part.load
    if not limits.governed:
        return sorted(part.candidates, key=_claim_order)[:limit]
    ordered = in_turns(part.candidates, after=part.after)
    running = dict(load.running)
    total = load.running_total
    queue_started = len(_in_window(load.starts, limits.rate_limit, now)) if limits.rate_limit else 0
    key_started: dict[str | None, int] = defaultdict(int)
    if limits.key_rate_limit is not None:
        for start in _in_window(load.starts, limits.key_rate_limit, now):
            key_started[start.key] += 1
    out: list[Claimable] = []
    for job in ordered:
        if len(out) >= limit:
            break
        if limits.concurrency_limit is not None and total >= limits.concurrency_limit:
            break
        if limits.rate_limit is not None and queue_started >= limits.rate_limit.count:
            break
        key = job.concurrency_key
        if key is not None:
            if (
                limits.key_concurrency_limit is not None
                and running.get(key, 0) >= limits.key_concurrency_limit
            ):
                continue
            if (
                limits.key_rate_limit is not None
                and key_started[key] >= limits.key_rate_limit.count
            ):
                continue
        out.append(job)
        total += 1
        queue_started += 1
        running[key] = running.get(key, 0) + 1
        key_started[key] += 1
    return out


def admit(parts: Mapping[str, QueueClaim], *, now: datetime, limit: int) -> Admitted:
    """The jobs a claim of at most `limit` takes from `parts` (by queue name), by the rule
    of this module's docstring."""
    assert limit >= 1, limit
    tagged: list[tuple[Fraction, str, int, Claimable]] = []
    for name, part in parts.items():
        base = part.load.running_total
        for k, job in enumerate(_admit_queue(part, now=now, limit=limit)):
            assert job.queue == name, (job.queue, name)
            tagged.append((Fraction(2 * (base + k) + 1, 2 * part.limits.weight), name, k, job))
    tagged.sort(key=lambda t: (t[0], t[1], t[2]))
    taken = [t[3] for t in tagged[:limit]]
    last_key: dict[str, str] = {}
    starts: dict[str, list[Start]] = defaultdict(list)
    for job in taken:
        limits = parts[job.queue].limits
        if limits.governed:
            last_key[job.queue] = turn_name(job.concurrency_key)
        if limits.longest_period() is not None:
            starts[job.queue].append(Start(key=job.concurrency_key, at=now))
    return Admitted(
        jobs=tuple(taken),
        last_key=last_key,
        starts={queue: tuple(s) for queue, s in starts.items()},
    )


# --- why a job waits ----------------------------------------------------------------------


def waiting_reason(
    *,
    waiting: bool,
    due: bool,
    dependencies_met: bool,
    paused: bool,
    key: str | None,
    limits: QueueLimits,
    load: Load,
    now: datetime,
) -> WaitingReason | None:
    """Why a job waits, from what the store read: whether it waits at all (queued,
    scheduled or retrying; None otherwise), whether its run_at has come, whether its
    dependencies all succeeded, whether its queue is paused, and its queue's limits and
    load. The first reason that holds, in `WaitingReason`'s order.

    >>> from datetime import UTC
    >>> at = datetime(2026, 1, 1, tzinfo=UTC)
    >>> full = Load(running={"a": 2})
    >>> waiting_reason(waiting=True, due=True, dependencies_met=True, paused=False, key="a",
    ...     limits=QueueLimits(key_concurrency_limit=2), load=full, now=at)
    <WaitingReason.KEY_CONCURRENCY_LIMIT: 'key_concurrency_limit'>
    """
    if not waiting:
        return None
    if not due:
        return WaitingReason.RUN_AT
    if not dependencies_met:
        return WaitingReason.DEPENDENCY
    if paused:
        return WaitingReason.QUEUE_PAUSED
    if limits.concurrency_limit is not None and load.running_total >= limits.concurrency_limit:
        return WaitingReason.CONCURRENCY_LIMIT
    if (
        key is not None
        and limits.key_concurrency_limit is not None
        and load.running.get(key, 0) >= limits.key_concurrency_limit
    ):
        return WaitingReason.KEY_CONCURRENCY_LIMIT
    if limits.rate_limit is not None and (
        len(_in_window(load.starts, limits.rate_limit, now)) >= limits.rate_limit.count
    ):
        return WaitingReason.RATE_LIMIT
    if (
        key is not None
        and limits.key_rate_limit is not None
        and sum(1 for s in _in_window(load.starts, limits.key_rate_limit, now) if s.key == key)
        >= limits.key_rate_limit.count
    ):
        return WaitingReason.RATE_LIMIT
    return WaitingReason.NO_FREE_WORKER
