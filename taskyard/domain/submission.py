"""Submission validation: turn what a client sent into a `Submission`, or name every bad field.

The rules are those of `api.md` ("A job submission"). Validation is strict: an unknown
field, a wrong type (a bool is not a number here) or a value out of range is refused
with the dotted path of the field, and all problems are reported at once.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import attrs

from taskyard.domain.errors import FieldError, ValidationError
from taskyard.domain.ids import BitSource, parse_job_id, uuid7
from taskyard.domain.model import JsonObject, NewJob
from taskyard.domain.retry import (
    BASE_S_DEFAULT,
    FACTOR_DEFAULT,
    MAX_S_DEFAULT,
    Jitter,
    RetryPolicy,
)
from taskyard.domain.storable import json_problems, text_problem
from taskyard.domain.timefmt import format_time, parse_time

QUEUE_DEFAULT = "default"
PRIORITY_MIN, PRIORITY_MAX = -100, 100
MAX_ATTEMPTS_DEFAULT = 3
MAX_ATTEMPTS_MAX = 1000
DELAY_S_MAX = 31_536_000
SECONDS_MAX = DELAY_S_MAX
"""The bound of every duration a job carries (backoff, timeout): a year, so that every
time computed from one stays a representable datetime."""
DURATION_S_MIN = 0.001
"""The shortest duration a job carries (a timeout, a backoff, a delay other than 0): a
millisecond. Anything shorter could not be honoured: a worker times an attempt out at
its next tick, datetimes keep microseconds (a 5e-324 s delay would be no delay), and a
backoff base near the smallest float made the growth of the delay overflow."""

TASK_LEN_MAX = 200
QUEUE_LEN_MAX = 100
IDEMPOTENCY_KEY_LEN_MAX = 200
CORRELATION_ID_LEN_MAX = 200
DEPENDS_ON_MAX = 1000
BATCH_MAX = 1000

QUEUE_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
"""A queue name, matched as a whole (`is_queue_name`): `$` would let `"default\n"` through."""


def is_queue_name(text: str) -> bool:
    return QUEUE_NAME.fullmatch(text) is not None


FIELDS = frozenset(
    {
        "task",
        "args",
        "queue",
        "priority",
        "run_at",
        "delay_seconds",
        "max_attempts",
        "backoff",
        "timeout_seconds",
        "idempotency_key",
        "depends_on",
    }
)
BACKOFF_FIELDS = frozenset({"base_seconds", "factor", "max_seconds", "jitter"})

ArgsChecker = Callable[[str, JsonObject], Sequence[FieldError]]
"""Checks a task's args at submit time (built-in tasks): problems with paths under `args`."""


def no_arg_checks(task: str, args: JsonObject) -> Sequence[FieldError]:
    return ()


@attrs.frozen(kw_only=True)
class Submission:
    task: str
    args: JsonObject = attrs.field(factory=dict)
    queue: str = QUEUE_DEFAULT
    priority: int = 0
    run_at: datetime | None = None
    delay_s: float | None = None
    max_attempts: int = MAX_ATTEMPTS_DEFAULT
    backoff: RetryPolicy = attrs.field(factory=RetryPolicy)
    timeout_s: float | None = None
    idempotency_key: str | None = None
    depends_on: tuple[UUID, ...] = ()

    def canonical(self) -> dict[str, Any]:
        """The submission as sent with defaults filled in; the idempotency comparison uses it."""
        return {
            "task": self.task,
            "args": self.args,
            "queue": self.queue,
            "priority": self.priority,
            "run_at": format_time(self.run_at) if self.run_at else None,
            "delay_seconds": self.delay_s,
            "max_attempts": self.max_attempts,
            "backoff": self.backoff.to_json(),
            "timeout_seconds": self.timeout_s,
            "idempotency_key": self.idempotency_key,
            "depends_on": sorted(str(d) for d in self.depends_on),
        }

    def fingerprint(self) -> str:
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def to_new_job(self, *, job_id: UUID, correlation_id: str | None = None) -> NewJob:
        return NewJob(
            id=job_id,
            task=self.task,
            args=self.args,
            queue=self.queue,
            priority=self.priority,
            run_at=self.run_at,
            delay_s=self.delay_s,
            max_attempts=self.max_attempts,
            backoff=self.backoff,
            timeout_s=self.timeout_s,
            idempotency_key=self.idempotency_key,
            depends_on=self.depends_on,
            correlation_id=correlation_id,
            # Only an idempotency key is ever compared by fingerprint: no key, no digest.
            fingerprint=self.fingerprint() if self.idempotency_key is not None else None,
        )


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)


def duration_problem(value: object, *, high: float, zero: bool = False) -> str | None:
    """Why `value` is not a duration in seconds (from `DURATION_S_MIN` to `high`, or 0
    when `zero`), or None.

    >>> duration_problem(5e-324, high=60), duration_problem(0, high=60, zero=True)
    ('must be a number from 0.001 to 60', None)
    """
    if _is_number(value):
        assert isinstance(value, int | float)
        if (zero and value == 0) or DURATION_S_MIN <= value <= high:
            return None
    low = f"0, or a number from {DURATION_S_MIN:g}" if zero else f"a number from {DURATION_S_MIN:g}"
    return f"must be {low} to {high:g}"


def parse_run_at(raw: object) -> tuple[datetime | None, str | None]:
    """A `run_at` as sent: an RFC 3339 string with an offset (or an aware `datetime` from
    Python). Returns the time, or the problem with it."""
    if isinstance(raw, datetime):
        if raw.tzinfo is None:
            return None, "a time needs an offset (Z or +hh:mm)"
        return raw, None
    if isinstance(raw, str):
        try:
            return parse_time(raw), None
        except ValueError as exc:
            return None, str(exc)
    return None, "must be an RFC 3339 time with an offset"


class _Collector:
    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def add(self, field: str, message: str) -> None:
        self.errors.append(FieldError(field, message))


def _parse_backoff(raw: object, out: _Collector) -> RetryPolicy:
    if isinstance(raw, RetryPolicy):
        return raw
    if not isinstance(raw, Mapping):
        out.add("backoff", "must be an object")
        return RetryPolicy()
    for key in sorted(set(raw) - BACKOFF_FIELDS):
        out.add(f"backoff.{key}", "unknown field")
    base = raw.get("base_seconds", BASE_S_DEFAULT)
    factor = raw.get("factor", FACTOR_DEFAULT)
    cap = raw.get("max_seconds", MAX_S_DEFAULT)
    jitter = raw.get("jitter", Jitter.FULL.value)
    ok = True
    if (problem := duration_problem(base, high=SECONDS_MAX)) is not None:
        out.add("backoff.base_seconds", problem)
        ok = False
    if not _is_number(factor) or factor < 1:
        out.add("backoff.factor", "must be a number >= 1")
        ok = False
    if duration_problem(cap, high=SECONDS_MAX) is not None or (ok and cap < base):
        out.add(
            "backoff.max_seconds",
            f"must be a number from base_seconds (and {DURATION_S_MIN:g}) to {SECONDS_MAX}",
        )
        ok = False
    if jitter not in {j.value for j in Jitter}:
        out.add("backoff.jitter", "must be one of none, full, equal")
        ok = False
    if not ok:
        return RetryPolicy()
    return RetryPolicy(
        base_s=float(base), factor=float(factor), max_s=float(cap), jitter=Jitter(jitter)
    )


def parse_submission(
    data: object,
    *,
    check_args: ArgsChecker = no_arg_checks,
    idempotency_key_header: str | None = None,
) -> Submission:
    """Validate a submission (a parsed JSON object, or the same built in Python).

    Python values are accepted where JSON has none: a `datetime` for `run_at`, a
    `RetryPolicy` for `backoff`, UUIDs in `depends_on`. Raises `ValidationError` naming
    every bad field.
    """
    out = _Collector()
    if not isinstance(data, Mapping):
        raise ValidationError([FieldError("", "a job submission must be a JSON object")])
    for key in sorted(set(data) - FIELDS, key=str):
        out.add(str(key), "unknown field")

    task = data.get("task")
    if task is None:
        out.add("task", "is required")
    elif not isinstance(task, str) or not 1 <= len(task) <= TASK_LEN_MAX:
        out.add("task", f"must be a string of 1 to {TASK_LEN_MAX} characters")
    elif (bad := text_problem(task)) is not None:
        out.add("task", bad)
        task = None

    args = data.get("args", {})
    if not isinstance(args, Mapping):
        out.add("args", "must be a JSON object")
        args = {}
    out.errors.extend(json_problems(args, "args"))

    queue = data.get("queue", QUEUE_DEFAULT)
    if not isinstance(queue, str) or not is_queue_name(queue):
        out.add("queue", "must be 1 to 100 of letters, digits, '.', '_', '-'")

    priority = data.get("priority", 0)
    if not is_int(priority) or not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        out.add("priority", f"must be an integer from {PRIORITY_MIN} to {PRIORITY_MAX}")

    run_at: datetime | None = None
    raw_run_at = data.get("run_at")
    if raw_run_at is not None:
        run_at, run_at_problem = parse_run_at(raw_run_at)
        if run_at_problem is not None:
            out.add("run_at", run_at_problem)

    delay_s: float | None = None
    raw_delay = data.get("delay_seconds")
    if raw_delay is not None:
        if (problem := duration_problem(raw_delay, high=DELAY_S_MAX, zero=True)) is not None:
            out.add("delay_seconds", problem)
        else:
            delay_s = float(raw_delay)
    if raw_run_at is not None and raw_delay is not None:
        out.add("delay_seconds", "give run_at or delay_seconds, not both")

    max_attempts = data.get("max_attempts", MAX_ATTEMPTS_DEFAULT)
    if not is_int(max_attempts) or not 1 <= max_attempts <= MAX_ATTEMPTS_MAX:
        out.add("max_attempts", f"must be an integer from 1 to {MAX_ATTEMPTS_MAX}")

    backoff = _parse_backoff(data.get("backoff", {}), out)

    timeout_s: float | None = None
    raw_timeout = data.get("timeout_seconds")
    if raw_timeout is not None:
        if (problem := duration_problem(raw_timeout, high=SECONDS_MAX)) is not None:
            out.add("timeout_seconds", problem)
        else:
            timeout_s = float(raw_timeout)

    key = data.get("idempotency_key")
    if key is not None and (
        not isinstance(key, str) or not 1 <= len(key) <= IDEMPOTENCY_KEY_LEN_MAX
    ):
        out.add("idempotency_key", f"must be a string of 1 to {IDEMPOTENCY_KEY_LEN_MAX} characters")
    elif isinstance(key, str) and (bad := text_problem(key)) is not None:
        out.add("idempotency_key", bad)
    if idempotency_key_header is not None:
        if not 1 <= len(idempotency_key_header) <= IDEMPOTENCY_KEY_LEN_MAX:
            out.add("Idempotency-Key", f"must be 1 to {IDEMPOTENCY_KEY_LEN_MAX} characters")
        elif (bad := text_problem(idempotency_key_header)) is not None:
            out.add("Idempotency-Key", bad)
        elif key is None:
            key = idempotency_key_header
        elif key != idempotency_key_header:
            out.add("idempotency_key", "differs from the Idempotency-Key header")

    depends_on: list[UUID] = []
    raw_deps = data.get("depends_on", [])
    if isinstance(raw_deps, str) or not isinstance(raw_deps, Sequence):
        out.add("depends_on", "must be a list of job ids")
    elif len(raw_deps) > DEPENDS_ON_MAX:
        out.add("depends_on", f"at most {DEPENDS_ON_MAX} dependencies")
    else:
        for index, item in enumerate(raw_deps):
            dep = (
                item
                if isinstance(item, UUID)
                else (parse_job_id(item) if isinstance(item, str) else None)
            )
            if dep is None:
                out.add(f"depends_on[{index}]", "must be a job id (a UUID)")
            elif dep not in depends_on:
                depends_on.append(dep)

    if isinstance(task, str) and 1 <= len(task) <= TASK_LEN_MAX:  # every problem at once
        out.errors.extend(check_args(task, args))

    if out.errors:
        raise ValidationError(out.errors)
    assert isinstance(task, str)
    assert isinstance(queue, str)
    assert is_int(priority)
    assert is_int(max_attempts)
    return Submission(
        task=task,
        args=dict(args),
        queue=queue,
        priority=int(priority),
        run_at=run_at,
        delay_s=delay_s,
        max_attempts=int(max_attempts),
        backoff=backoff,
        timeout_s=timeout_s,
        idempotency_key=key if isinstance(key, str) else None,
        depends_on=tuple(depends_on),
    )


def check_correlation_id(correlation_id: object) -> None:
    """A job's `correlation_id` (the API's request id, or any text a Python caller passes):
    None, or a string of 1 to `CORRELATION_ID_LEN_MAX` characters a store can hold."""
    if correlation_id is None:
        return
    if not isinstance(correlation_id, str) or not (
        1 <= len(correlation_id) <= CORRELATION_ID_LEN_MAX
    ):
        message = f"must be a string of 1 to {CORRELATION_ID_LEN_MAX} characters"
        raise ValidationError([FieldError("correlation_id", message)])
    problem = text_problem(correlation_id)
    if problem is not None:
        raise ValidationError([FieldError("correlation_id", problem)])


def new_jobs(
    submissions: Sequence[Submission],
    *,
    now: datetime,
    rng: BitSource,
    correlation_id: str | None = None,
) -> list[NewJob]:
    """The jobs to store for validated submissions: each with a new id (UUIDv7 of `now`),
    all with `correlation_id` (checked here, so every way in refuses the same)."""
    check_correlation_id(correlation_id)
    return [
        submission.to_new_job(job_id=uuid7(now, rng), correlation_id=correlation_id)
        for submission in submissions
    ]


def parse_batch(
    data: object,
    *,
    check_args: ArgsChecker = no_arg_checks,
) -> list[Submission]:
    """Validate `{"jobs": [...]}` (1 to `BATCH_MAX` submissions). Problems of the items are
    named under their index (`jobs[1].priority`), every item's at once."""
    if not isinstance(data, Mapping):
        raise ValidationError([FieldError("", "a batch must be a JSON object")])
    errors = [
        FieldError(str(key), "unknown field") for key in sorted(set(data) - {"jobs"}, key=str)
    ]
    items = data.get("jobs")
    if items is None:
        errors.append(FieldError("jobs", "is required"))
    elif not isinstance(items, list):
        errors.append(FieldError("jobs", "must be a list of job submissions"))
    elif not 1 <= len(items) <= BATCH_MAX:
        errors.append(FieldError("jobs", f"must hold 1 to {BATCH_MAX} submissions"))
    if errors:
        raise ValidationError(errors)
    assert isinstance(items, list)
    submissions: list[Submission] = []
    for index, item in enumerate(items):
        try:
            submissions.append(parse_submission(item, check_args=check_args))
        except ValidationError as exc:
            errors.extend(exc.prefixed(f"jobs[{index}]").errors)
    if errors:
        raise ValidationError(errors)
    return submissions
