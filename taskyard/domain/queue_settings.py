"""A queue's settings, as `PUT /v1/queues/{name}` takes them and `GET` shows them: its
limits (`flow.py`: concurrency, per-key concurrency, rate, per-key rate, weight) and its
own retention periods (`retention.py`).

A PUT replaces them whole: a field left out (or null) takes its default, so the body
says everything the queue has. `{}` removes every limit and the queue's own retention.

>>> found = parse_settings({"concurrency_limit": 2, "retention_seconds": {"dead": 0}})
>>> found.limits.concurrency_limit, found.retention
(2, {<JobState.DEAD: 'dead'>: 0})
>>> parse_settings({"weight": 0, "retention_seconds": {"succeeded": -1}, "colour": 1})
Traceback (most recent call last):
...
taskyard.domain.errors.ValidationError: colour: not a field of queue settings; weight: \
must be an integer from 1 to 1000; retention_seconds.succeeded: must be a whole number of \
seconds from 0 (forever) to 3153600000
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from taskyard.domain import contract, retention
from taskyard.domain.errors import FieldError, ValidationError
from taskyard.domain.flow import NO_LIMITS, QueueLimits, parse_limits
from taskyard.domain.model import JobState
from taskyard.domain.ports import JobStore

RETENTION_FIELD = retention.FIELD


@attrs.frozen(kw_only=True)
class QueueSettings:
    limits: QueueLimits = NO_LIMITS
    retention: Mapping[JobState, int] = attrs.field(factory=dict)
    """The queue's own periods, by finished state; a state left out follows the
    scheduler's setting."""

    def to_json(self, name: str) -> dict[str, Any]:
        """As `GET /v1/queues/{name}` shows it (`contract.QUEUE_SETTINGS`)."""
        periods = {s.value: self.retention[s] for s in retention.FINISHED if s in self.retention}
        return {"name": name, **self.limits.to_json(), RETENTION_FIELD: periods or None}


def parse_settings(data: Mapping[str, Any]) -> QueueSettings:
    """The settings a client sends (`contract.QUEUE_SETTINGS_INPUT`): the limits as
    `flow.parse_limits` reads them, the retention as `retention.parse_periods` does.
    Raises `ValidationError` naming every bad field of both at once."""
    declared = contract.QUEUE_SETTINGS_INPUT
    names = {f.name for f in declared.fields}
    errors = [
        FieldError(str(name), declared.unknown)
        for name in sorted(data, key=str)
        if name not in names
    ]
    limits, periods = NO_LIMITS, {}
    try:
        limits = parse_limits(
            {k: v for k, v in data.items() if k in names and k != RETENTION_FIELD}
        )
    except ValidationError as refused:
        errors.extend(refused.errors)
    raw = data.get(RETENTION_FIELD)
    if raw is not None:
        try:
            periods = retention.parse_periods(raw)
        except ValidationError as refused:
            errors.extend(refused.errors)
    if errors:
        raise ValidationError(errors)
    return QueueSettings(limits=limits, retention=periods)


def check_queue_name(name: object, *, field: str = "queue") -> str:
    """A queue name (`contract.QUEUE_NAME`), else `ValidationError` naming `field`."""
    if not isinstance(name, str) or not contract.is_queue_name(name):
        raise ValidationError(
            [FieldError(field, f"not a queue name ({contract.QUEUE_NAME.says()})")]
        )
    return name


def stored_settings(store: JobStore, name: str) -> QueueSettings:
    """The queue's settings as the store keeps them (the defaults for a queue without)."""
    return QueueSettings(
        limits=store.queue_limits().get(name, NO_LIMITS),
        retention=store.retention_overrides().get(name, {}),
    )


def store_settings(store: JobStore, name: str, settings: QueueSettings) -> QueueSettings:
    """Replace the queue's settings whole; returns them as stored. Two writes, limits
    first: a failure between them leaves the new limits with the old retention, and the
    same request sent again completes it (a PUT is idempotent)."""
    store.set_queue_limits(name, settings.limits)
    store.set_retention(name, settings.retention)
    return stored_settings(store, name)
