"""Retention: how long a finished job is kept before the scheduler deletes it.

A period is set per finished state (`succeeded`, `dead`, `cancelled`), in whole seconds
counted from the job's `finished_at`; `0` keeps jobs of that state forever. A queue may
override any of the three (`JobStore.set_retention`); a state it does not name follows
the default. Pruning deletes a job with its attempt records and its dependency rows, and
never a job that another job still in the store depends on (that one goes first), so a
job's `depends_on` always names jobs the store holds.

Defaults: a succeeded job for a day, a dead or cancelled one for a week. A success is
rarely looked at after the next morning; a failure or a cancel is what a person reads,
and may retry, after a weekend. (River, for comparison, keeps completed and cancelled
jobs 24 hours and discarded ones 7 days: riverqueue/river,
`internal/maintenance/job_cleaner.go`, `*JobRetentionPeriodDefault`.)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime

import attrs

from taskyard.domain.errors import FieldError, ValidationError
from taskyard.domain.model import JobState
from taskyard.domain.timefmt import after

S = JobState

FINISHED: tuple[JobState, ...] = (S.SUCCEEDED, S.DEAD, S.CANCELLED)
"""The states a job is pruned from, in the order a prune visits them."""

KEEP_FOREVER = 0
RETENTION_S_MAX = 100 * 365 * 86_400
"""A century: the largest period accepted (larger would overflow a timestamp)."""

SUCCEEDED_S_DEFAULT = 86_400
DEAD_S_DEFAULT = 7 * 86_400
CANCELLED_S_DEFAULT = 7 * 86_400

PRUNE_BATCH_MAX = 500
"""Jobs one prune deletes at most: one short transaction, whatever the backlog."""

VACUUM_DEAD_MIN = 5_000
VACUUM_DEAD_FRACTION = 0.05
VACUUM_EVERY_S_DEFAULT = 10.0
VACUUM_EVERY_S_MIN = 1.0
"""The shortest interval between the scheduler's looks at dead rows (0 turns them off):
each look reads the statistics of two tables, pointless many times a second."""


def vacuum_due(*, live: int, dead: int) -> bool:
    """Whether a table's dead rows (each claim, report and prune leaves some behind in a
    store like PostgreSQL) are worth a vacuum now: more than a floor plus a twentieth of
    the live rows, autovacuum's formula with a smaller fraction, checked far more often
    than its one-minute nap (or at all, where autovacuum is off).

    >>> vacuum_due(live=100_000, dead=9_000), vacuum_due(live=100_000, dead=11_000)
    (False, True)
    """
    return dead > VACUUM_DEAD_MIN + VACUUM_DEAD_FRACTION * live


Periods = Mapping[JobState, int]
"""Seconds per finished state; 0 keeps forever."""


def valid_period(seconds: int) -> bool:
    return 0 <= seconds <= RETENTION_S_MAX


FIELD = "retention_seconds"


def parse_periods(data: object, *, field: str = FIELD) -> dict[JobState, int]:
    """A queue's override as an operator writes it, `{"succeeded": 3600, "dead": 0}`: each
    key a finished state, each value whole seconds (0: forever); a key left out, or null,
    follows the default. Raises `ValidationError` naming each bad field.

    >>> parse_periods({"succeeded": 3600, "dead": None})
    {<JobState.SUCCEEDED: 'succeeded'>: 3600}
    >>> parse_periods({"running": 1, "dead": -1, "cancelled": True})
    Traceback (most recent call last):
    ...
    taskyard.domain.errors.ValidationError: retention_seconds.cancelled: must be a whole \
number of seconds from 0 (forever) to 3153600000; retention_seconds.dead: must be a whole \
number of seconds from 0 (forever) to 3153600000; retention_seconds.running: not a finished \
state (succeeded, dead, cancelled)
    """
    if not isinstance(data, Mapping):
        raise ValidationError([FieldError(field, "must be an object of seconds by state")])
    out: dict[JobState, int] = {}
    errors: list[FieldError] = []
    names = {state.value: state for state in FINISHED}
    for key in sorted(data, key=str):
        where = f"{field}.{key}"
        value = data[key]
        if key not in names:
            errors.append(FieldError(where, "not a finished state (succeeded, dead, cancelled)"))
        elif value is None:
            continue
        elif isinstance(value, bool) or not isinstance(value, int) or not valid_period(value):
            bound = f"{RETENTION_S_MAX}"
            errors.append(
                FieldError(where, f"must be a whole number of seconds from 0 (forever) to {bound}")
            )
        else:
            out[names[key]] = value
    if errors:
        raise ValidationError(errors)
    return out


@attrs.frozen(kw_only=True)
class Retention:
    """The default periods, in whole seconds after `finished_at` (0: forever)."""

    succeeded_s: int = SUCCEEDED_S_DEFAULT
    dead_s: int = DEAD_S_DEFAULT
    cancelled_s: int = CANCELLED_S_DEFAULT

    def __attrs_post_init__(self) -> None:
        for seconds in (self.succeeded_s, self.dead_s, self.cancelled_s):
            assert valid_period(seconds), seconds

    @classmethod
    def forever(cls) -> Retention:
        return cls(succeeded_s=KEEP_FOREVER, dead_s=KEEP_FOREVER, cancelled_s=KEEP_FOREVER)

    def periods(self) -> dict[JobState, int]:
        return {S.SUCCEEDED: self.succeeded_s, S.DEAD: self.dead_s, S.CANCELLED: self.cancelled_s}


@attrs.frozen(kw_only=True)
class Prunable:
    """Which finished jobs a prune may take: jobs in `state` that finished at or before
    `finished_by`, of `queues` (None: any queue) but of none of `other_than`."""

    state: JobState
    finished_by: datetime
    queues: frozenset[str] | None = None
    other_than: frozenset[str] = frozenset()

    def takes(self, *, state: JobState, finished_at: datetime | None, queue: str) -> bool:
        return (
            state is self.state
            and finished_at is not None
            and finished_at <= self.finished_by
            and (self.queues is None or queue in self.queues)
            and queue not in self.other_than
        )


def rules(
    retention: Retention, overrides: Mapping[str, Periods], *, now: datetime
) -> list[Prunable]:
    """What a prune at `now` may take: per state, the default period for every queue
    without an override of that state, and one rule per overriding period. A period of 0
    gives no rule (kept forever).

    >>> from datetime import UTC
    >>> now = datetime(2026, 1, 2, tzinfo=UTC)
    >>> found = rules(Retention(dead_s=0), {"a": {S.SUCCEEDED: 60, S.DEAD: 3600}}, now=now)
    >>> [(r.state.value, str(r.finished_by.time()), r.queues, r.other_than) for r in found]
    ... # doctest: +NORMALIZE_WHITESPACE
    [('succeeded', '00:00:00', None, frozenset({'a'})),
     ('succeeded', '23:59:00', frozenset({'a'}), frozenset()),
     ('dead', '23:00:00', frozenset({'a'}), frozenset()),
     ('cancelled', '00:00:00', None, frozenset())]
    """
    defaults = retention.periods()
    out: list[Prunable] = []
    for state in FINISHED:
        by_period: dict[int, set[str]] = defaultdict(set)
        for queue in sorted(overrides):
            if state in overrides[queue]:
                by_period[overrides[queue][state]].add(queue)
        overriding = frozenset(q for queues in by_period.values() for q in queues)
        if defaults[state] != KEEP_FOREVER:
            finished_by = after(now, -defaults[state])
            out.append(Prunable(state=state, finished_by=finished_by, other_than=overriding))
        for period in sorted(by_period):
            if period != KEEP_FOREVER:
                finished_by = after(now, -period)
                queues = frozenset(by_period[period])
                out.append(Prunable(state=state, finished_by=finished_by, queues=queues))
    return out
