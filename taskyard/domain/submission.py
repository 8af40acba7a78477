"""Submission validation: turn what a client sent into a `Submission`, or name every bad field.

The fields, their bounds and defaults are declared once in `contract.py` (`SUBMISSION`,
`BATCH`), and their checks compiled from there; the rules across fields are here.
Validation is strict: an unknown field, a wrong type (a bool is not a number here) or a
value out of range is refused with the dotted path of the field, and all problems are
reported at once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import attrs

from taskyard.domain import contract
from taskyard.domain.contract import DURATION_S_MIN, MAX_ATTEMPTS_DEFAULT, QUEUE_DEFAULT
from taskyard.domain.errors import FieldError, ValidationError
from taskyard.domain.ids import BitSource, uuid7
from taskyard.domain.model import JsonObject, NewJob
from taskyard.domain.retry import Jitter, RetryPolicy
from taskyard.domain.schema import INVALID, Number
from taskyard.domain.timefmt import format_time

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
    concurrency_key: str | None = None

    def canonical(self) -> dict[str, Any]:
        """The submission as sent with defaults filled in; the idempotency comparison uses it.
        A concurrency key is there only when given, so that a job stored before keys existed
        keeps its fingerprint."""
        keyed = {} if self.concurrency_key is None else {"concurrency_key": self.concurrency_key}
        return keyed | {
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

    def to_new_job(
        self,
        *,
        job_id: UUID,
        correlation_id: str | None = None,
        trace_context: Mapping[str, str] | None = None,
    ) -> NewJob:
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
            concurrency_key=self.concurrency_key,
            correlation_id=correlation_id,
            trace_context=trace_context,
            # Only an idempotency key is ever compared by fingerprint: no key, no digest.
            fingerprint=self.fingerprint() if self.idempotency_key is not None else None,
        )


def duration_problem(value: object, *, high: float, zero: bool = False) -> str | None:
    """Why `value` is not a duration in seconds (from `DURATION_S_MIN` to `high`, or 0
    when `zero`), or None.

    >>> duration_problem(5e-324, high=60), duration_problem(0, high=60, zero=True)
    ('must be a number from 0.001 to 60', None)
    """
    return Number(low=DURATION_S_MIN, high=high, zero=zero).problem(value)


DEFAULT_POLICY = RetryPolicy()
_SUBMISSION = contract.SUBMISSION.validator()
_BATCH = contract.BATCH.validator()
_HEADER = contract.IDEMPOTENCY_KEY_HEADER.kind.compile()
_BACKOFF_CAP = contract.BACKOFF_INPUT["max_seconds"].kind.says()


def read_backoff(values: Any, errors: list[FieldError]) -> RetryPolicy:
    """The policy of a `backoff` as read (a `RetryPolicy` from Python is taken as it is),
    once its cap is known to be at least its base."""
    if values is None or isinstance(values, RetryPolicy):
        return values or DEFAULT_POLICY
    if values is INVALID:
        return DEFAULT_POLICY
    base, factor, cap = values["base_seconds"], values["factor"], values["max_seconds"]
    if INVALID in (base, factor, cap) or INVALID is values["jitter"]:
        if INVALID not in (base, factor, cap) and cap < base:
            errors.append(FieldError("backoff.max_seconds", "must be " + _BACKOFF_CAP))
        return DEFAULT_POLICY
    if cap < base:
        errors.append(FieldError("backoff.max_seconds", "must be " + _BACKOFF_CAP))
        return DEFAULT_POLICY
    return RetryPolicy(base_s=base, factor=factor, max_s=cap, jitter=Jitter(values["jitter"]))


def parse_submission(
    data: object,
    *,
    check_args: ArgsChecker = no_arg_checks,
    idempotency_key_header: str | None = None,
) -> Submission:
    """Validate a submission (a parsed JSON object, or the same built in Python) against
    `contract.SUBMISSION`, then the rules across fields: `run_at` or `delay_seconds`, a
    backoff's cap at least its base, the key of the header, the task's args.

    Python values are accepted where JSON has none: a `datetime` for `run_at`, a
    `RetryPolicy` for `backoff`, UUIDs in `depends_on`. Raises `ValidationError` naming
    every bad field.
    """
    values, errors = _SUBMISSION(data)
    if values is None:
        raise ValidationError(errors)
    assert isinstance(data, Mapping)
    if data.get("run_at") is not None and data.get("delay_seconds") is not None:
        errors.append(FieldError("delay_seconds", "give run_at or delay_seconds, not both"))
    backoff = read_backoff(values["backoff"], errors)
    key = values["idempotency_key"]
    if idempotency_key_header is not None:
        header = _HEADER(idempotency_key_header, "", "Idempotency-Key", errors)
        if header is not INVALID and key is None:
            key = header
        elif header is not INVALID and key != header:
            errors.append(FieldError("idempotency_key", "differs from the Idempotency-Key header"))
    task, args = values["task"], values["args"]
    if task is not None and task is not INVALID:  # every problem at once
        errors.extend(check_args(task, args if args is not INVALID else {}))
    if errors:
        raise ValidationError(errors)
    return Submission(
        task=task,
        args=dict(args),
        queue=values["queue"],
        priority=values["priority"],
        run_at=values["run_at"],
        delay_s=values["delay_seconds"],
        max_attempts=values["max_attempts"],
        backoff=backoff,
        timeout_s=values["timeout_seconds"],
        idempotency_key=key,
        depends_on=tuple(values["depends_on"]),
        concurrency_key=values["concurrency_key"],
    )


_CONCURRENCY_KEY = contract.CONCURRENCY_KEY.compile()


def check_concurrency_key(key: object) -> str | None:
    """A job's concurrency key as a Python caller passes it: None, or text under the
    idempotency key's rules. Raises `ValidationError` naming `concurrency_key`."""
    if key is None:
        return None
    errors: list[FieldError] = []
    value = _CONCURRENCY_KEY(key, "", "concurrency_key", errors)
    if errors:
        raise ValidationError(errors)
    assert isinstance(value, str)
    return value


_CORRELATION_ID = contract.CORRELATION_ID.compile()


def check_correlation_id(correlation_id: object) -> None:
    """A job's `correlation_id` (the API's request id, or any text a Python caller passes):
    None, or a string of 1 to `CORRELATION_ID_LEN_MAX` characters a store can hold."""
    errors: list[FieldError] = []
    if (
        correlation_id is not None
        and _CORRELATION_ID(correlation_id, "", "correlation_id", errors) is INVALID
    ):
        raise ValidationError(errors)


_TRACE_KEY = contract.TRACE_KEY.compile()
_TRACE_VALUE = contract.TRACE_VALUE.compile()
_TRACEPARENT = contract.TRACEPARENT.compile()
TRACEPARENT = contract.TRACEPARENT_HEADER.name
TRACESTATE = contract.TRACESTATE_HEADER.name


def check_trace_context(trace_context: object) -> dict[str, str] | None:
    """A job's `trace_context` (what a tracing hook or the API's W3C headers give): None,
    or up to `TRACE_CONTEXT_KEYS_MAX` lowercase header names to printable ASCII values; a
    `traceparent` among them must be W3C's. Raises `ValidationError` naming each bad one
    (`trace_context.<name>`); an empty one is None."""
    if trace_context is None:
        return None
    errors: list[FieldError] = []
    if not isinstance(trace_context, Mapping):
        raise ValidationError([FieldError("trace_context", "must be a mapping of text")])
    if len(trace_context) > contract.TRACE_CONTEXT_KEYS_MAX:
        raise ValidationError(
            [FieldError("trace_context", f"at most {contract.TRACE_CONTEXT_KEYS_MAX} entries")]
        )
    checked: dict[str, str] = {}
    for key, value in trace_context.items():
        if _TRACE_KEY(key, "", "trace_context", errors) is INVALID:
            continue
        where = f"trace_context.{key}"
        read = _TRACEPARENT if key == TRACEPARENT else _TRACE_VALUE
        if read(value, "", where, errors) is not INVALID:
            checked[key] = value
    if errors:
        raise ValidationError(errors)
    return checked or None


def trace_context_of_headers(
    traceparent: str | None, tracestate: str | None
) -> tuple[dict[str, str] | None, FieldError | None]:
    """The trace context of a request's W3C headers, and the problem with them, if any.
    As W3C Trace Context asks of a receiver, a malformed `traceparent` is not refused:
    it is ignored with its `tracestate` (the problem says so, for a warning)."""
    if traceparent is None:
        return None, None
    errors: list[FieldError] = []
    if _TRACEPARENT(traceparent, "", TRACEPARENT, errors) is INVALID:
        return None, FieldError(TRACEPARENT, f"ignored: {errors[0].message}")
    context = {TRACEPARENT: traceparent}
    if tracestate is not None and _TRACE_VALUE(tracestate, "", TRACESTATE, errors) is not INVALID:
        context[TRACESTATE] = tracestate
    return context, None


def new_jobs(
    submissions: Sequence[Submission],
    *,
    now: datetime,
    rng: BitSource,
    correlation_id: str | None = None,
    trace_context: Mapping[str, str] | None = None,
) -> list[NewJob]:
    """The jobs to store for validated submissions: each with a new id (UUIDv7 of `now`),
    all with `correlation_id` and `trace_context` (checked here, so every way in refuses
    the same)."""
    check_correlation_id(correlation_id)
    traced = check_trace_context(trace_context)
    return [
        submission.to_new_job(
            job_id=uuid7(now, rng), correlation_id=correlation_id, trace_context=traced
        )
        for submission in submissions
    ]


def parse_batch(
    data: object,
    *,
    check_args: ArgsChecker = no_arg_checks,
    fill: Callable[[object], object] = lambda item: item,
) -> list[Submission]:
    """Validate `{"jobs": [...]}` (1 to `BATCH_MAX` submissions), each item as `fill` makes
    it (its task's defaults). Problems of the items are named under their index
    (`jobs[1].priority`), every item's at once."""
    values, errors = _BATCH(data)
    if errors or values is None:
        raise ValidationError(errors)
    assert isinstance(data, Mapping)
    submissions: list[Submission] = []
    for index, item in enumerate(data["jobs"]):
        try:
            submissions.append(parse_submission(fill(item), check_args=check_args))
        except ValidationError as exc:
            errors.extend(exc.prefixed(f"jobs[{index}]").errors)
    if errors:
        raise ValidationError(errors)
    return submissions
