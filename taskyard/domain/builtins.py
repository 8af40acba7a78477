"""Submit-time checks of the built-in tasks' args (`sleep`, `http`, `shell`).

The tasks themselves run in `taskyard.adapters.executors`; what a submission may
ask of them is decided here, so the API, the Python library and the worker agree.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
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


DEFAULT_PORTS = {"http": 80, "https": 443}
_UNSAFE_IN_URL = re.compile(r"[\x00-\x20\x7f\\]")
"""Control characters, spaces and backslashes: URL readers differ on them (urlsplit drops
tabs and newlines, urllib keeps them), so a URL with one is refused rather than read."""
_ENTRY = re.compile(r"(\[[^\[\]]+\]|[^\[\]:]+)(?::([0-9]{1,5}))?")


def _normal_host(text: str) -> str:
    """A host as compared: lower case, without brackets, an IP address in its short form.

    >>> _normal_host("[0:0::1]"), _normal_host("Example.COM"), _normal_host("127.0.0.1")
    ('::1', 'example.com', '127.0.0.1')
    """
    host = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.lower()


def _http_target(url: str) -> tuple[str, int, int] | None:
    """`(host, port, the scheme's default port)` of a plain http(s) URL; None when it is
    not one, cannot be read, carries user info (`user@host`) or an unsafe character."""
    if _UNSAFE_IN_URL.search(url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port out of range or not a number
    except ValueError:
        return None
    default = DEFAULT_PORTS.get(parts.scheme)
    if default is None or not parts.hostname or "@" in parts.netloc:
        return None
    return _normal_host(parts.hostname), port or default, default


def allowlist_entry(entry: str) -> tuple[str, int | None] | None:
    """`(host, port)` of a `TASKYARD_HTTP_ALLOWED_HOSTS` entry (`host`, `host:port`, `[v6]`,
    `[v6]:port`); port None for a bare host. None for an entry that cannot be read.

    >>> allowlist_entry("[::1]:9000"), allowlist_entry("Hooks.example"), allowlist_entry("a:b")
    (('::1', 9000), ('hooks.example', None), None)
    """
    match = _ENTRY.fullmatch(entry.strip())
    if match is None:
        return None
    return _normal_host(match.group(1)), int(match.group(2)) if match.group(2) else None


def http_allowed(url: str, allowlist: Iterable[str]) -> bool:
    """Whether the `http` task may call `url`. An entry `host:port` allows that port of the
    host; a bare `host` allows only the scheme's default port (80 for http://, 443 for
    https://), never the host's other services. Hosts compare case-insensitively, IPv6
    addresses in brackets and in any spelling of the same address.

    >>> http_allowed("http://[::1]:9000/x", ["[::1]:9000"])
    True
    >>> [http_allowed(u, ["h"]) for u in ("http://h/", "https://h/", "http://h:5432/")]
    [True, True, False]
    """
    target = _http_target(url)
    if target is None:
        return False
    host, port, default = target
    for entry in allowlist:
        allowed = allowlist_entry(entry)
        if allowed is None:
            continue
        allowed_host, allowed_port = allowed
        if allowed_host == host and port == (default if allowed_port is None else allowed_port):
            return True
    return False


@attrs.frozen(kw_only=True)
class BuiltinPolicy:
    """What the operator allows: hosts the `http` task may call, and whether `shell` is on."""

    http_allowed_hosts: frozenset[str] = frozenset()
    shell_enabled: bool = False

    def host_allowed(self, url: str) -> bool:
        return http_allowed(url, self.http_allowed_hosts)

    def check(self, task: str, args: JsonObject) -> Sequence[FieldError]:
        if task == "sleep":
            return _check_sleep(args)
        if task == "http":
            return _check_http(args, self)
        if task == "shell":
            return _check_shell(args, self)
        return ()


def _strings_object_problems(args: JsonObject, name: str) -> list[FieldError]:
    """Why `args[name]` (optional) is not an object whose keys and values are strings."""
    value = args.get(name, {})
    if isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        return []
    return [FieldError(f"args.{name}", "must be an object of strings")]


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
    if not isinstance(url, str) or _http_target(url) is None:
        errors.append(
            FieldError("args.url", "must be an http:// or https:// URL, without user@ or spaces")
        )
    elif not policy.host_allowed(url):
        errors.append(
            FieldError(
                "args.url",
                "host and port are not in TASKYARD_HTTP_ALLOWED_HOSTS (an entry without a "
                "port allows only 80 for http, 443 for https)",
            )
        )
    method = args.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
        errors.append(
            FieldError("args.method", f"must be one of {', '.join(sorted(HTTP_METHODS))}")
        )
    errors.extend(_strings_object_problems(args, "headers"))
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
    errors.extend(_strings_object_problems(args, "env"))
    errors.extend(_timeout_problems(args, 60))
    return errors
