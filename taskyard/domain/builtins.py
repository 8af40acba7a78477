"""Submit-time checks of the built-in tasks' args (`sleep`, `http`, `shell`).

The tasks themselves run in `taskyard.adapters.executors`; what a submission may
ask of them is decided here, so the API, the Python library and the worker agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import attrs

from taskyard.domain.errors import FieldError
from taskyard.domain.model import JsonObject
from taskyard.domain.submission import duration_problem

SLEEP_S_MAX = 3600
TASK_TIMEOUT_S_MAX = 86_400
"""The longest per-request (`http`) or per-command (`shell`) timeout: a day."""
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
BUILTIN_TASKS = frozenset({"sleep", "http", "shell"})


def _timeout_problems(args: JsonObject, default_s: float) -> list[FieldError]:
    problem = duration_problem(args.get("timeout_seconds", default_s), high=TASK_TIMEOUT_S_MAX)
    return [FieldError("args.timeout_seconds", problem)] if problem is not None else []


def _host_and_port(url: str) -> tuple[str, int] | None:
    """`(host, port)` of an http(s) URL, or None when it is not one or cannot be read."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port out of range or not a number
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        return None
    return host, port or (443 if parts.scheme == "https" else 80)


@attrs.frozen(kw_only=True)
class BuiltinPolicy:
    """What the operator allows: hosts the `http` task may call, and whether `shell` is on."""

    http_allowed_hosts: frozenset[str] = frozenset()
    shell_enabled: bool = False

    def host_allowed(self, url: str) -> bool:
        read = _host_and_port(url)
        if read is None:
            return False
        host, port = read
        allowed = {h.lower() for h in self.http_allowed_hosts}
        return host in allowed or f"{host}:{port}" in allowed

    def check(self, task: str, args: JsonObject) -> Sequence[FieldError]:
        if task == "sleep":
            return _check_sleep(args)
        if task == "http":
            return _check_http(args, self)
        if task == "shell":
            return _check_shell(args, self)
        return ()


def _unknown(args: Mapping[str, Any], known: set[str]) -> list[FieldError]:
    return [FieldError(f"args.{key}", "unknown field") for key in sorted(set(args) - known)]


def _check_sleep(args: JsonObject) -> list[FieldError]:
    errors = _unknown(args, {"seconds", "fail", "fail_times"})
    problem = duration_problem(args.get("seconds", 0), high=SLEEP_S_MAX, zero=True)
    if problem is not None:
        errors.append(FieldError("args.seconds", problem))
    if "fail" in args and not isinstance(args["fail"], bool):
        errors.append(FieldError("args.fail", "must be true or false"))
    fail_times = args.get("fail_times", 0)
    if isinstance(fail_times, bool) or not isinstance(fail_times, int) or fail_times < 0:
        errors.append(FieldError("args.fail_times", "must be an integer >= 0"))
    return errors


def _check_http(args: JsonObject, policy: BuiltinPolicy) -> list[FieldError]:
    errors = _unknown(args, {"url", "method", "headers", "body", "timeout_seconds"})
    url = args.get("url")
    if not isinstance(url, str) or _host_and_port(url) is None:
        errors.append(FieldError("args.url", "must be an http:// or https:// URL"))
    elif not policy.host_allowed(url):
        errors.append(FieldError("args.url", "host is not in TASKYARD_HTTP_ALLOWED_HOSTS"))
    method = args.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
        errors.append(
            FieldError("args.method", f"must be one of {', '.join(sorted(HTTP_METHODS))}")
        )
    headers = args.get("headers", {})
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        errors.append(FieldError("args.headers", "must be an object of strings"))
    errors.extend(_timeout_problems(args, 30))
    return errors


def _check_shell(args: JsonObject, policy: BuiltinPolicy) -> list[FieldError]:
    if not policy.shell_enabled:
        return [
            FieldError("task", "the shell task is disabled (TASKYARD_SHELL_ENABLED=1 enables it)")
        ]
    errors = _unknown(args, {"argv", "cwd", "env", "timeout_seconds"})
    argv = args.get("argv")
    if (
        isinstance(argv, str)
        or not isinstance(argv, Sequence)
        or not argv
        or not all(isinstance(a, str) for a in argv)
    ):
        errors.append(FieldError("args.argv", "must be a non-empty list of strings"))
    if "cwd" in args and not isinstance(args["cwd"], str):
        errors.append(FieldError("args.cwd", "must be a string"))
    env = args.get("env", {})
    if not isinstance(env, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        errors.append(FieldError("args.env", "must be an object of strings"))
    errors.extend(_timeout_problems(args, 60))
    return errors
