"""PostgreSQL databases and Redis databases of the benchmark's own, and what the header
of the report says about the machine and the servers.

* PostgreSQL: each system run creates a database `peers_<system>_<hex>` on the server of
  `--database-url` and drops it afterwards. The server's settings are left alone; the
  report prints `fsync` and `synchronous_commit` as they are.
* Redis: each system run claims a database number that is empty (by `DBSIZE`), with a
  marker key set with NX, so that every system keeps its default key names. Afterwards the
  keys of that database, all written by the run, are deleted one by one (never FLUSHDB or
  FLUSHALL on a shared server).
"""

from __future__ import annotations

import contextlib
import os
import platform
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

CLAIM_KEY = "taskyard-peers:claim"


class ServiceError(Exception):
    pass


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


@contextlib.contextmanager
def postgres_database(admin_url: str, system: str) -> Iterator[str]:
    """A fresh database; its URL; dropped at the end, whatever happened."""
    import psycopg
    from psycopg import sql

    name = f"peers_{system}_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _with_path(admin_url, f"/{name}")
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def parse_dbs(text: str) -> list[int]:
    """`1-15` or `3,5,7`: Redis database numbers to try.

    >>> parse_dbs("1-3,9")
    [1, 2, 3, 9]
    """
    numbers: list[int] = []
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        numbers.extend(range(int(low), int(high or low) + 1))
    assert numbers and all(0 <= n <= 1_000 for n in numbers), f"bad database numbers {text!r}"
    return numbers


@contextlib.contextmanager
def redis_database(base_url: str, dbs: Sequence[int]) -> Iterator[str]:
    """The URL of an empty Redis database claimed for this run; its keys deleted at the
    end."""
    import redis

    token = secrets.token_hex(8)
    for db in dbs:
        url = _with_path(base_url, f"/{db}")
        client = redis.Redis.from_url(url, socket_timeout=10)
        try:
            if client.dbsize() != 0 or not client.set(CLAIM_KEY, token, nx=True):
                continue
            if client.dbsize() != 1:  # someone else started writing here meanwhile
                client.delete(CLAIM_KEY)
                continue
        except redis.RedisError:
            client.close()
            raise
        try:
            yield url
        finally:
            keys = list(client.scan_iter(count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start : start + 500])
            client.close()
        return
    raise ServiceError(f"no empty Redis database among {list(dbs)} at {base_url}")


def postgres_facts(admin_url: str) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:

        def show(name: str) -> str:
            row = conn.execute(f"SHOW {name}").fetchone()
            return str(row[0]) if row else "?"

        return {
            "version": show("server_version"),
            "fsync": show("fsync"),
            "synchronous_commit": show("synchronous_commit"),
        }


def redis_facts(base_url: str) -> dict[str, Any]:
    import redis

    client = redis.Redis.from_url(base_url, socket_timeout=10)
    try:
        facts: dict[str, Any] = {"version": client.info("server").get("redis_version", "?")}
        try:
            config = client.config_get("save") | client.config_get("appendonly")
            facts["save"] = config.get("save", "?")
            facts["appendonly"] = config.get("appendonly", "?")
        except redis.RedisError:  # CONFIG may be renamed or off: say so, change nothing
            facts["save"] = facts["appendonly"] = "unknown"
        info = client.info("persistence")
        facts["rdb_bgsave_in_progress"] = info.get("rdb_bgsave_in_progress")
        return facts
    finally:
        client.close()


def _first(path: str, key: str) -> str | None:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key:
                return value.strip()
    return None


def machine() -> dict[str, Any]:
    mem_kb = _first("/proc/meminfo", "MemTotal")
    return {
        "cpu": _first("/proc/cpuinfo", "model name") or platform.processor() or "?",
        "cores": os.cpu_count(),
        "ram_gib": round(int(mem_kb.split()[0]) / 1024**2, 1) if mem_kb else None,
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "unix_dgram_qlen": _read_int("/proc/sys/net/unix/max_dgram_qlen"),
    }


def _read_int(path: str) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(Path(path).read_text().strip())
    return None
