"""Submission validation names every bad field; good submissions keep what was sent."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from taskyard.domain.builtins import BuiltinPolicy
from taskyard.domain.errors import ValidationError
from taskyard.domain.retry import Jitter
from taskyard.domain.submission import parse_submission


def fields(data: Any, **kwargs: Any) -> list[str]:
    with pytest.raises(ValidationError) as refused:
        parse_submission(data, **kwargs)
    return [e.field for e in refused.value.errors]


def test_defaults_are_filled_in() -> None:
    s = parse_submission({"task": "t"})
    assert (s.queue, s.priority, s.max_attempts, s.timeout_s) == ("default", 0, 3, None)
    assert s.backoff.base_s == 1.0 and s.backoff.factor == 2.0 and s.backoff.max_s == 300.0
    assert s.backoff.jitter is Jitter.FULL
    assert s.args == {} and s.depends_on == () and s.run_at is None and s.delay_s is None


def test_every_field_is_kept() -> None:
    dep = "0190c2d4-1111-7000-8000-000000000001"
    s = parse_submission(
        {
            "task": "http",
            "args": {"url": "http://127.0.0.1:9000/hook"},
            "queue": "hooks.v2",
            "priority": -100,
            "run_at": "2026-11-22T11:00:00+01:00",
            "max_attempts": 1000,
            "backoff": {"base_seconds": 0.5, "jitter": "equal"},
            "timeout_seconds": 60,
            "idempotency_key": "invoice-42",
            "depends_on": [dep, dep],
        },
        check_args=BuiltinPolicy(http_allowed_hosts=frozenset({"127.0.0.1:9000"})).check,
    )
    assert s.run_at == datetime(2026, 11, 22, 10, tzinfo=UTC)
    assert s.backoff.base_s == 0.5 and s.backoff.jitter is Jitter.EQUAL
    assert s.backoff.max_s == 300.0
    assert [str(d) for d in s.depends_on] == [dep], "duplicates collapse"
    assert s.idempotency_key == "invoice-42" and s.priority == -100


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, ["task"]),
        ({"task": ""}, ["task"]),
        ({"task": "t", "colour": "red"}, ["colour"]),
        ({"task": "t", "args": []}, ["args"]),
        ({"task": "t", "queue": "no spaces"}, ["queue"]),
        ({"task": "t", "priority": True}, ["priority"]),
        ({"task": "t", "priority": 101}, ["priority"]),
        ({"task": "t", "priority": 1.5}, ["priority"]),
        ({"task": "t", "run_at": "2026-11-22T10:00:00"}, ["run_at"]),
        ({"task": "t", "run_at": "tomorrow"}, ["run_at"]),
        ({"task": "t", "delay_seconds": -1}, ["delay_seconds"]),
        ({"task": "t", "delay_seconds": 31_536_001}, ["delay_seconds"]),
        ({"task": "t", "run_at": "2026-11-22T10:00:00Z", "delay_seconds": 1}, ["delay_seconds"]),
        ({"task": "t", "max_attempts": 0}, ["max_attempts"]),
        ({"task": "t", "backoff": {"jitter": "some"}}, ["backoff.jitter"]),
        ({"task": "t", "backoff": {"base_seconds": 0}}, ["backoff.base_seconds"]),
        ({"task": "t", "backoff": {"factor": 0.5}}, ["backoff.factor"]),
        ({"task": "t", "backoff": {"base_seconds": 10, "max_seconds": 5}}, ["backoff.max_seconds"]),
        ({"task": "t", "backoff": {"cap": 5}}, ["backoff.cap"]),
        ({"task": "t", "timeout_seconds": 0}, ["timeout_seconds"]),
        ({"task": "t", "idempotency_key": ""}, ["idempotency_key"]),
        ({"task": "t", "depends_on": ["not-a-uuid"]}, ["depends_on[0]"]),
        ({"task": "t", "depends_on": "0190c2d4-1111-7000-8000-000000000001"}, ["depends_on"]),
        (
            {"task": 5, "priority": "high", "max_attempts": None},
            ["max_attempts", "priority", "task"],
        ),
    ],
)
def test_a_bad_field_is_named(data: dict[str, Any], expected: list[str]) -> None:
    assert sorted(fields(data)) == sorted(expected)


def test_a_body_that_is_not_an_object_is_refused() -> None:
    assert fields([1, 2]) == [""]


def test_the_header_key_fills_in_and_must_agree() -> None:
    assert parse_submission({"task": "t"}, idempotency_key_header="k").idempotency_key == "k"
    assert fields({"task": "t", "idempotency_key": "a"}, idempotency_key_header="b") == [
        "idempotency_key"
    ]


def test_the_fingerprint_ignores_key_order_and_dependency_order() -> None:
    a = "0190c2d4-1111-7000-8000-000000000001"
    b = "0190c2d4-1111-7000-8000-000000000002"
    one = parse_submission({"task": "t", "args": {"x": 1, "y": 2}, "depends_on": [a, b]})
    two = parse_submission({"depends_on": [b, a], "args": {"y": 2, "x": 1}, "task": "t"})
    assert one.fingerprint() == two.fingerprint()
    delayed = parse_submission({"task": "t", "args": {"x": 1, "y": 2}, "delay_seconds": 5})
    assert delayed.fingerprint() != one.fingerprint()


@pytest.mark.parametrize(
    ("task", "args", "expected"),
    [
        ("sleep", {"seconds": 3601}, ["args.seconds"]),
        ("sleep", {"seconds": 1, "fail": "yes"}, ["args.fail"]),
        ("sleep", {"naps": 2}, ["args.naps"]),
        ("http", {"url": "http://example.invalid/x"}, ["args.url"]),
        ("http", {"url": "ftp://127.0.0.1/x"}, ["args.url"]),
        ("http", {"url": "http://127.0.0.1:9000/x", "method": "BREW"}, ["args.method"]),
        ("shell", {"argv": ["true"]}, ["task"]),
    ],
)
def test_builtin_args_are_checked_at_submit(
    task: str, args: dict[str, Any], expected: list[str]
) -> None:
    policy = BuiltinPolicy(http_allowed_hosts=frozenset({"127.0.0.1:9000"}))
    assert fields({"task": task, "args": args}, check_args=policy.check) == expected


def test_shell_is_accepted_once_enabled() -> None:
    policy = BuiltinPolicy(shell_enabled=True)
    s = parse_submission(
        {"task": "shell", "args": {"argv": ["echo", "hi"]}}, check_args=policy.check
    )
    assert s.args == {"argv": ["echo", "hi"]}
    assert fields({"task": "shell", "args": {"argv": "echo hi"}}, check_args=policy.check) == [
        "args.argv"
    ]
