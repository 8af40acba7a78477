"""Submissions a client gets wrong, as JSON: each takes a body the workload would send and
breaks it one way the API must refuse (a wrong type, an unknown field, text a store cannot
hold, a time without an offset, a number out of range, args the task does not take, a
built-in task's args it refuses, ...).

A simulated client sends them through the production parser (`Client.parse` and
`Client.parse_batch`, the same calls the REST API makes), and the world checks that
each is refused with a `ValidationError` naming a field, and that nothing was stored.
Every breakage here is one the contract refuses whatever the body it starts from.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Mapping
from typing import Any
from uuid import UUID

import attrs

from taskyard.domain.contract import BATCH_MAX
from taskyard.domain.flow import QueueLimits, RateLimit
from taskyard.domain.storable import INT_DIGITS_MAX

Body = dict[str, Any]


@attrs.frozen(kw_only=True)
class Malformed:
    """What a client sends: a body, and how it goes."""

    name: str
    """Which breakage (the trace says it)."""
    body: object
    batch: bool = False
    """Sent as a batch (`{"jobs": [...]}`, `Client.parse_batch`)."""
    header: str | None = None
    """An `Idempotency-Key` header sent with it."""
    refused_by_store: bool = False
    """Valid as JSON, refused when stored (a dependency on no job): nothing stored."""
    needs_catalog: str | None = None
    """The task whose published parameters refuse it: before any worker published that
    task, the body is acceptable (args of an unknown task are not checked)."""


Breakage = Callable[[random.Random, Body], Malformed]


def _set(name: str, key: str, *values: object) -> Breakage:
    """A breakage that sets the top-level field `key` to one of `values`."""

    def make(rng: random.Random, body: Body) -> Malformed:
        broken = copy.deepcopy(body)
        broken[key] = copy.deepcopy(rng.choice(values))
        return Malformed(name=name, body=broken)

    return make


def _args(
    name: str, change: Callable[[random.Random, dict[str, Any]], object], *, checked: bool
) -> Breakage:
    """A breakage of the args. `checked`: one only the `work` task's parameters refuse
    (the `report` task takes any args)."""

    def make(rng: random.Random, body: Body) -> Malformed:
        broken = copy.deepcopy(body)
        if checked:
            broken["task"] = "work"
        broken["args"] = change(rng, dict(broken.get("args", {})))
        return Malformed(name=name, body=broken, needs_catalog="work" if checked else None)

    return make


def _builtin(name: str, task: str, *args: Mapping[str, Any]) -> Breakage:
    """A built-in task (`sleep`, `http`, `shell`) with args it refuses."""

    def make(rng: random.Random, body: Body) -> Malformed:
        broken = copy.deepcopy(body)
        broken["task"] = task
        broken["args"] = copy.deepcopy(dict(rng.choice(args)))
        return Malformed(name=name, body=broken)

    return make


def _unknown_arg(rng: random.Random, args: dict[str, Any]) -> object:
    args[rng.choice(("colour", "n2", "fail_first"))] = 1
    return args


def _missing_arg(rng: random.Random, args: dict[str, Any]) -> object:
    args.pop(rng.choice(("n", "ms", "stop")), None)
    return args


def _unstorable_arg(rng: random.Random, args: dict[str, Any]) -> object:
    value: object = rng.choice(
        (
            "a\x00b",
            "half \ud800 a pair",
            10**INT_DIGITS_MAX,
            {"deep": ["x\x00"]},
            {1: "a key that is not a string"},
            {"key\x00": 1},
            "\x00" * 300,
            float("inf"),
            float("nan"),
        )
    )
    args["note"] = value
    return args


def _unknown_dependency(rng: random.Random, body: Body) -> Malformed:
    broken = copy.deepcopy(body)
    broken.pop("idempotency_key", None)
    broken["depends_on"] = [str(UUID(int=rng.getrandbits(128)))]
    return Malformed(name="depends on no job", body=broken, refused_by_store=True)


def _not_an_object(rng: random.Random, body: Body) -> Malformed:
    return Malformed(name="not an object", body=rng.choice(([body], "job", None, 7, True)))


def _both_times(rng: random.Random, body: Body) -> Malformed:
    broken = copy.deepcopy(body)
    broken["run_at"] = "2026-01-01T00:00:05Z"
    broken["delay_seconds"] = 5
    return Malformed(name="run_at and delay_seconds", body=broken)


def _backoff_cap_below_base(rng: random.Random, body: Body) -> Malformed:
    broken = copy.deepcopy(body)
    broken["backoff"] = {"base_seconds": 10, "max_seconds": rng.choice((1, 9.5)), "jitter": "full"}
    if rng.random() < 0.5:
        broken["backoff"]["factor"] = rng.choice((0.5, "2", None))
    return Malformed(name="backoff cap below its base", body=broken)


def _header_differs(rng: random.Random, body: Body) -> Malformed:
    broken = copy.deepcopy(body)
    broken["idempotency_key"] = "one-key"
    header = rng.choice(("another-key", "", "bad\x00key", "x" * 201))
    return Malformed(name="Idempotency-Key header", body=broken, header=header)


def _batch(rng: random.Random, body: Body) -> Malformed:
    good = copy.deepcopy(body)
    good.pop("idempotency_key", None)
    bad = copy.deepcopy(good)
    bad["priority"] = "urgent"
    bad["queue"] = "no spaces allowed"
    jobs: object = rng.choice(
        (
            [],
            [good, bad],
            [bad, good, 7],
            {"0": good},
            [good] * (BATCH_MAX + 1),
        )
    )
    return Malformed(name="batch", body={"jobs": jobs}, batch=True)


def _batch_not_an_object(rng: random.Random, body: Body) -> Malformed:
    jobs: object = rng.choice(([body], None, {"jobs": [body], "extra": 1}, {}))
    return Malformed(name="batch not an object", body=jobs, batch=True)


BREAKAGES: tuple[Breakage, ...] = (
    _not_an_object,
    _set("unknown field", "colour", "red", 1, None),
    _set("task", "task", "", None, 7, "t" * 201, "nul\x00", "half \udc00"),
    _set("queue", "queue", "", "has space", "q" * 101, ["q"], 1, "ünïcode"),
    _set("priority", "priority", "high", True, 1.5, 101, -101, 10**30, None),
    _set(
        "run_at",
        "run_at",
        "tomorrow",
        "2026-13-01T00:00:00Z",
        "2026-01-01T00:00:00",
        "2026-02-30T00:00:00Z",
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+01:00",
        "2026-01-01T25:00:00Z",
        "2026-01-01 00:00:00Z\x00",
        1767225600,
        ["2026-01-01T00:00:00Z"],
    ),
    _set("delay_seconds", "delay_seconds", -1, 5e-324, 10**12, "5", float("inf"), True),
    _set("max_attempts", "max_attempts", 0, 1001, "3", 2.5, False),
    _set("timeout_seconds", "timeout_seconds", 0, -5, 10**9, "30", float("nan")),
    _set("idempotency_key", "idempotency_key", "", "k" * 201, 12, "key\ud800"),
    _set("concurrency_key", "concurrency_key", "", "k" * 201, 12, "key\ud800", "a\x00b", True),
    _set(
        "depends_on",
        "depends_on",
        "not-a-list",
        ["not-a-uuid"],
        [1],
        ["00000000-0000-0000-0000-00000000000g"],
        {"id": "x"},
    ),
    _set(
        "backoff",
        "backoff",
        "fast",
        {"base_seconds": 0},
        {"factor": 0.5},
        {"jitter": "sideways"},
        {"base_seconds": "1"},
        {"extra": 1},
        {"max_seconds": 10**12},
    ),
    _set("args", "args", "n=1", [1, 2], None, 3),
    _args("unknown arg", _unknown_arg, checked=True),
    _args("missing arg", _missing_arg, checked=True),
    _args("unstorable arg", _unstorable_arg, checked=False),
    _both_times,
    _backoff_cap_below_base,
    _header_differs,
    _batch,
    _batch_not_an_object,
    _builtin(
        "sleep args",
        "sleep",
        {"seconds": -1},
        {"seconds": 3601},
        {"seconds": "1"},
        {"fail": "yes"},
        {"fail_times": -1},
        {"fail_times": True},
        {"fail_times": 1.5},
        {"seconds": 1, "extra": 2},
    ),
    _builtin(
        "http args",
        "http",
        {},
        {"url": "ftp://example.com/"},
        {"url": "http://user@example.com/"},
        {"url": "http://example.com:99999/"},
        {"url": "http://exa mple.com/"},
        {"url": "http:///nohost"},
        {"url": "http://not-allowed.example/"},
        {"url": "http://hooks.example:8080/"},
        {"url": "http://[::1]:9000/", "method": "FETCH"},
        {"url": "https://hooks.example/", "method": 7},
        {"url": "http://[0:0::1]:9000/", "headers": {"a": 1}},
        {"url": "http://HOOKS.example/", "headers": ["a"]},
        {"url": "http://hooks.example/", "timeout_seconds": 86_401},
        {"url": "http://hooks.example/", "body": "x", "extra": 1},
    ),
    _builtin(
        "shell args",
        "shell",
        {},
        {"argv": "ls -l"},
        {"argv": []},
        {"argv": ["ls", 1]},
        {"argv": ["ls"], "cwd": 7},
        {"argv": ["ls"], "env": {"A": 1}},
        {"argv": ["ls"], "env": "A=1"},
        {"argv": ["ls"], "timeout_seconds": 0},
        {"argv": ["ls"], "shell": True},
    ),
    _unknown_dependency,
    _set("task of nobody", "task", "nobody-runs-this"),
)
"""Every breakage a client may make. `task of nobody` is refused only by a client that
refuses unknown tasks (`TASKYARD_UNKNOWN_TASK=refuse`); the world sends it to no other."""

ALLOWED_HOSTS = frozenset({"[::1]:9000", "hooks.example", "bad:entry:", "[::1"})
"""The `http` task's allowlist of the simulated clients (some entries unreadable, as an
operator may write them)."""


TRACE_CONTEXTS: tuple[object, ...] = (
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    {"TraceParent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    {"traceparent": "00-00000000000000000000000000000000-b7ad6b7169203331-01"},
    {"traceparent": 7},
    {"tracestate": "tab\tinside"},
    {f"key{i}": "v" for i in range(9)},
)
"""Trace contexts no job may carry (a tracing hook's mistakes): refused naming the field."""

TRACEPARENTS: tuple[str, ...] = (
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
    "not a traceparent",
    "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
)
"""The `traceparent` headers API clients send: a malformed one is ignored (W3C says so),
with a warning."""

CHANGES: tuple[object, ...] = (
    {},
    [],
    {"queue": "other"},
    {"priority": "high"},
    {"priority": 1, "colour": "red"},
    {"run_at": "2026-01-01T00:00:00"},
    {"run_at": None},
)
"""A person's broken changes of a job (`PATCH /v1/jobs/{id}`)."""

FILTERS: tuple[tuple[object, str], ...] = (
    ({}, "retry"),
    ("dead", "retry"),
    ({"state": 7}, "cancel"),
    ({"state": ["dead", 1]}, "retry"),
    ({"state": "running"}, "retry"),
    ({"state": "succeeded"}, "cancel"),
    ({"queue": ["has space"]}, "cancel"),
    ({"task": [""]}, "retry"),
    ({"task": ["t"] * 101}, "retry"),
    ({"queue": "default", "colour": "red"}, "cancel"),
)
"""A person's broken bulk filters, each with the action it is sent to."""


LIMITS: tuple[object, ...] = (
    [],
    None,
    "concurrency_limit=2",
    {"concurrency": 2},
    {"concurrency_limit": 0},
    {"concurrency_limit": -1},
    {"concurrency_limit": 1_000_001},
    {"concurrency_limit": True},
    {"concurrency_limit": 2.5},
    {"concurrency_limit": "2"},
    {"key_concurrency_limit": 10**30},
    {"key_concurrency_limit": float("nan")},
    {"rate_limit": 5},
    {"rate_limit": {"count": 5}},
    {"rate_limit": {"count": 0, "period_seconds": 1}},
    {"rate_limit": {"count": 5, "period_seconds": 0}},
    {"rate_limit": {"count": 5, "period_seconds": 0.0009}},
    {"rate_limit": {"count": 5, "period_seconds": 86_401}},
    {"rate_limit": {"count": 5, "period_seconds": float("inf")}},
    {"rate_limit": {"count": 5, "period_seconds": "1"}},
    {"rate_limit": {"count": 5, "period_seconds": 1, "burst": 2}},
    {"key_rate_limit": {"count": False, "period_seconds": 1}},
    {"key_rate_limit": {"count": 1.5, "period_seconds": 1}},
    {"weight": 0},
    {"weight": 1001},
    {"weight": None},
    {"weight": True},
)
"""An operator's broken queue limits (`PUT /v1/queues/{name}`'s body)."""

BAD_LIMITS: tuple[QueueLimits, ...] = (
    QueueLimits(concurrency_limit=0),
    QueueLimits(key_concurrency_limit=-2),
    QueueLimits(key_concurrency_limit=True),
    QueueLimits(rate_limit=RateLimit(count=0, period_s=1.0)),
    QueueLimits(key_rate_limit=RateLimit(count=1, period_s=0.0)),
    QueueLimits(weight=1001),
)
"""Limits out of bounds as a Python caller builds them (the App's path): the store
refuses them naming the field, and keeps what it had."""


def draw(rng: random.Random, body: Body, *, refuses_unknown: bool) -> Malformed:
    """One breakage of `body`, chosen by `rng`."""
    choices = BREAKAGES if refuses_unknown else BREAKAGES[:-1]
    return rng.choice(choices)(rng, body)
