"""The API's contract, stated once: every body a client sends and every answer it gets,
with their fields, kinds, bounds, patterns, defaults and descriptions (in the words of
`schema.py`), and the parameters of the query string, the path and the headers.

Everything else is derived from here: the validation of submissions, batches, changes
and bulk filters (`submission.py`, `management.py`), the query parameters' checks
(`entrypoints/api/query.py`), the OpenAPI document (`entrypoints/api/openapi.py`); the
answers (`Job.to_json`, ...) and `docs/api.md`'s tables are held to it by tests.
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from taskyard.domain import schema as _schema
from taskyard.domain.arguments import Kind as ParameterKind
from taskyard.domain.flow import (
    CONCURRENCY_LIMIT,
    RATE_COUNT,
    RATE_PERIOD,
    WEIGHT,
    WEIGHT_DEFAULT,
    WaitingReason,
)
from taskyard.domain.model import CatchUp, JobState, Outcome, Overlap
from taskyard.domain.retention import FINISHED, KEEP_FOREVER, RETENTION_S_MAX
from taskyard.domain.retry import BASE_S_DEFAULT, FACTOR_DEFAULT, MAX_S_DEFAULT, Jitter, RetryPolicy
from taskyard.domain.schema import (
    ABSENT,
    AnyJson,
    Boolean,
    Choice,
    Const,
    Field,
    Integer,
    JobId,
    JsonObject,
    Kind,
    ListOf,
    Number,
    OneOrMany,
    Param,
    Shape,
    Text,
    Time,
    field,
)

QUEUE_DEFAULT = "default"
PRIORITY_MIN, PRIORITY_MAX = -100, 100
MAX_ATTEMPTS_DEFAULT = 3
MAX_ATTEMPTS_MAX = 1000
DELAY_S_MAX = 31_536_000
DURATION_S_MIN = _schema.DURATION_S_MIN
"""The shortest duration a job carries (`schema.py` says why: a millisecond)."""
SECONDS_MAX = DELAY_S_MAX
"""The bound of every duration a job carries (backoff, timeout): a year, so that every
time computed from one stays a representable datetime."""
TASK_LEN_MAX = 200
QUEUE_LEN_MAX = 100
IDEMPOTENCY_KEY_LEN_MAX = 200
CORRELATION_ID_LEN_MAX = 200
DEPENDS_ON_MAX = 1000
BATCH_MAX = 1000
FILTER_VALUES_MAX = 100
LIMIT_DEFAULT, LIMIT_MAX = 100, 1000
WINDOW_S_DEFAULT, WINDOW_S_MIN, WINDOW_S_MAX = 3600, 60, 604_800
LISTED_ON_REQUEST = ("args", "result", "checkpoint")
"""A job's fields that a listing leaves out unless `include` names them: the ones whose
size its client decides (args) or its handler does (result, checkpoint)."""
BULK_COUNT_SCAN_MAX = 10_000
"""How many matching jobs a bulk count looks at before it answers with a lower bound."""
PAGE_BYTES_MAX = 1024 * 1024
"""A listing's jobs stop before the one that would take the answer over this (a page
always holds at least one job)."""

SCHEDULE_NAME_LEN_MAX = 100
CATCH_UP_WINDOW_S_DEFAULT = 86_400.0
"""A day: a daily job whose scheduler was down for hours still runs once."""
CATCH_UP_WINDOW_S_MAX = 7 * 86_400
"""A week: the most fires a pass may have to look at is a minutely cron's week (10,080)."""
EVERY_S_MIN = 1
EVERY_S_MAX = 366 * 86_400
CATCH_UP_DEFAULT = CatchUp.LATEST.value
OVERLAP_DEFAULT = Overlap.SKIP.value
CATCH_UPS = tuple(c.value for c in CatchUp)
OVERLAPS = tuple(o.value for o in Overlap)

STATES = tuple(state.value for state in JobState)
PARAMETER_KINDS = tuple(kind.value for kind in ParameterKind)
TASK_NAME = Text(max_len=TASK_LEN_MAX)
QUEUE_NAME = Text(
    max_len=QUEUE_LEN_MAX,
    pattern=f"[A-Za-z0-9._-]{{1,{QUEUE_LEN_MAX}}}",
    words=f"1 to {QUEUE_LEN_MAX} of letters, digits, '.', '_', '-'",
)
"""A queue name, matched as a whole: `$` would let `"default\\n"` through."""
_QUEUE_NAME = re.compile(QUEUE_NAME.pattern or "")


def is_queue_name(text: str) -> bool:
    return _QUEUE_NAME.fullmatch(text) is not None


IDEMPOTENCY_KEY = Text(
    max_len=IDEMPOTENCY_KEY_LEN_MAX,
    pattern=f"[^\\x00-\\x1f\\x7f-\\x9f\\ud800-\\udfff]{{1,{IDEMPOTENCY_KEY_LEN_MAX}}}",
    words=f"1 to {IDEMPOTENCY_KEY_LEN_MAX} characters, none of them a control character"
    " (U+0000 to U+001F, U+007F to U+009F) or a lone surrogate",
)
"""A key is an identifier shown in logs and the dashboard, not text: no control character
(a terminal escape would reach whoever reads them), and what no store can hold."""
CONCURRENCY_KEY = IDEMPOTENCY_KEY
"""A job's concurrency key (a tenant, an account, an API): the idempotency key's rules."""
TRACE_CONTEXT_KEYS_MAX = 8
"""How many headers a job's trace context holds at most (W3C needs two)."""
TRACE_VALUE_LEN_MAX = 512
"""The longest value of one (W3C's bound on a tracestate a vendor must pass on)."""
TRACE_KEY = Text(max_len=64, pattern="[a-z0-9][a-z0-9._-]{0,63}", words="a lowercase header name")
TRACE_VALUE = Text(
    min_len=0,
    max_len=TRACE_VALUE_LEN_MAX,
    pattern=f"[\\x20-\\x7e]{{0,{TRACE_VALUE_LEN_MAX}}}",
    words=f"up to {TRACE_VALUE_LEN_MAX} printable ASCII characters",
)
TRACEPARENT = Text(
    max_len=55,
    pattern="(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}",
    words="a W3C traceparent (version-traceid-parentid-flags, lowercase hex)",
)
CORRELATION_ID = Text(max_len=CORRELATION_ID_LEN_MAX)
PRIORITY = Integer(low=PRIORITY_MIN, high=PRIORITY_MAX)
DURATION = Number(low=DURATION_S_MIN, high=SECONDS_MAX)
DELAY = Number(low=DURATION_S_MIN, high=DELAY_S_MAX, zero=True)
BACKOFF_CAP = Number(
    low=DURATION_S_MIN,
    high=SECONDS_MAX,
    words=f"a number from base_seconds (and {DURATION_S_MIN:g}) to {SECONDS_MAX}",
)
JITTERS = tuple(j.value for j in Jitter)
DEPENDENCIES = ListOf(
    item=JobId(), noun="job ids", count_noun="dependencies", max_items=DEPENDS_ON_MAX, unique=True
)
BATCH_ITEMS: dict[str, Any] = {
    "noun": "job submissions",
    "count_noun": "submissions",
    "min_items": 1,
    "max_items": BATCH_MAX,
}
FLAG = Choice(values=("true", "false", "1", "0"))
CURSOR = Text(max_len=100, pattern="[A-Za-z0-9_-]{1,100}", words="a cursor this API gave out")
STRING = Text(min_len=0)
"""Any string (in answers)."""
INCLUDE = "fields to list besides the others (repeat for several)"
DRY_RUN_SAYS = "true: change nothing, answer how many jobs the action would change now"
NOT_FOUND = "a malformed one is not found (404)"
SAME_KEY = "the same as the idempotency_key field (both and different: 422)"
TIME = Time(output=True)
COUNT = Integer(low=0)

# --- what a client sends ------------------------------------------------------------------


def shape(name: str, description: str, *fields: Field, **options: Any) -> Shape:
    return Shape(name, fields, description, **options)


BACKOFF_INPUT = shape(
    "BackoffInput",
    "the retry delay: min(max_seconds, base_seconds * factor ** (attempt - 1)), then jitter",
    field(
        "base_seconds",
        DURATION,
        "the delay's ceiling after a first failure",
        default=BASE_S_DEFAULT,
    ),
    field(
        "factor", Number(low=1), "how much the ceiling grows per attempt", default=FACTOR_DEFAULT
    ),
    field(
        "max_seconds",
        BACKOFF_CAP,
        "the ceiling's cap, at least base_seconds",
        default=MAX_S_DEFAULT,
    ),
    field(
        "jitter",
        Choice(values=JITTERS),
        "how the delay is drawn under it",
        default=Jitter.FULL.value,
    ),
    python_type=RetryPolicy,
)
SUBMISSION = shape(
    "JobSubmission",
    "a job to run",
    field(
        "task", TASK_NAME, "sleep, http, shell (args checked at submit), or yours", required=True
    ),
    field("args", JsonObject(), "the handler's arguments", default={}),
    field("queue", QUEUE_NAME, default=QUEUE_DEFAULT),
    field("priority", PRIORITY, "higher runs first", default=0),
    field("run_at", Time(), "when it is due (else now, or after delay_seconds)", nullable=True),
    field("delay_seconds", DELAY, "instead of run_at: after the store's now", nullable=True),
    field("max_attempts", Integer(low=1, high=MAX_ATTEMPTS_MAX), default=MAX_ATTEMPTS_DEFAULT),
    field("backoff", BACKOFF_INPUT),
    field("timeout_seconds", DURATION, "a longer attempt fails (timeout)", nullable=True),
    field("idempotency_key", IDEMPOTENCY_KEY, "or the Idempotency-Key header", nullable=True),
    field("depends_on", DEPENDENCIES, "jobs that must succeed first", default=[]),
    field(
        "concurrency_key",
        CONCURRENCY_KEY,
        "the queue's per-key limits and turns apply per key (a tenant, an account)",
        nullable=True,
    ),
    not_object="a job submission must be a JSON object",
)
BATCH = shape(
    "Batch",
    "submissions stored all or nothing",
    field("jobs", ListOf(item=SUBMISSION, **BATCH_ITEMS), "errors name jobs[i]", required=True),
    not_object="a batch must be a JSON object",
)
CHANGE = shape(
    "JobChange",
    "a waiting job's new priority and/or run_at",
    field("priority", PRIORITY),
    field("run_at", Time()),
    unknown="only priority and run_at can be changed",
    not_object="a change must be a JSON object",
    at_least_one="give priority and/or run_at",
)
FILTER = shape(
    "JobFilter",
    "what a bulk action applies to: each field a string or a list (any of), all fields at once",
    field("state", OneOrMany(item=Choice(values=STATES), max_items=FILTER_VALUES_MAX)),
    field("queue", OneOrMany(item=QUEUE_NAME, max_items=FILTER_VALUES_MAX)),
    field("task", OneOrMany(item=TASK_NAME, max_items=FILTER_VALUES_MAX)),
    not_object="a filter must be a JSON object",
    at_least_one="give at least one of state, queue, task",
)

SCHEDULE_NAME = Text(
    max_len=SCHEDULE_NAME_LEN_MAX,
    pattern=f"[A-Za-z0-9._:-]{{1,{SCHEDULE_NAME_LEN_MAX}}}",
    words=f"1 to {SCHEDULE_NAME_LEN_MAX} of letters, digits, '.', '_', ':', '-'",
)
CRON = Text(max_len=200, words="a five-field cron expression (minute hour day month weekday)")
TIMEZONE = Text(max_len=100, words="an IANA time zone name (Europe/Berlin)")
EVERY = Number(low=EVERY_S_MIN, high=EVERY_S_MAX)
CATCH_UP_WINDOW = Number(low=1, high=CATCH_UP_WINDOW_S_MAX)


def _schedule_fields(*, creating: bool) -> tuple[Field, ...]:
    """A schedule's fields as sent: all of them to create one (with defaults), any of them
    to change one (none has a default there: what is not sent stays)."""

    def f(name: str, kind: Kind, description: str = "", default: Any = ABSENT, **o: Any) -> Field:
        return field(name, kind, description, default=default if creating else ABSENT, **o)

    return (
        f("task", TASK_NAME, "the task each fire enqueues", required=creating),
        f("args", JsonObject(), "the job's arguments", default={}),
        f("cron", CRON, "when it fires, in timezone; or every_seconds", nullable=True),
        f("every_seconds", EVERY, "instead of cron: at multiples of it since 1970", nullable=True),
        f("timezone", TIMEZONE, "the cron's time zone", default="UTC"),
        f("catch_up", Choice(values=CATCH_UPS), "missed fires", default=CATCH_UP_DEFAULT),
        f(
            "catch_up_window_seconds",
            CATCH_UP_WINDOW,
            "older missed fires are dropped",
            default=CATCH_UP_WINDOW_S_DEFAULT,
        ),
        f("overlap", Choice(values=OVERLAPS), "previous job unfinished", default=OVERLAP_DEFAULT),
        f("paused", Boolean(), "true: no fires until resumed", default=False),
        f("queue", QUEUE_NAME, default=QUEUE_DEFAULT),
        f("priority", PRIORITY, "higher runs first", default=0),
        f("max_attempts", Integer(low=1, high=MAX_ATTEMPTS_MAX), default=MAX_ATTEMPTS_DEFAULT),
        f("backoff", BACKOFF_INPUT),
        f("timeout_seconds", DURATION, "a longer attempt fails (timeout)", nullable=True),
    )


SCHEDULE_INPUT = shape(
    "ScheduleInput",
    "a schedule: a task fired at cron times or every N seconds",
    field("name", SCHEDULE_NAME, "unique", required=True),
    *_schedule_fields(creating=True),
    not_object="a schedule must be a JSON object",
)
SCHEDULE_CHANGE = shape(
    "ScheduleChange",
    "the fields to change; the others stay (cron and every_seconds replace each other)",
    *_schedule_fields(creating=False),
    unknown="not a field of a schedule (its name cannot change)",
    not_object="a change must be a JSON object",
    at_least_one="give at least one field",
)

RETENTION_PERIOD = Integer(low=KEEP_FOREVER, high=RETENTION_S_MAX)
RATE_LIMIT_INPUT = shape(
    "RateLimitInput",
    "at most count starts in any window of period_seconds (sliding, by the store's clock)",
    field("count", RATE_COUNT, "starts allowed in one window", required=True),
    field("period_seconds", RATE_PERIOD, "the window's length", required=True),
    not_object="a rate limit must be an object {count, period_seconds}, or null",
)
RETENTION_INPUT = shape(
    "RetentionInput",
    "seconds a finished job of the queue is kept after it finished, by state (0: forever); "
    "a state left out, or null, follows the scheduler's setting",
    *(field(state.value, RETENTION_PERIOD, nullable=True) for state in FINISHED),
    unknown="not a finished state (succeeded, dead, cancelled)",
    not_object="retention must be an object of seconds by finished state, or null",
)
QUEUE_SETTINGS_INPUT = shape(
    "QueueSettingsInput",
    "a queue's settings, replaced whole: a field left out (or null) takes its default",
    field(
        "concurrency_limit",
        CONCURRENCY_LIMIT,
        "its jobs running at once, across every worker",
        nullable=True,
    ),
    field(
        "key_concurrency_limit",
        CONCURRENCY_LIMIT,
        "its jobs running at once per concurrency_key",
        nullable=True,
    ),
    field("rate_limit", RATE_LIMIT_INPUT, "starts of its jobs", nullable=True),
    field(
        "key_rate_limit", RATE_LIMIT_INPUT, "starts of its jobs per concurrency_key", nullable=True
    ),
    field("weight", WEIGHT, "its share against other queues with due jobs", default=WEIGHT_DEFAULT),
    field("retention_seconds", RETENTION_INPUT, "its own retention periods", nullable=True),
    unknown="not a field of queue settings",
    not_object="queue settings must be a JSON object",
)

# --- parameters ----------------------------------------------------------------------------

LISTING_PARAMS = (
    Param(name="state", kind=Choice(values=STATES), many=True, description="any of these"),
    Param(name="queue", kind=QUEUE_NAME, many=True, description="any of these"),
    Param(name="task", kind=TASK_NAME, many=True, description="any of these"),
    Param(
        name="limit",
        kind=Integer(low=1, high=LIMIT_MAX),
        default=LIMIT_DEFAULT,
        description="at most",
    ),
    Param(name="cursor", kind=CURSOR, description="next_cursor of the previous page"),
    Param(name="include", kind=Choice(values=LISTED_ON_REQUEST), many=True, description=INCLUDE),
)
DRY_RUN = Param(name="dry_run", kind=FLAG, default="false", description=DRY_RUN_SAYS)
WINDOW = Param(
    name="window",
    kind=Integer(low=WINDOW_S_MIN, high=WINDOW_S_MAX),
    default=WINDOW_S_DEFAULT,
    description="seconds",
)
JOB_ID_PARAM = Param(name="job_id", kind=STRING, where="path", description=NOT_FOUND)
QUEUE_PARAM = Param(name="name", kind=QUEUE_NAME, where="path", description=NOT_FOUND)
SCHEDULE_PARAM = Param(name="name", kind=SCHEDULE_NAME, where="path", description=NOT_FOUND)
IDEMPOTENCY_KEY_HEADER = Param(
    name="Idempotency-Key", kind=IDEMPOTENCY_KEY, where="header", description=SAME_KEY
)
TRACEPARENT_HEADER = Param(
    name="traceparent",
    kind=TRACEPARENT,
    where="header",
    description="W3C Trace Context: the job's attempts become its children; a malformed "
    "one is ignored, with a warning",
)
TRACESTATE_HEADER = Param(
    name="tracestate",
    kind=TRACE_VALUE,
    where="header",
    description="W3C Trace Context, kept with a valid traceparent",
)

# --- what a client gets ----------------------------------------------------------------------


ABOUT: dict[str, str] = {
    "ListedJob": "a job as listed: args, result and checkpoint only when include names them",
    "Job.attempt": "0 before the first run",
    "Job.checkpoint": "any JSON value the handler saved, or null",
    "Job.result": "any JSON value the handler returned, or null",
    "Job.correlation_id": "the X-Request-ID of the request that created it",
    "Job.schedule": "the schedule fire that enqueued it, or null",
    "JobSchedule": "a fired job's schedule and fire time (one job per fire)",
    "Job.last_error": "the newest failed attempt's error while the job has not succeeded; "
    "null once it succeeds (earlier errors stay in its attempts)",
    "Attempt.started_at": "the store's time of the claim",
    "Queue.oldest_queued_age_seconds": "how long the oldest due job has waited",
    "Queue.limits": "its settings' limits (null: no limit)",
    "QueueUsage.running": "its jobs running with a lease not yet expired (what the "
    "concurrency limit counts)",
    "QueueUsage.started_in_window": "its jobs started within its rate limit's period; null "
    "without a rate limit",
    "QueueSettings": "a queue's settings as stored (defaults for a queue without any)",
    "QueueSettings.retention_seconds": "its own retention periods by state, or null: the "
    "scheduler's settings",
    "Retention": "only the states it sets",
    "JobDetail.waiting_reason": "why a job not yet running waits; null for a running or "
    "finished job",
    "Worker.running_job_ids": "from the store's leases",
    "Worker.queues": "empty: every queue",
    "FieldProblem.field": "a path (jobs[1].priority), a parameter or header; empty: the body",
    "JobPage.next_cursor": "more jobs, or this page was cut at "
    f"{PAGE_BYTES_MAX // (1024 * 1024)} MiB: pass it as cursor",
    "DryRunCount.exact": "false: more jobs matched than a count looks at "
    f"({BULK_COUNT_SCAN_MAX:,}); count is then a lower bound",
    "Readiness.checks": "ok, or down: <why>",
    "SubmittedJob.warnings": "only when there is one: the task is unknown, no worker has "
    "published it (the unknown_task setting); a traceparent header was malformed and ignored",
    "SubmittedJobs.warnings": "as for one job, named jobs[i].task",
    "Task": "a task as a worker published it: the defaults a submission that leaves a field "
    "out gets, and the arguments it is checked against",
    "Task.params": "the handler's named parameters, in order",
    "Task.any_other": "true: the handler takes any other argument too (**kwargs)",
    "Task.published_by": "the worker that published it last (the last publication wins)",
    "Task.published_at": "when, by the store's clock",
    "Schedule": "a schedule as stored: its declared fields and what it has fired",
    "Schedule.next_fire_at": "by the store's clock; a paused schedule's is stale",
    "Schedule.last_fire_at": "the newest fire decided (enqueued, missed or skipped)",
    "Schedule.recent_fires": f"the newest first, at most {10}",
    "Schedule.fires": "every fire decided since the schedule was created, by outcome",
    "ScheduleFire.job_id": "the job it enqueued, or null (missed, overlap_skipped)",
}
"""What an answer's fields (or shapes, by name) mean, where their name does not say it."""


def answer(name: str, nullable: str = "", optional: str = "", /, **fields: Kind) -> Shape:
    """The shape of an answer: every field there, null only where `nullable` (names, space
    separated), left out only where `optional` (the same); described by `ABOUT`."""
    return Shape(
        name,
        tuple(
            Field(
                name=n,
                kind=k,
                required=n not in optional.split(),
                nullable=n in nullable.split(),
                description=ABOUT.get(f"{name}.{n}", ""),
            )
            for n, k in fields.items()
        ),
        ABOUT.get(name, ""),
    )


def listing(name: str, /, **fields: Shape) -> Shape:
    """`{key: [item, ...]}`."""
    [(key, item)] = fields.items()
    return answer(name, **{key: ListOf(item=item, noun=key)})


JOB_ID = JobId()
ERROR_INFO = answer("ErrorInfo", type=STRING, message=STRING)
ATTEMPT_ERROR = answer("AttemptError", "traceback", type=STRING, message=STRING, traceback=STRING)
LEASE = answer("Lease", worker=STRING, expires_at=TIME)
BACKOFF = answer(
    "Backoff",
    base_seconds=Number(low=0, low_exclusive=True),
    factor=Number(low=1),
    max_seconds=Number(),
    jitter=Choice(values=JITTERS),
)
JOB_NULLABLE = (
    "timeout_seconds idempotency_key finished_at lease last_error correlation_id schedule"
    " concurrency_key"
)
JOB_SCHEDULE = answer("JobSchedule", name=STRING, fire_at=TIME)
JOB_FIELDS: dict[str, Kind] = {
    "id": JOB_ID,
    "task": STRING,
    "args": JsonObject(),
    "queue": QUEUE_NAME,
    "priority": Integer(),
    "run_at": TIME,
    "max_attempts": Integer(),
    "backoff": BACKOFF,
    "timeout_seconds": Number(),
    "idempotency_key": STRING,
    "depends_on": ListOf(item=JOB_ID, noun="job ids"),
    "state": Choice(values=STATES),
    "attempt": COUNT,
    "created_at": TIME,
    "updated_at": TIME,
    "finished_at": TIME,
    "lease": LEASE,
    "cancel_requested": Boolean(),
    "checkpoint": AnyJson(),
    "result": AnyJson(),
    "last_error": ERROR_INFO,
    "correlation_id": STRING,
    "schedule": JOB_SCHEDULE,
    "concurrency_key": STRING,
}
JOB = answer("Job", JOB_NULLABLE, **JOB_FIELDS)
WAITING_REASONS = tuple(reason.value for reason in WaitingReason)
JOB_DETAIL = answer(
    "JobDetail",
    JOB_NULLABLE + " waiting_reason",
    **JOB_FIELDS,
    waiting_reason=Choice(values=WAITING_REASONS),
)
LISTED_JOB = Shape(
    "ListedJob",
    tuple(attrs.evolve(f, required=f.name not in LISTED_ON_REQUEST) for f in JOB.fields),
    ABOUT["ListedJob"],
)
ATTEMPT = answer(
    "Attempt",
    "finished_at error duration_seconds",
    attempt=Integer(low=1),
    worker=STRING,
    started_at=TIME,
    finished_at=TIME,
    outcome=Choice(values=tuple(o.value for o in Outcome)),
    error=ATTEMPT_ERROR,
    duration_seconds=Number(low=0),
)
RATE_LIMIT = answer("RateLimit", count=RATE_COUNT, period_seconds=RATE_PERIOD)
LIMITS_NULLABLE = "concurrency_limit key_concurrency_limit rate_limit key_rate_limit"
LIMIT_FIELDS: dict[str, Kind] = {
    "concurrency_limit": CONCURRENCY_LIMIT,
    "key_concurrency_limit": CONCURRENCY_LIMIT,
    "rate_limit": RATE_LIMIT,
    "key_rate_limit": RATE_LIMIT,
    "weight": WEIGHT,
}
QUEUE_LIMITS = answer("QueueLimits", LIMITS_NULLABLE, **LIMIT_FIELDS)
QUEUE_USAGE = answer("QueueUsage", "started_in_window", running=COUNT, started_in_window=COUNT)
RETENTION = answer(
    "Retention",
    "",
    " ".join(s.value for s in FINISHED),
    **{s.value: RETENTION_PERIOD for s in FINISHED},
)
QUEUE_SETTINGS = answer(
    "QueueSettings",
    LIMITS_NULLABLE + " retention_seconds",
    name=QUEUE_NAME,
    **LIMIT_FIELDS,
    retention_seconds=RETENTION,
)
QUEUE = answer(
    "Queue",
    "oldest_queued_age_seconds",
    name=QUEUE_NAME,
    paused=Boolean(),
    counts=answer("QueueCounts", **dict.fromkeys(STATES, COUNT)),
    oldest_queued_age_seconds=Number(low=0),
    limits=QUEUE_LIMITS,
    usage=QUEUE_USAGE,
)
WORKER = answer(
    "Worker",
    id=STRING,
    host=STRING,
    pid=Integer(),
    queues=ListOf(item=STRING, noun="queue names"),
    concurrency=Integer(low=1),
    started_at=TIME,
    last_heartbeat_at=TIME,
    running_job_ids=ListOf(item=JOB_ID, noun="job ids"),
)
SCHEDULER = answer(
    "Scheduler",
    "term",
    id=STRING,
    host=STRING,
    pid=Integer(),
    leader=Boolean(),
    term=Integer(),
    last_heartbeat_at=TIME,
)
STATS = answer(
    "Stats",
    "run_seconds_p50 run_seconds_p95",
    window_seconds=Integer(),
    succeeded=COUNT,
    dead=COUNT,
    failed_attempts=COUNT,
    throughput_per_second=Number(low=0),
    run_seconds_p50=Number(),
    run_seconds_p95=Number(),
)
FIELD_PROBLEM = answer("FieldProblem", field=STRING, message=STRING)
PROBLEM = answer(
    "Problem",
    "",
    "errors",
    type=STRING,
    title=STRING,
    status=Integer(),
    detail=STRING,
    errors=ListOf(item=FIELD_PROBLEM, noun="problems"),
)
WARNINGS = ListOf(item=FIELD_PROBLEM, noun="warnings")
SUBMITTED_JOB = answer("SubmittedJob", JOB_NULLABLE, "warnings", **JOB_FIELDS, warnings=WARNINGS)
JOB_ARRAY = listing("JobArray", jobs=JOB)
SUBMITTED_JOBS = answer(
    "SubmittedJobs", "", "warnings", jobs=ListOf(item=JOB, noun="jobs"), warnings=WARNINGS
)
TASK = answer(
    "Task",
    "timeout_seconds published_by published_at",
    name=STRING,
    queue=QUEUE_NAME,
    priority=Integer(),
    max_attempts=Integer(),
    backoff=BACKOFF,
    timeout_seconds=Number(),
    params=ListOf(
        item=answer("TaskParam", name=STRING, kind=Choice(values=PARAMETER_KINDS)),
        noun="parameters",
    ),
    any_other=Boolean(),
    published_by=STRING,
    published_at=TIME,
)
TASK_LIST = listing("TaskList", tasks=TASK)
JOB_PAGE = answer(
    "JobPage", "next_cursor", jobs=ListOf(item=LISTED_JOB, noun="jobs"), next_cursor=STRING
)
ATTEMPT_LIST = listing("AttemptList", attempts=ATTEMPT)
QUEUE_LIST = listing("QueueList", queues=QUEUE)
WORKER_LIST = listing("WorkerList", workers=WORKER)
SCHEDULER_LIST = listing("SchedulerList", schedulers=SCHEDULER)
QUEUE_PAUSE = answer("QueuePause", name=QUEUE_NAME, paused=Boolean())
BULK_COUNT = answer("Count", count=COUNT)
DRY_RUN_COUNT = answer("DryRunCount", count=COUNT, exact=Boolean(), dry_run=Const(value=True))
HEALTH = answer("Health", status=Const(value="ok"))
RECENT_FIRE = answer(
    "ScheduleFire",
    "job_id",
    fire_at=TIME,
    outcome=Choice(values=("enqueued", "missed", "overlap_skipped")),
    job_id=JOB_ID,
)
SCHEDULE = answer(
    "Schedule",
    "cron every_seconds timeout_seconds last_fire_at",
    name=SCHEDULE_NAME,
    task=STRING,
    args=JsonObject(),
    cron=STRING,
    every_seconds=Number(),
    timezone=STRING,
    catch_up=Choice(values=CATCH_UPS),
    catch_up_window_seconds=Number(),
    overlap=Choice(values=OVERLAPS),
    queue=QUEUE_NAME,
    priority=Integer(),
    max_attempts=Integer(),
    backoff=BACKOFF,
    timeout_seconds=Number(),
    paused=Boolean(),
    next_fire_at=TIME,
    last_fire_at=TIME,
    recent_fires=ListOf(item=RECENT_FIRE, noun="fires"),
    fires=answer("ScheduleFireCounts", enqueued=COUNT, missed=COUNT, overlap_skipped=COUNT),
    created_at=TIME,
    updated_at=TIME,
)
SCHEDULE_LIST = listing("ScheduleList", schedules=SCHEDULE)
READINESS = answer(
    "Readiness",
    status=Choice(values=("ok", "unavailable")),
    checks=answer("ReadinessChecks", "", "coordinator", store=STRING, coordinator=STRING),
)
