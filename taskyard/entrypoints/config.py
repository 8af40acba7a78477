"""Settings: command-line flags win over the environment, which wins over `taskyard.toml`.

Every setting is declared once in `SETTINGS`: its environment variable, its key in
`taskyard.toml`, its flag (if it has one), its default and how a value is checked. A
command names the settings it uses:

    config.add_arguments(parser, API_SETTINGS)          # in register(): --bind, --workers, ...
    settings = config.resolve(args, API_SETTINGS)       # in run(): a `Settings`, or ConfigError

Only the named settings are read, so a bad value for a setting a command does not use
never stops it. An empty environment variable counts as unset. A bad value raises
`ConfigError(source, problem)`, where `source` is what the user wrote it in (`--workers`,
`TASKYARD_DATABASE_URL`, `api_workers in taskyard.toml`); the CLI prints it as one line
and exits 2.

`taskyard.toml` is read from `--config PATH`, else `TASKYARD_CONFIG`, else `./taskyard.toml`
when it exists. Its keys are the environment names without `TASKYARD_`, in lower case
(`database_url = "postgresql://..."`); values may be strings as in the environment, or
TOML's own numbers, booleans and lists. An unknown key is an error, to catch typos.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from taskyard.domain import retention
from taskyard.domain.catalog import UNKNOWN_TASK_DEFAULT, UnknownTask
from taskyard.domain.contract import is_queue_name
from taskyard.domain.scheduler import LEADER_TTL_S_MIN
from taskyard.domain.worker import (
    ASYNC_CONCURRENCY_DEFAULT,
    LEASE_TTL_S_MIN,
    POLL_INTERVAL_S_MIN,
    PREFETCH_DEFAULT,
    PROCESS_CONCURRENCY_DEFAULT,
    THREAD_CONCURRENCY_DEFAULT,
)
from taskyard.entrypoints.numbers import ascii_float, ascii_int

CONFIG_FILE_NAME = "taskyard.toml"
CONFIG_ENV = "TASKYARD_CONFIG"
ENV_PREFIX = "TASKYARD_"


class ConfigError(Exception):
    """A setting is wrong: the process stops at start with one line naming it, as the user
    wrote it (a flag, a variable, a key of `taskyard.toml`, an argument of `App`)."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


# --- URL schemes: which stores and coordinators there are ---------------------------------

STORE_SCHEMES = "postgresql://, sqlite:///, memory://"
COORDINATOR_SCHEMES = ("redis", "rediss", "unix", "memory")


def store_scheme(url: str, *, setting: str) -> str:
    """`postgresql`, `sqlite` or `memory`; anything else is a `ConfigError` naming `setting`."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    if scheme in ("sqlite", "memory"):
        return scheme
    raise ConfigError(setting, f"unsupported scheme {scheme or url!r} (use {STORE_SCHEMES})")


def sqlite_path(url: str, *, setting: str) -> str:
    """The file of a `sqlite:///path` URL: `sqlite:///jobs.db` is `jobs.db` in the working
    directory, `sqlite:////var/lib/taskyard.db` is absolute."""
    parts = urlsplit(url)
    if parts.netloc or not parts.path.startswith("/") or len(parts.path) < 2:
        raise ConfigError(setting, "a SQLite URL names a file: sqlite:///path/to/file.db")
    if parts.query or parts.fragment:
        raise ConfigError(setting, "a SQLite URL takes no query or fragment")
    return parts.path[1:]


def coordinator_scheme(url: str, *, setting: str) -> str:
    """`redis`, `rediss`, `unix` (Redis on a socket) or `memory` (one process)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in COORDINATOR_SCHEMES:
        raise ConfigError(
            setting,
            f"unsupported scheme {scheme or url!r} (use redis://, rediss://, unix://, or "
            "memory:// for one process)",
        )
    return scheme


# --- value checks: each takes what was written and returns the value or raises ValueError --


def _text(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"must be a string, not {type(raw).__name__}")
    return raw.strip()


def _items(raw: object) -> list[str]:
    """A comma separated string, or a TOML list of strings; blanks dropped."""
    if isinstance(raw, list):
        if not all(isinstance(item, str) for item in raw):
            raise ValueError("must be a list of strings")
        parts = raw
    else:
        parts = _text(raw).split(",")
    return [part.strip() for part in parts if part.strip()]


def parse_bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    value = _text(raw).lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{raw!r} is not a boolean (use 1 or 0, true or false)")


def number_in(low: float, high: float, *, off: bool = False) -> Callable[[object], float]:
    """A finite number in `[low, high]`; with `off`, 0 too (what turns the thing off), so
    that an interval cannot be set so small that its loop spins."""

    def parse(raw: object) -> float:
        if isinstance(raw, bool):
            raise ValueError("must be a number")
        if isinstance(raw, int | float):
            value = float(raw)
        else:
            parsed = ascii_float(_text(raw))
            if parsed is None:
                raise ValueError(f"{raw!r} is not a number")
            value = parsed
        if not math.isfinite(value) or not (low <= value <= high or (off and value == 0)):
            zero = "0 (off), or " if off else ""
            raise ValueError(f"{raw!r} is out of range ({zero}a number >= {low:g} and <= {high:g})")
        return value

    return parse


def integer_in(low: int, high: int) -> Callable[[object], int]:
    def parse(raw: object) -> int:
        if isinstance(raw, bool):
            raise ValueError("must be an integer")
        if isinstance(raw, int):
            value = raw
        elif isinstance(raw, float):
            raise ValueError(f"must be an integer, not {raw!r}")
        else:
            parsed = ascii_int(_text(raw))
            if parsed is None:
                raise ValueError(f"{raw!r} is not an integer")
            value = parsed
        if not low <= value <= high:
            raise ValueError(f"{value} is out of range ({low} to {high})")
        return value

    return parse


def one_of(*choices: str) -> Callable[[object], str]:
    def parse(raw: object) -> str:
        value = _text(raw).lower()
        if value not in choices:
            raise ValueError(f"{raw!r} is not one of {', '.join(choices)}")
        return value

    return parse


def parse_database_url(raw: object) -> str:
    url = _text(raw)
    try:
        scheme = store_scheme(url, setting="")
    except ConfigError as exc:
        raise ValueError(exc.problem) from None
    if scheme == "sqlite" and not url.lower().startswith("sqlite:///"):
        raise ValueError(f"{url!r}: a SQLite URL is sqlite:///relative/path or sqlite:////abs/path")
    return url


def parse_redis_url(raw: object) -> str | None:
    url = _text(raw)
    if not url:
        return None
    try:
        coordinator_scheme(url, setting="")
    except ConfigError as exc:
        raise ValueError(exc.problem) from None
    return url


_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]+")
"""RFC 6750's b64token: what may follow `Bearer `."""


def parse_tokens(raw: object) -> tuple[str, ...]:
    tokens = _items(raw)
    for index, token in enumerate(tokens, start=1):
        if not _TOKEN.fullmatch(token):
            raise ValueError(
                f"token {index} has a character a bearer token cannot carry "
                "(use letters, digits and . _ ~ + / = -)"
            )
    return tuple(dict.fromkeys(tokens))


_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:([0-9]{1,5}))?")


def parse_hosts(raw: object) -> frozenset[str]:
    hosts: set[str] = set()
    for item in _items(raw):
        match = _HOST.fullmatch(item)
        if match is None or (match.group(3) is not None and not 1 <= int(match.group(3)) <= 65535):
            raise ValueError(f"{item!r} is not a host or host:port")
        hosts.add(item.lower())
    return frozenset(hosts)


def parse_bind(raw: object) -> str:
    text = _text(raw)
    if text.startswith("unix:"):
        if len(text) == len("unix:"):
            raise ValueError("unix: needs a socket path")
        return text
    match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})", text)
    if match is None or int(match.group(2)) > 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (or unix:PATH)")
    return text


def parse_queues(raw: object) -> frozenset[str] | None:
    """Comma separated queue names (or a TOML list); none given means every queue."""
    names = _items(raw)
    for name in names:
        if not is_queue_name(name):
            raise ValueError(f"{name!r} is not a queue name (1 to 100 of letters, digits, . _ -)")
    return frozenset(names) or None


def parse_app(raw: object) -> str | None:
    text = _text(raw)
    if not text:
        return None
    module, sep, attr = text.partition(":")
    dotted = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
    if not sep or not re.fullmatch(dotted, module) or not re.fullmatch(dotted, attr):
        raise ValueError(f"{text!r} is not MODULE:ATTRIBUTE (e.g. myproject.jobs:app)")
    return text


def parse_api_url(raw: object) -> str:
    text = _text(raw).rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not an http:// or https:// URL")
    if parts.query or parts.fragment:
        raise ValueError(f"{text!r}: the API URL takes no query or fragment")
    return text


def parse_token(raw: object) -> str | None:
    text = _text(raw)
    if not text:
        return None
    if not _TOKEN.fullmatch(text):
        raise ValueError(
            "has a character a bearer token cannot carry (use letters, digits and . _ ~ + / = -)"
        )
    return text


def parse_host(raw: object) -> str:
    text = _text(raw)
    if not re.fullmatch(r"[A-Za-z0-9._-]+|[0-9A-Fa-f:.]+", text):
        raise ValueError(f"{text!r} is not a host name or address")
    return text


def parse_prefix(raw: object) -> str:
    text = _text(raw)
    if not re.fullmatch(r"[A-Za-z0-9._:{}-]{1,64}", text):
        raise ValueError(f"{text!r}: use 1 to 64 of letters, digits and . _ : {{ }} -")
    return text


# --- the table ----------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Setting:
    attr: str
    """The attribute of `Settings`."""
    env: str
    parse: Callable[[object], Any]
    help: str
    flag: str | None = None
    metavar: str | None = None
    boolean: bool = False

    @property
    def key(self) -> str:
        """The key in `taskyard.toml`."""
        return self.env.removeprefix(ENV_PREFIX).lower()


@attrs.frozen(kw_only=True)
class Settings:
    """Resolved settings. Those a command did not ask for keep their defaults."""

    database_url: str | None = None
    redis_url: str | None = None
    redis_key_prefix: str = "taskyard:"
    api_tokens: tuple[str, ...] = ()
    api_open: bool = False
    """Serve without tokens on an address other machines can reach, on purpose."""
    http_allowed_hosts: frozenset[str] = frozenset()
    shell_enabled: bool = False
    lease_ttl_s: float = 10.0
    poll_interval_s: float = 1.0
    bind: str = "127.0.0.1:8000"
    api_workers: int | None = None
    """None: 1 on `memory://` (its jobs live in one process), 2 otherwise."""
    api_threads: int = 4
    api_timeout_s: int = 30
    api_graceful_timeout_s: int = 30
    api_keepalive_s: int = 5
    unknown_task: str = UNKNOWN_TASK_DEFAULT.value
    """What a submission for a task the catalog does not know gets (`catalog.UnknownTask`)."""
    log_format: str = "text"
    log_level: str = "info"
    app: str | None = None
    """`module:attribute` of an `App` whose tasks a worker runs."""
    queues: frozenset[str] | None = None
    """The queues a worker claims from; None: every queue."""
    concurrency: int = THREAD_CONCURRENCY_DEFAULT
    """Plain handlers a worker runs at once; `PROCESS_CONCURRENCY_DEFAULT` when `pool` is
    `process` and nothing set it (`resolve`)."""
    async_concurrency: int = ASYNC_CONCURRENCY_DEFAULT
    prefetch: int = PREFETCH_DEFAULT
    """Per lane, claimed jobs a worker may hold waiting for a slot (`WorkerConfig.prefetch`)."""
    """How many `async def` handlers a worker runs at once, on its event loop."""
    pool: str = "thread"
    """Where a worker runs plain handlers: `thread` or `process` (killed at a timeout)."""
    grace_period_s: float = 30.0
    leader_ttl_s: float = 10.0
    retention_succeeded_s: int = retention.SUCCEEDED_S_DEFAULT
    retention_dead_s: int = retention.DEAD_S_DEFAULT
    retention_cancelled_s: int = retention.CANCELLED_S_DEFAULT
    vacuum_every_s: float = retention.VACUUM_EVERY_S_DEFAULT
    host: str = "127.0.0.1"
    port: int = 8000
    url: str = "http://127.0.0.1:8000"
    """Where the client commands reach the API."""
    token: str | None = None
    config_file: Path | None = None
    """The `taskyard.toml` that was read, if any."""
    sources: Mapping[str, str] = attrs.field(factory=dict)
    """Where each resolved setting came from: a flag, a variable, or a key of a file."""

    def source(self, attr: str) -> str:
        """What to name in an error about `attr`: where its value was written."""
        return self.sources.get(attr, SETTINGS[attr].env)

    @property
    def retention(self) -> retention.Retention:
        """How long the scheduler keeps finished jobs (a queue's override in the store wins)."""
        return retention.Retention(
            succeeded_s=self.retention_succeeded_s,
            dead_s=self.retention_dead_s,
            cancelled_s=self.retention_cancelled_s,
        )


_SETTINGS = [
    Setting(
        attr="database_url",
        env="TASKYARD_DATABASE_URL",
        parse=parse_database_url,
        flag="--db",
        metavar="URL",
        help="the store: postgresql://..., sqlite:///path or memory://",
    ),
    Setting(
        attr="redis_url",
        env="TASKYARD_REDIS_URL",
        parse=parse_redis_url,
        flag="--redis",
        metavar="URL",
        help="the coordinator: redis://host:6379/0 (none: nothing to check or ring)",
    ),
    Setting(
        attr="redis_key_prefix",
        env="TASKYARD_REDIS_KEY_PREFIX",
        parse=parse_prefix,
        flag="--redis-prefix",
        metavar="PREFIX",
        help="prefix of every Redis key (default taskyard:)",
    ),
    Setting(
        attr="api_tokens",
        env="TASKYARD_API_TOKENS",
        parse=parse_tokens,
        help="comma separated bearer tokens; when set, every route but the open ones needs one",
    ),
    Setting(
        attr="api_open",
        env="TASKYARD_API_OPEN",
        parse=parse_bool,
        flag="--open",
        boolean=True,
        help="serve the API without tokens on a non-loopback address, on purpose (default: "
        "refuse to start)",
    ),
    Setting(
        attr="http_allowed_hosts",
        env="TASKYARD_HTTP_ALLOWED_HOSTS",
        parse=parse_hosts,
        flag="--http-allowed-hosts",
        metavar="HOSTS",
        help="comma separated host or host:port the http task may call (default: none)",
    ),
    Setting(
        attr="shell_enabled",
        env="TASKYARD_SHELL_ENABLED",
        parse=parse_bool,
        flag="--shell-enabled",
        boolean=True,
        help="allow the shell task (default: off)",
    ),
    Setting(
        attr="lease_ttl_s",
        env="TASKYARD_LEASE_TTL_SECONDS",
        parse=number_in(LEASE_TTL_S_MIN, 86_400),
        flag="--lease-ttl",
        metavar="SECONDS",
        help="lease time to live (default 10; workers extend leases every quarter of it)",
    ),
    Setting(
        attr="poll_interval_s",
        env="TASKYARD_POLL_INTERVAL_SECONDS",
        parse=number_in(POLL_INTERVAL_S_MIN, 3_600),
        flag="--poll-interval",
        metavar="SECONDS",
        help="how often idle workers look at the store when no doorbell rings (default 1)",
    ),
    Setting(
        attr="bind",
        env="TASKYARD_BIND",
        parse=parse_bind,
        flag="--bind",
        metavar="HOST:PORT",
        help="where the API listens (default 127.0.0.1:8000; unix:PATH for a socket)",
    ),
    Setting(
        attr="api_workers",
        env="TASKYARD_API_WORKERS",
        parse=integer_in(1, 64),
        flag="--workers",
        metavar="N",
        help="gunicorn worker processes (default 2; 1 on memory://, which allows no other)",
    ),
    Setting(
        attr="api_threads",
        env="TASKYARD_API_THREADS",
        parse=integer_in(1, 256),
        flag="--threads",
        metavar="N",
        help="threads per worker process (default 4)",
    ),
    Setting(
        attr="api_timeout_s",
        env="TASKYARD_API_TIMEOUT_SECONDS",
        parse=integer_in(1, 3_600),
        flag="--timeout",
        metavar="SECONDS",
        help="a worker silent this long is killed and replaced (default 30)",
    ),
    Setting(
        attr="api_graceful_timeout_s",
        env="TASKYARD_API_GRACEFUL_TIMEOUT_SECONDS",
        parse=integer_in(0, 3_600),
        flag="--graceful-timeout",
        metavar="SECONDS",
        help="on SIGTERM, how long requests in flight may finish (default 30)",
    ),
    Setting(
        attr="api_keepalive_s",
        env="TASKYARD_API_KEEPALIVE_SECONDS",
        parse=integer_in(0, 3_600),
        flag="--keepalive",
        metavar="SECONDS",
        help="how long an idle keep-alive connection stays open (default 5)",
    ),
    Setting(
        attr="app",
        env="TASKYARD_APP",
        parse=parse_app,
        flag="--app",
        metavar="MODULE:ATTR",
        help="an App whose tasks to run, as module:attribute (the built-ins always run)",
    ),
    Setting(
        attr="queues",
        env="TASKYARD_QUEUES",
        parse=parse_queues,
        flag="--queues",
        metavar="A,B",
        help="comma separated queues to take jobs from (default: every queue)",
    ),
    Setting(
        attr="concurrency",
        env="TASKYARD_CONCURRENCY",
        parse=integer_in(1, 1024),
        flag="--concurrency",
        metavar="N",
        help="plain (def) handlers run at once, each on a thread of its own (default "
        f"{THREAD_CONCURRENCY_DEFAULT}), or in a process of its own with --pool process "
        f"(default {PROCESS_CONCURRENCY_DEFAULT})",
    ),
    Setting(
        attr="async_concurrency",
        env="TASKYARD_ASYNC_CONCURRENCY",
        parse=integer_in(1, 100_000),
        flag="--async-concurrency",
        metavar="N",
        help=f"async def handlers run at once, on one event loop (default "
        f"{ASYNC_CONCURRENCY_DEFAULT})",
    ),
    Setting(
        attr="prefetch",
        env="TASKYARD_PREFETCH",
        parse=integer_in(0, 10_000),
        flag="--prefetch",
        metavar="N",
        help="per lane, claimed jobs a worker may hold waiting for a free slot, so that a "
        "slot never waits for a claim between jobs; each waits at most a quarter of the "
        f"lease TTL, then goes back to the queue (0: claim only for free slots; default "
        f"{PREFETCH_DEFAULT})",
    ),
    Setting(
        attr="pool",
        env="TASKYARD_POOL",
        parse=one_of("thread", "process"),
        flag="--pool",
        metavar="thread|process",
        help="where plain handlers run: threads (the default), or child processes that are "
        "killed at their timeout or on cancel (hard timeouts; arguments and results are "
        "pickled)",
    ),
    Setting(
        attr="grace_period_s",
        env="TASKYARD_GRACE_PERIOD_SECONDS",
        parse=number_in(0, 86_400),
        flag="--grace-period",
        metavar="SECONDS",
        help="on SIGTERM/SIGINT, how long running jobs may finish before they are handed "
        "back to run elsewhere (default 30)",
    ),
    Setting(
        attr="leader_ttl_s",
        env="TASKYARD_LEADER_TTL_SECONDS",
        parse=number_in(LEADER_TTL_S_MIN, 3_600),
        flag="--leader-ttl",
        metavar="SECONDS",
        help="scheduler leader lease TTL: a standby takes over about this long after the "
        "leader dies (default 10)",
    ),
    *(
        Setting(
            attr=f"retention_{state}_s",
            env=f"TASKYARD_RETENTION_{state.upper()}_SECONDS",
            parse=integer_in(0, retention.RETENTION_S_MAX),
            flag=f"--retention-{state}",
            metavar="SECONDS",
            help=f"the scheduler deletes {state} jobs this long after they finished; 0 keeps "
            f"them forever (default {default}; a queue's own setting wins)",
        )
        for state, default in (
            ("succeeded", retention.SUCCEEDED_S_DEFAULT),
            ("dead", retention.DEAD_S_DEFAULT),
            ("cancelled", retention.CANCELLED_S_DEFAULT),
        )
    ),
    Setting(
        attr="vacuum_every_s",
        env="TASKYARD_VACUUM_SECONDS",
        parse=number_in(retention.VACUUM_EVERY_S_MIN, 3_600, off=True),
        flag="--vacuum-every",
        metavar="SECONDS",
        help="PostgreSQL: how often the leading scheduler looks at the jobs and attempts "
        "tables' dead rows and vacuums a table with too many; 0 leaves it to autovacuum "
        "(default 10)",
    ),
    Setting(
        attr="host",
        env="TASKYARD_HOST",
        parse=parse_host,
        flag="--host",
        metavar="HOST",
        help="address the API listens on (default 127.0.0.1)",
    ),
    Setting(
        attr="port",
        env="TASKYARD_PORT",
        parse=integer_in(0, 65_535),
        flag="--port",
        metavar="PORT",
        help="port the API listens on (default 8000; 0 picks a free one)",
    ),
    Setting(
        attr="url",
        env="TASKYARD_URL",
        parse=parse_api_url,
        flag="--url",
        metavar="URL",
        help="the taskyard API (default http://127.0.0.1:8000)",
    ),
    Setting(
        attr="token",
        env="TASKYARD_TOKEN",
        parse=parse_token,
        flag="--token",
        metavar="TOKEN",
        help="bearer token for the API (prefer the environment: a flag shows in ps)",
    ),
    Setting(
        attr="unknown_task",
        env="TASKYARD_UNKNOWN_TASK",
        parse=one_of(*(answer.value for answer in UnknownTask)),
        flag="--unknown-task",
        metavar="warn|refuse",
        help="a submission for a task no worker has published: warn (accepted, with a "
        "warning: the default) or refuse (422)",
    ),
    Setting(
        attr="log_format",
        env="TASKYARD_LOG_FORMAT",
        parse=one_of("text", "json"),
        flag="--log-format",
        metavar="text|json",
        help="text (default) or json: one object per line",
    ),
    Setting(
        attr="log_level",
        env="TASKYARD_LOG_LEVEL",
        parse=one_of("debug", "info", "warning", "error"),
        flag="--log-level",
        metavar="LEVEL",
        help="debug, info (default), warning or error",
    ),
]

SETTINGS: Mapping[str, Setting] = {s.attr: s for s in _SETTINGS}
_BY_KEY: Mapping[str, Setting] = {s.key: s for s in _SETTINGS}

COMMON_SETTINGS = ("log_format", "log_level")
API_SETTINGS = (
    "database_url",
    "redis_url",
    "redis_key_prefix",
    "api_tokens",
    "api_open",
    "http_allowed_hosts",
    "shell_enabled",
    "unknown_task",
    "bind",
    "api_workers",
    "api_threads",
    "api_timeout_s",
    "api_graceful_timeout_s",
    "api_keepalive_s",
    *COMMON_SETTINGS,
)
_STORE_SETTINGS = ("database_url", "redis_url", "redis_key_prefix")
_RUNNING_SETTINGS = (
    "http_allowed_hosts",
    "shell_enabled",
    "app",
    "queues",
    "concurrency",
    "async_concurrency",
    "prefetch",
    "pool",
    "lease_ttl_s",
    "poll_interval_s",
    "grace_period_s",
)
"""What a worker pool needs, in `taskyard worker` and in `taskyard standalone`."""
WORKER_SETTINGS = (*_STORE_SETTINGS, *_RUNNING_SETTINGS, *COMMON_SETTINGS)
RETENTION_SETTINGS = (
    "retention_succeeded_s",
    "retention_dead_s",
    "retention_cancelled_s",
    "vacuum_every_s",
)
SCHEDULER_SETTINGS = (*_STORE_SETTINGS, "leader_ttl_s", *RETENTION_SETTINGS, *COMMON_SETTINGS)
STANDALONE_SETTINGS = (
    *_STORE_SETTINGS,
    *_RUNNING_SETTINGS,
    "leader_ttl_s",
    *RETENTION_SETTINGS,
    "api_tokens",
    "api_open",
    "unknown_task",
    "host",
    "port",
    *COMMON_SETTINGS,
)
CLIENT_SETTINGS = ("url", "token")
APP_SETTINGS = (*_STORE_SETTINGS, "http_allowed_hosts", "shell_enabled", "unknown_task")
"""What the Python `App` reads: where its jobs go, whom it rings, what the built-in tasks'
arguments may name and what an enqueue of a task nobody published gets (an enqueue checks
them, as the API does)."""
MIGRATE_SETTINGS = ("database_url",)


def required_database_url(settings: Settings) -> str:
    """The store URL of a command that cannot do without one."""
    if settings.database_url is None:
        setting = SETTINGS["database_url"]
        raise ConfigError(
            setting.env, f"not set (use {setting.flag} or {setting.env}: {STORE_SCHEMES})"
        )
    return settings.database_url


def _dest(setting: Setting, flag: str | None = None) -> str:
    """Where argparse keeps a setting's flag (or, with `flag`, one of its aliases)."""
    if flag is None or flag == setting.flag:
        return f"setting_{setting.attr}"
    return f"setting_{setting.attr}__{flag.lstrip('-').replace('-', '_')}"


def add_arguments(
    parser: argparse.ArgumentParser,
    attrs_used: Iterable[str],
    *,
    aliases: Mapping[str, Iterable[str]] | None = None,
) -> None:
    """Add `--config` and the flag of every named setting that has one. A flag left out of
    the command line is None, so the environment and the file get their say. `aliases`
    gives a command's older spellings of a flag (`{"database_url": ["--database-url"]}`);
    the setting's own flag wins over an alias, and an error names the one that was used."""
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=None,
        help=f"settings file (default: ${CONFIG_ENV}, else ./{CONFIG_FILE_NAME} if present)",
    )
    for attr in attrs_used:
        setting = SETTINGS[attr]
        if setting.flag is None:
            continue
        text = f"{setting.help} [{setting.env}]"
        if setting.boolean:
            parser.add_argument(
                setting.flag,
                dest=_dest(setting),
                action=argparse.BooleanOptionalAction,
                default=None,
                help=text,
            )
        else:
            parser.add_argument(
                setting.flag,
                dest=_dest(setting),
                metavar=setting.metavar,
                default=None,
                help=text,
            )
        for alias in (aliases or {}).get(attr, ()):
            parser.add_argument(
                alias,
                dest=_dest(setting, alias),
                metavar=setting.metavar,
                default=None,
                help=f"the same as {setting.flag}",
            )


def _config_file(
    flag_value: str | None, environ: Mapping[str, str], cwd: Path
) -> tuple[Path | None, str]:
    if flag_value is not None:
        return cwd / flag_value, "--config"
    if environ.get(CONFIG_ENV):
        return cwd / environ[CONFIG_ENV], CONFIG_ENV
    default = cwd / CONFIG_FILE_NAME
    return (default if default.is_file() else None), CONFIG_FILE_NAME


def read_config_file(path: Path, *, named_by: str) -> dict[str, object]:
    """The settings of a `taskyard.toml`, checked for unknown keys (not yet for values)."""
    try:
        with path.open("rb") as stream:
            data = tomllib.load(stream)
    except FileNotFoundError:
        raise ConfigError(named_by, f"no such file: {path}") from None
    except OSError as exc:
        raise ConfigError(named_by, f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: not UTF-8 ({exc.reason})") from None
    for key, value in data.items():
        if key not in _BY_KEY:
            raise ConfigError(str(path), f"unknown setting {key!r}")
        if isinstance(value, dict):
            raise ConfigError(f"{key} in {path}", "must be a value, not a table")
    return dict(data)


def _flag_value(args: argparse.Namespace | None, setting: Setting) -> tuple[str, Any]:
    """The flag (or alias) that gave `setting` a value on the command line, and the value;
    `(flag, None)` when none did. The flag and an alias of it both given is an error."""
    flag = setting.flag or setting.env
    if args is None:
        return flag, None
    prefix = _dest(setting) + "__"
    given = [
        ("--" + dest.removeprefix(prefix).replace("_", "-"), value)
        for dest, value in sorted(vars(args).items())
        if dest.startswith(prefix) and value is not None
    ]
    value = getattr(args, _dest(setting), None)
    if value is not None:
        given.insert(0, (flag, value))
    if len(given) > 1:
        raise ConfigError(given[1][0], f"the same setting as {given[0][0]}: give only one")
    return given[0] if given else (flag, None)


def resolve(
    args: argparse.Namespace | None,
    attrs_used: Iterable[str],
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    defaults: Mapping[str, Any] | None = None,
    given: Mapping[str, tuple[object, str]] | None = None,
) -> Settings:
    """Resolve the named settings: `given` (values passed in code, each with the name to
    blame, `{"database_url": (url, "App(url=...)")}`), else the flag, else the environment,
    else the file, else `defaults` (per command), else the `Settings` default. A value
    given as None counts as not given. Raises `ConfigError` naming the first bad value by
    where it was written."""
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    path, named_by = _config_file(getattr(args, "config", None), environ, cwd)
    from_file = read_config_file(path, named_by=named_by) if path is not None else {}
    values: dict[str, Any] = dict(defaults or {})
    sources: dict[str, str] = {}
    for attr in attrs_used:
        setting = SETTINGS[attr]
        raw: object = None
        source = ""
        flag, flag_value = _flag_value(args, setting)
        value_given, named = (given or {}).get(attr, (None, ""))
        if value_given is not None:
            raw, source = value_given, named
        elif flag_value is not None:
            raw, source = flag_value, flag
        elif environ.get(setting.env, "").strip():
            raw, source = environ[setting.env], setting.env
        elif setting.key in from_file:
            raw, source = from_file[setting.key], f"{setting.key} in {path}"
        if not source:
            continue
        try:
            values[attr] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(source, str(exc)) from None
        sources[attr] = source
    if values.get("pool") == "process" and "concurrency" not in values:
        values["concurrency"] = PROCESS_CONCURRENCY_DEFAULT
    return Settings(config_file=path, sources=sources, **values)


__all__ = [
    "API_SETTINGS",
    "APP_SETTINGS",
    "CLIENT_SETTINGS",
    "COMMON_SETTINGS",
    "COORDINATOR_SCHEMES",
    "MIGRATE_SETTINGS",
    "SCHEDULER_SETTINGS",
    "SETTINGS",
    "STANDALONE_SETTINGS",
    "STORE_SCHEMES",
    "WORKER_SETTINGS",
    "ConfigError",
    "Setting",
    "Settings",
    "add_arguments",
    "coordinator_scheme",
    "required_database_url",
    "resolve",
    "sqlite_path",
    "store_scheme",
]
