"""`RedisCoordinator`: the `Coordinator` port on Redis (redis-py).

Redis holds nothing that cannot be rebuilt. Every key lives under one prefix
(`taskyard:` unless configured); `docs/coordinator.md` lists them with their TTLs.

* **Leader lease.** `P:leader` holds `"<term>|<token>|<holder>"` with a PX expiry. It is
  taken with `SET NX PX` inside a Lua script that also draws the term, and renewed or
  released by Lua that compares the whole value: only the coordinator instance that took
  the lease (it alone knows the random token) can extend or drop it. A paused holder
  that wakes after its lease passed finds another value and gets nothing.
* **Terms only grow**, even across a FLUSHALL or a restart without persistence. A new
  term is the greatest of: the last term granted (`P:term`) + 1, the Redis server's clock
  in microseconds since the epoch, and the greatest term this instance has seen + 1. With
  the counter lost, the server's clock still moves forward past every earlier grant
  (terms are granted far less often than once a microsecond), so a term goes backwards
  only if Redis loses its data *and* its clock steps back further than the time since
  the last grant *and* no live participant remembers a larger term.
* **Registries.** A worker (scheduler) is a JSON record under `P:worker:<id>`
  (`P:scheduler:<id>`) with a PX expiry of the registry TTL, indexed in a sorted set by
  expiry (Redis time). Listing returns the records whose key is still there.
* **Doorbells.** A ring of queue `q` sets the pending flag `P:bell:<q>` (and `P:bell:*`,
  for waiters of every queue) and pushes a wake-up onto the private list of every waiter
  registered in `P:waiters:<q>` (or `P:waiters:*`). A waiter registers, finding and
  clearing a pending flag in the same script (so a ring while nobody waits is kept), then
  blocks with BLPOP on its own list. Every idle waiter is woken, not just one; a woken
  waiter clears the pending flags of its queues, since it is about to look at the store.

* **The finished bell.** `P:finished` is a stream: an announcement appends the ids of
  jobs that reached a final state (`FINISHED_IDS_PER_ENTRY` to an entry), trimmed to about
  `FINISHED_ENTRIES_MAX` entries and expiring `bell_ttl_s` after the last one. A mark is
  a stream id; a waiter reads on (XREAD BLOCK) from its mark, so an announcement made
  between its look at the store and its wait is heard. No key per job: a waiter keeps its
  job ids to itself and skips the entries that do not name them.

Every Redis error (refused, reset, timed out, LOADING, READONLY, ...) comes out as
`CoordinatorUnavailable`; callers degrade to polling the store.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Collection, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, cast
from uuid import UUID

import attrs
import redis
from redis.backoff import ConstantBackoff
from redis.connection import ConnectionPool, UnixDomainSocketConnection, parse_url
from redis.retry import Retry

from taskyard.adapters.bells import Bells
from taskyard.domain.errors import CoordinatorUnavailable
from taskyard.domain.ports import (
    SCHEDULER_BELL,
    Heard,
    Leadership,
    SchedulerInfo,
    WorkerInfo,
)
from taskyard.domain.timefmt import from_epoch_s

KEY_PREFIX_DEFAULT = "taskyard:"
FINISHED_IDS_PER_ENTRY = 100
FINISHED_ENTRIES_MAX = 1000
"""About this many entries of the finished bell are kept (a waiter further behind has
missed some): at most about 3.7 MB of ids."""
FINISHED_MARK_FIRST = "0-0"
ANY_QUEUE = "*"
"""The doorbell channel of waiters on every queue (no queue name contains `*`)."""


@attrs.frozen(kw_only=True)
class RedisSettings:
    """How to talk to Redis. The URL's own query options (`?socket_timeout=0.5`) win over
    the timeouts here; the key prefix and the doorbell timings are ours alone."""

    key_prefix: str = KEY_PREFIX_DEFAULT
    socket_timeout_s: float = 1.0
    """The longest a command may wait for its answer (a blocking wait gets `block_max_s`
    more)."""
    connect_timeout_s: float = 1.0
    retries: int = 1
    """Retries of a command after a connection error, at once: one is enough to step over
    a pooled connection that died with a restarted server."""
    block_max_s: float = 5.0
    """The longest a single BLPOP blocks; a longer wait re-registers after each."""
    bell_ttl_s: float = 60.0
    """How long a pending ring, or a wake-up nobody took, is kept."""
    waiter_slack_s: float = 5.0
    """How long past its own timeout a waiter's registration is trusted."""
    max_connections: int | None = None
    bells_in_background: bool = False
    """Send rings and finished announcements from a thread of their own (`bells.Bells`),
    so that the caller does not wait on Redis for them; `bootstrap` turns it on for every
    process (an app's enqueue, a worker's reports, the scheduler's promotions)."""

    def __attrs_post_init__(self) -> None:
        assert self.key_prefix, "a key prefix is required"
        assert self.socket_timeout_s > 0 and self.connect_timeout_s > 0
        assert self.retries >= 0
        assert self.block_max_s > 0 and self.bell_ttl_s > 0 and self.waiter_slack_s > 0


# --- Lua --------------------------------------------------------------------------------
# Redis >= 6.2 (effects replication makes TIME before writes legal; BLPOP takes a float).

_NOW_MS = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: leader, term. ARGV: mine (the value we hold, or ""), candidate, token, ttl_ms, floor.
# Returns {status, value, pttl_ms, now_ms}; status 0: another holds it, 1: renewed,
# 2: acquired.
_CAMPAIGN = (
    _NOW_MS
    + """
local current = redis.call('GET', KEYS[1])
if current then
  if ARGV[1] ~= '' and current == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
    return {1, current, redis.call('PTTL', KEYS[1]), now_ms}
  end
  return {0, current, redis.call('PTTL', KEYS[1]), now_ms}
end
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local term = math.max(last + 1, now_us, tonumber(ARGV[5]) + 1)
local term_text = string.format('%d', term)
redis.call('SET', KEYS[2], term_text)
local value = term_text .. '|' .. ARGV[3] .. '|' .. ARGV[2]
redis.call('SET', KEYS[1], value, 'NX', 'PX', ARGV[4])
return {2, value, tonumber(ARGV[4]), now_ms}
"""
)

# KEYS: leader. ARGV: the value we hold.
_RESIGN = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

# KEYS: leader. Returns {value or false, pttl_ms, now_ms}.
_LEADER = (
    _NOW_MS
    + """
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1]), now_ms}
"""
)

# KEYS: record, index. ARGV: id, json, ttl_ms.
_REGISTER = (
    _NOW_MS
    + """
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[2], string.format('%d', now_ms + tonumber(ARGV[3])), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. string.format('%d', now_ms))
return 1
"""
)

# KEYS: index. ARGV: record key prefix. Returns the live records.
_LIST = """
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local value = redis.call('GET', ARGV[1] .. id)
  if value then
    table.insert(out, value)
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
"""

# ARGV: prefix, ttl_ms, channel... Returns how many waiters were woken.
_RING = (
    _NOW_MS
    + """
local prefix = ARGV[1]
local ttl = ARGV[2]
local woken = {}
local count = 0
local function ring(channel)
  local waiters = prefix .. 'waiters:' .. channel
  redis.call('ZREMRANGEBYSCORE', waiters, '-inf', '(' .. string.format('%d', now_ms))
  for _, waiter in ipairs(redis.call('ZRANGE', waiters, 0, -1)) do
    if not woken[waiter] then
      woken[waiter] = true
      count = count + 1
      local inbox = prefix .. 'wake:' .. waiter
      redis.call('RPUSH', inbox, '1')
      redis.call('PEXPIRE', inbox, ttl)
    end
  end
  redis.call('SET', prefix .. 'bell:' .. channel, '1', 'PX', ttl)
end
for i = 3, #ARGV do
  ring(ARGV[i])
end
return count
"""
)

# ARGV: prefix, waiter, registration_ms, channel... Returns 1 (a ring was pending: taken)
# or 0 (registered: BLPOP the waiter's inbox next).
_ENTER = (
    _NOW_MS
    + """
local prefix = ARGV[1]
local pending = false
for i = 4, #ARGV do
  if redis.call('EXISTS', prefix .. 'bell:' .. ARGV[i]) == 1 then
    pending = true
  end
end
if pending then
  for i = 4, #ARGV do
    redis.call('DEL', prefix .. 'bell:' .. ARGV[i])
  end
  return 1
end
local until_text = string.format('%d', now_ms + tonumber(ARGV[3]))
for i = 4, #ARGV do
  local waiters = prefix .. 'waiters:' .. ARGV[i]
  redis.call('ZREMRANGEBYSCORE', waiters, '-inf', '(' .. string.format('%d', now_ms))
  redis.call('ZADD', waiters, until_text, ARGV[2])
end
return 0
"""
)

# ARGV: prefix, waiter, rung ('1' or '0'), channel...
_LEAVE = """
local prefix = ARGV[1]
for i = 4, #ARGV do
  redis.call('ZREM', prefix .. 'waiters:' .. ARGV[i], ARGV[2])
  if ARGV[3] == '1' then
    redis.call('DEL', prefix .. 'bell:' .. ARGV[i])
  end
end
redis.call('DEL', prefix .. 'wake:' .. ARGV[2])
return 1
"""


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _at(now_ms: int, pttl_ms: int) -> datetime | None:
    if pttl_ms < 0:
        return None
    return from_epoch_s(now_ms / 1000) + timedelta(milliseconds=pttl_ms)


@attrs.frozen
class _Held:
    """A leader lease this instance took: the exact value it wrote."""

    value: str
    term: int


def _parse_lease(value: str) -> tuple[int, str]:
    """`"<term>|<token>|<holder>"` into `(term, holder)`."""
    term_text, _token, holder = value.split("|", 2)
    return int(term_text), holder


class RedisCoordinator:
    def __init__(self, url: str, *, settings: RedisSettings | None = None) -> None:
        self.settings = settings or RedisSettings()
        s = self.settings
        options: dict[str, Any] = {
            "socket_timeout": s.socket_timeout_s,
            "socket_connect_timeout": s.connect_timeout_s,
            "socket_keepalive": True,
            "retry": Retry(ConstantBackoff(0.0), s.retries),
            "decode_responses": True,
        }
        if s.max_connections is not None:
            options["max_connections"] = s.max_connections
        url_options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        options.update(url_options)  # the URL's own options win
        if options.get("connection_class") is UnixDomainSocketConnection:
            options.pop("socket_keepalive", None)  # a TCP option; a Unix socket refuses it
        command_timeout_s = float(options.get("socket_timeout") or s.socket_timeout_s)
        pool = ConnectionPool(**options)
        try:
            pool.connection_class(**pool.connection_kwargs)  # checks the options; no I/O
        except TypeError as exc:
            raise ValueError(f"an option of the Redis URL is not understood: {exc}") from None
        self._client = redis.Redis(connection_pool=pool)
        # The blocking connection waits up to `block_max_s` for a ring, and never retries: a
        # broken wait is reported at once, so the caller falls back to polling.
        blocking = dict(
            options,
            socket_timeout=command_timeout_s + s.block_max_s,
            retry=Retry(ConstantBackoff(0.0), 0),
        )
        self._blocking = redis.Redis(connection_pool=ConnectionPool(**blocking))
        p = s.key_prefix
        self._prefix = p
        self._leader_key = f"{p}leader"
        self._finished_key = f"{p}finished"
        self._term_key = f"{p}term"
        self._campaign = self._client.register_script(_CAMPAIGN)
        self._resign = self._client.register_script(_RESIGN)
        self._leader = self._client.register_script(_LEADER)
        self._register = self._client.register_script(_REGISTER)
        self._list = self._client.register_script(_LIST)
        self._ring = self._client.register_script(_RING)
        self._enter = self._client.register_script(_ENTER)
        self._leave = self._client.register_script(_LEAVE)
        self._held: dict[str, _Held] = {}
        self._term_seen = 0
        self._closed = False
        self._bells = (
            Bells(ring=self._ring_now, announce=self._announce_now)
            if s.bells_in_background
            else None
        )

    def close(self) -> None:
        """Drop the connections. A call still under way on another thread (a doorbell wait)
        fails with `CoordinatorUnavailable`. Bells still pending are sent first (within
        `bells.CLOSE_WAIT_S`)."""
        if self._bells is not None:
            self._bells.close()
        self._closed = True
        self._client.close()
        self._blocking.close()
        self._client.connection_pool.disconnect()
        self._blocking.connection_pool.disconnect()

    @contextlib.contextmanager
    def _talking(self, doing: str) -> Iterator[None]:
        try:
            yield
        except (redis.RedisError, OSError) as exc:
            raise CoordinatorUnavailable(message=f"redis: {doing}: {exc}") from exc
        except Exception as exc:
            if not self._closed:
                raise
            # redis-py reading from a socket that close() took away mid-call.
            raise CoordinatorUnavailable(message=f"redis: {doing}: closed") from exc

    # --- leader lease -------------------------------------------------------------------

    def campaign(self, *, candidate: str, ttl_s: float) -> Leadership | None:
        assert ttl_s > 0, ttl_s
        held = self._held.get(candidate)
        token = secrets.token_hex(8)
        with self._talking("campaign"):
            reply = self._campaign(
                keys=[self._leader_key, self._term_key],
                args=[held.value if held else "", candidate, token, _ms(ttl_s), self._term_seen],
            )
        status, value, pttl_ms, now_ms = (int(reply[0]), str(reply[1]), int(reply[2]), reply[3])
        term, holder = _parse_lease(value)
        self._term_seen = max(self._term_seen, term)
        if status == 0:
            self._held.pop(candidate, None)
            return None
        assert holder == candidate, (holder, candidate)
        self._held[candidate] = _Held(value=value, term=term)
        return Leadership(holder=candidate, term=term, expires_at=_at(int(now_ms), pttl_ms))

    def resign(self, *, candidate: str) -> bool:
        held = self._held.pop(candidate, None)
        if held is None:
            return False
        with self._talking("resign"):
            return bool(self._resign(keys=[self._leader_key], args=[held.value]))

    def leader(self) -> Leadership | None:
        with self._talking("leader"):
            value, pttl_ms, now_ms = self._leader(keys=[self._leader_key])
        if not value:
            return None
        term, holder = _parse_lease(str(value))
        self._term_seen = max(self._term_seen, term)
        return Leadership(holder=holder, term=term, expires_at=_at(int(now_ms), int(pttl_ms)))

    # --- registries ---------------------------------------------------------------------

    def _record_key(self, kind: str, ident: str) -> str:
        return f"{self._prefix}{kind}:{ident}"

    def _index_key(self, kind: str) -> str:
        return f"{self._prefix}{kind}s"

    def _put(self, kind: str, ident: str, record: dict[str, Any], ttl_s: float) -> None:
        assert ttl_s > 0, ttl_s
        with self._talking(f"register {kind}"):
            self._register(
                keys=[self._record_key(kind, ident), self._index_key(kind)],
                args=[ident, json.dumps(record, separators=(",", ":")), _ms(ttl_s)],
            )

    def _drop(self, kind: str, ident: str) -> None:
        with self._talking(f"unregister {kind}"):
            pipe = self._client.pipeline(transaction=True)
            pipe.delete(self._record_key(kind, ident))
            pipe.zrem(self._index_key(kind), ident)
            pipe.execute()

    def _all(self, kind: str) -> list[dict[str, Any]]:
        with self._talking(f"list {kind}s"):
            values = self._list(keys=[self._index_key(kind)], args=[f"{self._prefix}{kind}:"])
        records = [cast(dict[str, Any], json.loads(v)) for v in values]
        return sorted(records, key=lambda r: str(r["id"]))

    def register_worker(self, info: WorkerInfo, *, ttl_s: float) -> None:
        record = {
            "id": info.id,
            "host": info.host,
            "pid": info.pid,
            "queues": list(info.queues),
            "concurrency": info.concurrency,
            "started_at": info.started_at.isoformat(),
            "last_heartbeat_at": info.last_heartbeat_at.isoformat(),
            "running_job_ids": [str(j) for j in info.running_job_ids],
        }
        self._put("worker", info.id, record, ttl_s)

    def unregister_worker(self, worker_id: str) -> None:
        self._drop("worker", worker_id)

    def workers(self) -> list[WorkerInfo]:
        return [
            WorkerInfo(
                id=r["id"],
                host=r["host"],
                pid=int(r["pid"]),
                queues=tuple(r["queues"]),
                concurrency=int(r["concurrency"]),
                started_at=datetime.fromisoformat(r["started_at"]),
                last_heartbeat_at=datetime.fromisoformat(r["last_heartbeat_at"]),
                running_job_ids=tuple(UUID(j) for j in r["running_job_ids"]),
            )
            for r in self._all("worker")
        ]

    def register_scheduler(self, info: SchedulerInfo, *, ttl_s: float) -> None:
        record = {
            "id": info.id,
            "host": info.host,
            "pid": info.pid,
            "last_heartbeat_at": info.last_heartbeat_at.isoformat(),
        }
        self._put("scheduler", info.id, record, ttl_s)

    def unregister_scheduler(self, scheduler_id: str) -> None:
        self._drop("scheduler", scheduler_id)

    def schedulers(self) -> list[SchedulerInfo]:
        records = self._all("scheduler")
        lead = self.leader()
        return [
            SchedulerInfo(
                id=r["id"],
                host=r["host"],
                pid=int(r["pid"]),
                last_heartbeat_at=datetime.fromisoformat(r["last_heartbeat_at"]),
                leader=lead is not None and lead.holder == r["id"],
                term=lead.term if lead is not None and lead.holder == r["id"] else None,
            )
            for r in records
        ]

    # --- doorbells ----------------------------------------------------------------------

    def ring(self, queues: Sequence[str]) -> None:
        if not queues:
            return
        assert ANY_QUEUE not in queues, "`*` is not a queue name"
        if self._bells is not None:
            self._bells.ring(queues)
        else:
            self._ring_now(queues)

    def flush_bells(self, timeout_s: float = 1.0) -> bool:
        """Wait until the rings and announcements asked so far are sent (at once without
        `bells_in_background`): True when they are."""
        return self._bells is None or self._bells.flush(timeout_s)

    def _ring_now(self, queues: Sequence[str]) -> None:
        # A waiter on every queue hears every queue's ring, and not the scheduler's bell.
        channels = [*queues, ANY_QUEUE] if set(queues) - {SCHEDULER_BELL} else list(queues)
        with self._talking("ring"):
            self._ring(args=[self._prefix, _ms(self.settings.bell_ttl_s), *channels])

    def wait(self, queues: Sequence[str] | None, *, timeout_s: float) -> bool:
        # With no queue at all nothing can ring: the wait simply lasts its timeout.
        channels = [ANY_QUEUE] if queues is None else sorted(set(queues))
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            remaining_s = deadline - time.monotonic()
            block_s = min(remaining_s, self.settings.block_max_s)
            if self._wait_once(channels, block_s):
                return True
            if remaining_s <= self.settings.block_max_s:
                return False

    def _wait_once(self, channels: list[str], block_s: float) -> bool:
        waiter = secrets.token_hex(8)
        registration_ms = _ms(max(block_s, 0.0) + self.settings.waiter_slack_s)
        with self._talking("wait"):
            if self._enter(args=[self._prefix, waiter, registration_ms, *channels]):
                return True
            if block_s < 0.001:
                rung = False
            else:
                # Redis reads a BLPOP timeout of 0 as "forever": block_s is at least 1 ms.
                popped = self._blocking.blpop([f"{self._prefix}wake:{waiter}"], timeout=block_s)
                rung = popped is not None
            self._leave(args=[self._prefix, waiter, "1" if rung else "0", *channels])
        return rung

    # --- the finished bell --------------------------------------------------------------

    def announce_finished(self, job_ids: Sequence[UUID]) -> None:
        if not job_ids:
            return
        ids = [str(job_id) for job_id in job_ids]
        if self._bells is not None:
            self._bells.announce(ids)
        else:
            self._announce_now(ids)

    def _announce_now(self, ids: Sequence[str]) -> None:
        with self._talking("announce finished"):
            pipe = self._client.pipeline(transaction=False)
            for start in range(0, len(ids), FINISHED_IDS_PER_ENTRY):
                chunk = ",".join(ids[start : start + FINISHED_IDS_PER_ENTRY])
                pipe.xadd(
                    self._finished_key,
                    {"ids": chunk},
                    maxlen=FINISHED_ENTRIES_MAX,
                    approximate=True,
                )
            pipe.pexpire(self._finished_key, _ms(self.settings.bell_ttl_s))
            pipe.execute()

    def finished_mark(self) -> str:
        with self._talking("finished mark"):
            last = self._client.xrevrange(self._finished_key, count=1)
        return str(last[0][0]) if last else FINISHED_MARK_FIRST

    def wait_finished(self, job_ids: Collection[UUID], *, after: str, timeout_s: float) -> Heard:
        wanted = {str(job_id) for job_id in job_ids}
        deadline = time.monotonic() + max(0.0, timeout_s)
        mark = after
        while True:
            # Redis reads a BLOCK of 0 as "forever": at least 1 ms.
            block_s = min(max(deadline - time.monotonic(), 0.001), self.settings.block_max_s)
            with self._talking("wait finished"):
                reply = cast(
                    list[tuple[str, list[tuple[str, dict[str, str]]]]],
                    self._blocking.xread(
                        {self._finished_key: mark}, count=FINISHED_ENTRIES_MAX, block=_ms(block_s)
                    ),
                )
            heard: set[UUID] = set()
            for _key, entries in reply or ():
                for entry_id, fields in entries:
                    mark = entry_id
                    named = fields.get("ids", "").split(",")
                    heard.update(UUID(job_id) for job_id in named if job_id in wanted)
            if heard or time.monotonic() >= deadline:
                return Heard(finished=frozenset(heard), mark=mark)
