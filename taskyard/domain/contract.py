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

from taskyard.domain.model import JobState, Outcome
from taskyard.domain.retry import BASE_S_DEFAULT, FACTOR_DEFAULT, MAX_S_DEFAULT, Jitter, RetryPolicy
from taskyard.domain.schema import (
    AnyJson,
    Boolean,
    Choice,
    Const,
    Field,
    Integer,
    JobId,
    JsonObject,
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

STATES = tuple(state.value for state in JobState)
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


IDEMPOTENCY_KEY = Text(max_len=IDEMPOTENCY_KEY_LEN_MAX)
CORRELATION_ID = Text(max_len=CORRELATION_ID_LEN_MAX)
DURATION = Number(low=DURATION_S_MIN, high=SECONDS_MAX)
CURSOR = Text(max_len=100, pattern="[A-Za-z0-9_-]{1,100}", words="a cursor this API gave out")
STRING = Text(min_len=0)
"""Any string (in answers)."""
TIME = Time(output=True)
COUNT = Integer(low=0)

# --- what a client sends ------------------------------------------------------------------

BACKOFF_INPUT = Shape(
    "BackoffInput",
    (
        field(
            "base_seconds",
            DURATION,
            "the delay ceiling after the first failure",
            default=BASE_S_DEFAULT,
        ),
        field(
            "factor",
            Number(low=1),
            "how much the ceiling grows per attempt",
            default=FACTOR_DEFAULT,
        ),
        field(
            "max_seconds",
            Number(
                low=DURATION_S_MIN,
                high=SECONDS_MAX,
                words=f"a number from base_seconds (and {DURATION_S_MIN:g}) to {SECONDS_MAX}",
            ),
            "the ceiling's cap, at least base_seconds",
            default=MAX_S_DEFAULT,
        ),
        field(
            "jitter",
            Choice(values=tuple(j.value for j in Jitter)),
            "how the delay is drawn under the ceiling",
            default=Jitter.FULL.value,
        ),
    ),
    "the retry delay: min(max_seconds, base_seconds * factor ** (attempt - 1)), then jitter; "
    "missing keys take their defaults",
    python_type=RetryPolicy,
)
SUBMISSION = Shape(
    "JobSubmission",
    (
        field(
            "task",
            TASK_NAME,
            "sleep, http, shell (args checked at submit), or a Python handler",
            required=True,
        ),
        field("args", JsonObject(), "the handler's arguments", default={}),
        field("queue", QUEUE_NAME, default=QUEUE_DEFAULT),
        field(
            "priority", Integer(low=PRIORITY_MIN, high=PRIORITY_MAX), "higher runs first", default=0
        ),
        field(
            "run_at",
            Time(),
            "when the job is due (now when neither this nor delay_seconds)",
            nullable=True,
        ),
        field(
            "delay_seconds",
            Number(low=DURATION_S_MIN, high=DELAY_S_MAX, zero=True),
            "instead of run_at: due this long after the store's now",
            nullable=True,
        ),
        field("max_attempts", Integer(low=1, high=MAX_ATTEMPTS_MAX), default=MAX_ATTEMPTS_DEFAULT),
        field("backoff", BACKOFF_INPUT),
        field(
            "timeout_seconds",
            DURATION,
            "an attempt running longer fails (type timeout)",
            nullable=True,
        ),
        field(
            "idempotency_key",
            IDEMPOTENCY_KEY,
            "the same as the Idempotency-Key header",
            nullable=True,
        ),
        field(
            "depends_on",
            ListOf(
                item=JobId(),
                noun="job ids",
                count_noun="dependencies",
                max_items=DEPENDS_ON_MAX,
                unique=True,
            ),
            "jobs that must succeed first",
            default=[],
        ),
    ),
    "a job to run",
    not_object="a job submission must be a JSON object",
)
BATCH = Shape(
    "Batch",
    (
        field(
            "jobs",
            ListOf(
                item=SUBMISSION,
                noun="job submissions",
                count_noun="submissions",
                min_items=1,
                max_items=BATCH_MAX,
            ),
            "errors name jobs[i].field",
            required=True,
        ),
    ),
    "submissions stored all or nothing",
    not_object="a batch must be a JSON object",
)
CHANGE = Shape(
    "JobChange",
    (
        field("priority", Integer(low=PRIORITY_MIN, high=PRIORITY_MAX)),
        field("run_at", Time()),
    ),
    "a waiting job's new priority and/or run_at",
    unknown="only priority and run_at can be changed",
    not_object="a change must be a JSON object",
    at_least_one="give priority and/or run_at",
)
FILTER = Shape(
    "JobFilter",
    (
        field(
            "state",
            OneOrMany(item=Choice(values=STATES), max_items=FILTER_VALUES_MAX),
            "any of these states",
        ),
        field(
            "queue", OneOrMany(item=QUEUE_NAME, max_items=FILTER_VALUES_MAX), "any of these queues"
        ),
        field("task", OneOrMany(item=TASK_NAME, max_items=FILTER_VALUES_MAX), "any of these tasks"),
    ),
    "the jobs a bulk action applies to: each field a string or a list (any of), "
    "the fields combined with and",
    not_object="a filter must be a JSON object",
    at_least_one="give at least one of state, queue, task",
)

# --- parameters ----------------------------------------------------------------------------

LISTING_PARAMS = (
    Param(name="state", kind=Choice(values=STATES), many=True, description="any of these states"),
    Param(name="queue", kind=QUEUE_NAME, many=True, description="any of these queues"),
    Param(name="task", kind=TASK_NAME, many=True, description="any of these tasks"),
    Param(
        name="limit",
        kind=Integer(low=1, high=LIMIT_MAX),
        default=LIMIT_DEFAULT,
        description="jobs per page, at most",
    ),
    Param(name="cursor", kind=CURSOR, description="next_cursor of the previous page"),
    Param(
        name="include",
        kind=Choice(values=LISTED_ON_REQUEST),
        many=True,
        description="fields to list besides the default ones (repeat for several)",
    ),
)
DRY_RUN = Param(
    name="dry_run",
    kind=Choice(values=("true", "false", "1", "0")),
    default="false",
    description="true: change nothing, answer how many jobs the action would change now",
)
WINDOW = Param(
    name="window",
    kind=Integer(low=WINDOW_S_MIN, high=WINDOW_S_MAX),
    default=WINDOW_S_DEFAULT,
    description="seconds",
)
JOB_ID_PARAM = Param(
    name="job_id",
    kind=STRING,
    where="path",
    description="a job id (UUID); a malformed one is not found",
)
QUEUE_PARAM = Param(
    name="name", kind=QUEUE_NAME, where="path", description="a malformed name is not found"
)
IDEMPOTENCY_KEY_HEADER = Param(
    name="Idempotency-Key",
    kind=IDEMPOTENCY_KEY,
    where="header",
    description="the same as the idempotency_key field (both and different: 422)",
)

# --- what a client gets ----------------------------------------------------------------------


def answer(
    name: str, fields: tuple[Field, ...], description: str = "", *, optional: tuple[str, ...] = ()
) -> Shape:
    """A shape of an answer: every field always there (null where nullable), but `optional`."""
    return Shape(
        name,
        tuple(
            Field(
                name=f.name,
                kind=f.kind,
                required=f.name not in optional,
                nullable=f.nullable,
                description=f.description,
            )
            for f in fields
        ),
        description,
    )


JOB_ID = JobId()
ERROR_INFO = answer("ErrorInfo", (field("type", STRING), field("message", STRING)))
LEASE = answer("Lease", (field("worker", STRING), field("expires_at", TIME)))
BACKOFF = answer(
    "Backoff",
    (
        field("base_seconds", Number(low=0, low_exclusive=True)),
        field("factor", Number(low=1)),
        field("max_seconds", Number()),
        field("jitter", Choice(values=tuple(j.value for j in Jitter))),
    ),
)
JOB = answer(
    "Job",
    (
        field("id", JOB_ID),
        field("task", STRING),
        field("args", JsonObject()),
        field("queue", QUEUE_NAME),
        field("priority", Integer()),
        field("run_at", TIME),
        field("max_attempts", Integer()),
        field("backoff", BACKOFF),
        field("timeout_seconds", Number(), nullable=True),
        field("idempotency_key", STRING, nullable=True),
        field("depends_on", ListOf(item=JOB_ID, noun="job ids")),
        field("state", Choice(values=STATES)),
        field("attempt", COUNT, "0 before the first run"),
        field("created_at", TIME),
        field("updated_at", TIME),
        field("finished_at", TIME, nullable=True),
        field("lease", LEASE, nullable=True),
        field("cancel_requested", Boolean()),
        field("checkpoint", AnyJson(), "any JSON value the handler saved, or null"),
        field("result", AnyJson(), "any JSON value the handler returned, or null"),
        field("last_error", ERROR_INFO, nullable=True),
        field(
            "correlation_id",
            STRING,
            "the X-Request-ID of the request that created it",
            nullable=True,
        ),
    ),
)
LISTED_JOB = answer(
    "ListedJob",
    JOB.fields,
    "a job as listed: "
    + ", ".join(LISTED_ON_REQUEST)
    + " only when the include parameter names them",
    optional=LISTED_ON_REQUEST,
)
ATTEMPT = answer(
    "Attempt",
    (
        field("attempt", Integer(low=1)),
        field("worker", STRING),
        field("started_at", TIME, "the store's time of the claim"),
        field("finished_at", TIME, nullable=True),
        field("outcome", Choice(values=tuple(o.value for o in Outcome))),
        field(
            "error",
            answer(
                "AttemptError",
                (
                    field("type", STRING),
                    field("message", STRING),
                    field("traceback", STRING, nullable=True),
                ),
            ),
            nullable=True,
        ),
        field("duration_seconds", Number(low=0), nullable=True),
    ),
)
QUEUE = answer(
    "Queue",
    (
        field("name", QUEUE_NAME),
        field("paused", Boolean()),
        field(
            "counts",
            answer("QueueCounts", tuple(field(state, COUNT) for state in STATES)),
            "jobs by state",
        ),
        field(
            "oldest_queued_age_seconds",
            Number(low=0),
            "how long the oldest due job has waited",
            nullable=True,
        ),
    ),
)
WORKER = answer(
    "Worker",
    (
        field("id", STRING),
        field("host", STRING),
        field("pid", Integer()),
        field("queues", ListOf(item=STRING, noun="queue names"), "empty: every queue"),
        field("concurrency", Integer(low=1)),
        field("started_at", TIME),
        field("last_heartbeat_at", TIME),
        field("running_job_ids", ListOf(item=JOB_ID, noun="job ids"), "from the store's leases"),
    ),
)
SCHEDULER = answer(
    "Scheduler",
    (
        field("id", STRING),
        field("host", STRING),
        field("pid", Integer()),
        field("leader", Boolean()),
        field("term", Integer(), nullable=True),
        field("last_heartbeat_at", TIME),
    ),
)
STATS = answer(
    "Stats",
    (
        field("window_seconds", Integer()),
        field("succeeded", COUNT),
        field("dead", COUNT),
        field("failed_attempts", COUNT),
        field("throughput_per_second", Number(low=0)),
        field("run_seconds_p50", Number(), nullable=True),
        field("run_seconds_p95", Number(), nullable=True),
    ),
)
FIELD_PROBLEM = answer(
    "FieldProblem",
    (
        field(
            "field",
            STRING,
            "a dotted path (jobs[1].priority), a query parameter or header name, "
            "or empty for the whole body",
        ),
        field("message", STRING),
    ),
)
PROBLEM = answer(
    "Problem",
    (
        field("type", STRING, "urn:taskyard:problem:<kind>"),
        field("title", STRING),
        field("status", Integer()),
        field("detail", STRING),
        field(
            "errors",
            ListOf(item=FIELD_PROBLEM, noun="problems"),
            "each problem of a body or parameter",
        ),
    ),
    optional=("errors",),
)


def listing(name: str, key: str, item: Shape, description: str = "") -> Shape:
    """`{key: [item, ...]}`."""
    return answer(name, (field(key, ListOf(item=item, noun=key), description),))


JOB_ARRAY = listing("JobArray", "jobs", JOB, "in the order given")
JOB_PAGE = answer(
    "JobPage",
    (
        field("jobs", ListOf(item=LISTED_JOB, noun="jobs")),
        field(
            "next_cursor",
            STRING,
            "the next page: there are more jobs, or this page was cut at "
            f"{PAGE_BYTES_MAX // (1024 * 1024)} MiB",
            nullable=True,
        ),
    ),
)
ATTEMPT_LIST = listing("AttemptList", "attempts", ATTEMPT, "oldest first")
QUEUE_LIST = listing("QueueList", "queues", QUEUE)
WORKER_LIST = listing("WorkerList", "workers", WORKER)
SCHEDULER_LIST = listing("SchedulerList", "schedulers", SCHEDULER)
QUEUE_PAUSE = answer("QueuePause", (field("name", QUEUE_NAME), field("paused", Boolean())))
BULK_COUNT = answer("Count", (field("count", COUNT, "how many jobs the action changed"),))
DRY_RUN_COUNT = answer(
    "DryRunCount",
    (
        field("count", COUNT, "how many jobs the action would change now"),
        field(
            "exact",
            Boolean(),
            "false: more jobs matched than a count looks at "
            f"({BULK_COUNT_SCAN_MAX:,}); count is then a lower bound",
        ),
        field("dry_run", Const(value=True)),
    ),
)
HEALTH = answer("Health", (field("status", Const(value="ok")),))
READINESS = answer(
    "Readiness",
    (
        field("status", Choice(values=("ok", "unavailable"))),
        field(
            "checks",
            answer(
                "ReadinessChecks",
                (field("store", STRING), field("coordinator", STRING)),
                optional=("coordinator",),
            ),
            "ok, or down: <why>",
        ),
    ),
)
