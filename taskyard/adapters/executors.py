"""Executors (how a claimed job's handler is run) and the built-in tasks.

* `InlineExecutor` runs the handler at once, on the caller's thread: `taskyard.testing`.
* `ThreadExecutor` runs handlers on a pool of threads: the production worker.

Both hand the outcome to a callback, which the driver forwards to `Worker.handler_finished`.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from taskyard.domain.builtins import BuiltinPolicy
from taskyard.domain.context import (
    Cancelled,
    HandlerResult,
    JobContext,
    PermanentFailure,
    TaskSpec,
    invoke,
)
from taskyard.domain.model import Job
from taskyard.domain.ports import TaskRegistry
from taskyard.domain.retry import RetryPolicy
from taskyard.domain.storable import escape_text

OUTPUT_LEN_MAX = 64 * 1024

Finished = Callable[[HandlerResult], None]
Around = Callable[[Job], AbstractContextManager[object]]
"""Entered around each handler run on its thread (the runtime puts the job's ids on every
log line written inside)."""


def _spec_for(registry: TaskRegistry, job: Job) -> TaskSpec:
    spec = registry.get(job.task)
    assert spec is not None, f"claimed a job of unknown task {job.task!r}"
    return spec


class InlineExecutor:
    def __init__(self, registry: TaskRegistry, on_finished: Finished) -> None:
        self._registry = registry
        self._on_finished = on_finished

    def start(self, job: Job, context: JobContext) -> None:
        self._on_finished(invoke(_spec_for(self._registry, job), job, context))


class ThreadExecutor:
    """A fixed pool of handler threads fed from one queue.

    Threads are started as work needs them, up to `threads`, and then live until
    `shutdown`. Nothing per job but the queue entry: a no-op handler's whole trip (queue,
    run, callback) is a few microseconds of Python, which matters at thousands of jobs per
    second (a `concurrent.futures` pool builds a future with its own condition and lock for
    every call)."""

    def __init__(
        self,
        registry: TaskRegistry,
        on_finished: Finished,
        *,
        threads: int,
        around: Around | None = None,
    ) -> None:
        assert threads >= 1, threads
        self._registry = registry
        self._on_finished = on_finished
        self._around = around
        self._threads_max = threads
        self._threads: list[threading.Thread] = []
        self._work: queue.SimpleQueue[tuple[TaskSpec, Job, JobContext] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._running = 0
        self._idle = 0
        self._closed = False

    def start(self, job: Job, context: JobContext) -> None:
        spec = _spec_for(self._registry, job)
        with self._lock:
            assert not self._closed, "the executor was shut down"
            self._running += 1
            grow = self._idle <= 0 and len(self._threads) < self._threads_max
            if grow:
                thread = threading.Thread(
                    target=self._serve,
                    name=f"taskyard-handler-{len(self._threads)}",
                    daemon=True,
                )
                self._threads.append(thread)
            else:
                self._idle -= 1
        if grow:
            thread.start()
        self._work.put((spec, job, context))

    def _serve(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            spec, job, context = item
            with nullcontext() if self._around is None else self._around(job):
                result = None if self._closed else invoke(spec, job, context)
                with self._lock:
                    self._running -= 1
                    self._idle += 1
                if result is not None:
                    self._on_finished(result)

    @property
    def running(self) -> int:
        """Handlers started and not yet returned."""
        with self._lock:
            return self._running

    def shutdown(self, *, wait: bool) -> None:
        """Run nothing more (work still queued is dropped; its leases are handed back or
        lapse) and let the threads end once their handlers return."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._work.put(None)
        if wait:
            for thread in threads:
                thread.join()


# --- built-in tasks -----------------------------------------------------------------------


class TaskFailed(Exception):
    """A built-in task failed in a way worth retrying."""


def _text(raw: bytes) -> str:
    """Output bytes as text a store can hold: bad UTF-8 replaced, NUL escaped, cut."""
    return escape_text(raw.decode("utf-8", "replace"))[:OUTPUT_LEN_MAX]


def sleep_task(ctx: JobContext, seconds: float = 0, fail: bool = False, fail_times: int = 0) -> Any:
    """Sleep (waking at once on cancellation), then succeed, or fail when asked to."""
    if seconds and ctx.wait(float(seconds)):
        raise Cancelled("cancelled while sleeping")
    ctx.raise_if_cancelled()
    if fail:
        raise TaskFailed("asked to fail")
    if ctx.attempt <= fail_times:
        raise TaskFailed(f"asked to fail attempts 1 to {fail_times}; this is attempt {ctx.attempt}")
    return {"slept_seconds": seconds}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def make_http_task(policy: BuiltinPolicy) -> Callable[..., Any]:
    opener = urllib.request.build_opener(_NoRedirect)

    def http_task(
        ctx: JobContext,
        url: str,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        timeout_seconds: float = 30,
    ) -> Any:
        """Call a URL on an allowed host: 2xx succeeds; 5xx, 429 and network errors retry;
        any other status ends the job dead. Redirects are not followed."""
        if not policy.host_allowed(url):
            raise PermanentFailure(f"host of {url} is not in TASKYARD_HTTP_ALLOWED_HOSTS")
        data: bytes | None = None
        send_headers = dict(headers or {})
        if body is not None:
            if isinstance(body, str):
                data = body.encode()
            else:
                data = json.dumps(body).encode()
                send_headers.setdefault("Content-Type", "application/json")
        request = urllib.request.Request(
            url, data=data, headers=send_headers, method=method.upper()
        )
        try:
            with opener.open(request, timeout=float(timeout_seconds)) as response:
                status = response.status
                text = _text(response.read(OUTPUT_LEN_MAX))
        except urllib.error.HTTPError as exc:
            status = exc.code
            text = _text(exc.read(OUTPUT_LEN_MAX))
            if status >= 500 or status == 429:
                raise TaskFailed(f"HTTP {status}: {text[:200]}") from None
            raise PermanentFailure(f"HTTP {status}: {text[:200]}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise TaskFailed(f"network error: {exc}") from None
        if not 200 <= status < 300:
            raise PermanentFailure(f"HTTP {status} (redirects are not followed)")
        return {"status": status, "body": text}

    return http_task


def make_shell_task(policy: BuiltinPolicy) -> Callable[..., Any]:
    def shell_task(
        ctx: JobContext,
        argv: list[str],
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout_seconds: float = 60,
    ) -> Any:
        """Run argv (no shell); a non-zero exit fails the attempt."""
        if not policy.shell_enabled:
            raise PermanentFailure("the shell task is disabled (TASKYARD_SHELL_ENABLED=1)")
        try:
            done = subprocess.run(
                list(argv),
                cwd=cwd,
                env=dict(env) if env is not None else None,
                capture_output=True,
                timeout=float(timeout_seconds),
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise TaskFailed(f"timed out after {timeout_seconds} s") from None
        except OSError as exc:
            raise PermanentFailure(f"cannot run {argv[0]!r}: {exc}") from None
        stderr = _text(done.stderr)
        if done.returncode != 0:
            raise TaskFailed(f"exit code {done.returncode}: {stderr[-500:]}")
        return {
            "exit_code": done.returncode,
            "stdout": _text(done.stdout),
            "stderr": stderr,
        }

    return shell_task


def builtin_tasks(policy: BuiltinPolicy) -> dict[str, TaskSpec]:
    quick = RetryPolicy()
    return {
        "sleep": TaskSpec(name="sleep", handler=sleep_task, backoff=quick),
        "http": TaskSpec(name="http", handler=make_http_task(policy), backoff=quick),
        "shell": TaskSpec(name="shell", handler=make_shell_task(policy), backoff=quick),
    }
