"""Executors (how a claimed job's handler is run) and the built-in tasks.

* `InlineExecutor` runs the handler at once, on the caller's thread: `taskyard.testing`.
* `ThreadExecutor` runs plain handlers on a pool of threads: the production worker's default.
* `AsyncExecutor` runs `async def` handlers as tasks of one event loop, on a thread of its
  own; a timeout or a cancel cancels the handler's task (`asyncio.CancelledError`).
* `ProcessExecutor` (`taskyard.adapters.processes`) runs plain handlers in child processes
  that are killed at a timeout or a cancel: `taskyard worker --pool process`.
* `LaneExecutor` sends each job to the executor of its lane (plain or `async def`): the
  worker counts the two lanes' slots apart (`WorkerConfig.async_concurrency`).

Each hands the outcome to a callback, which the driver forwards to `Worker.handler_finished`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol
from uuid import UUID

from taskyard.domain.builtins import BuiltinPolicy
from taskyard.domain.context import (
    Cancelled,
    HandlerResult,
    JobContext,
    PermanentFailure,
    TaskSpec,
    invoke,
    invoke_async,
    stopped_result,
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


_Key = tuple[UUID, int]
"""A running attempt: its job's id and its attempt number."""


def _spec_for(registry: TaskRegistry, job: Job) -> TaskSpec:
    spec = registry.get(job.task)
    assert spec is not None, f"claimed a job of unknown task {job.task!r}"
    return spec


def run_coroutine_inline(spec: TaskSpec, job: Job, context: JobContext) -> HandlerResult:
    """Await an `async def` handler to its end on the calling thread: on an event loop of
    its own, or, when the caller already runs one (an async test), on a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(invoke_async(spec, job, context))
    results: list[HandlerResult] = []
    helper = threading.Thread(
        target=lambda: results.append(asyncio.run(invoke_async(spec, job, context))),
        name="taskyard-inline-async",
    )
    helper.start()
    helper.join()
    assert results, "the handler's loop ended without an outcome"
    return results[0]


class InlineExecutor:
    """Runs each handler to its end inside `start` (an `async def` one on a loop of its own)."""

    def __init__(self, registry: TaskRegistry, on_finished: Finished) -> None:
        self._registry = registry
        self._on_finished = on_finished

    def start(self, job: Job, context: JobContext) -> None:
        spec = _spec_for(self._registry, job)
        if spec.is_async:
            self._on_finished(run_coroutine_inline(spec, job, context))
            return
        self._on_finished(invoke(spec, job, context))


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


class AsyncExecutor:
    """`async def` handlers as tasks of one event loop, run on a thread of its own that is
    started with the first such job.

    There is no pool to size: the worker's async lane (`WorkerConfig.async_concurrency`)
    bounds how many run at once. When the worker aborts an attempt (its timeout, a cancel,
    a lost lease, the end of the grace period) the handler's task is cancelled: an
    `asyncio.CancelledError` is raised at its current `await`, and if it lets it through
    the outcome is `stopped_result` (a timeout, or cancelled). A handler that blocks the
    loop (a plain `time.sleep`, a blocking call) holds up every other one, and cannot be
    cancelled until it awaits again."""

    def __init__(
        self, registry: TaskRegistry, on_finished: Finished, *, around: Around | None = None
    ) -> None:
        self._registry = registry
        self._on_finished = on_finished
        self._around = around
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._tasks: dict[_Key, asyncio.Task[None]] = {}
        """Running handlers by (job id, attempt): touched on the loop's thread only."""
        self._running = 0
        self._closed = False
        self._pending: list[tuple[_Key, TaskSpec, Job, JobContext]] = []
        """Jobs started and not yet handed to the loop (under `_lock`)."""
        self._handing = False
        """A hand-off of `_pending` to the loop is scheduled: one wake-up per batch."""

    def _started_loop(self) -> asyncio.AbstractEventLoop:
        """The loop, its thread started on first use (under `_lock`)."""
        if self._loop is None:
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            self._thread = threading.Thread(
                target=self._serve, args=(loop, ready), name="taskyard-async-loop", daemon=True
            )
            self._thread.start()
            ready.wait()
            self._loop = loop
        return self._loop

    def _serve(self, loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)

        async def main() -> None:
            self._stopping = asyncio.Event()
            ready.set()
            await self._stopping.wait()
            tasks = list(self._tasks.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            loop.run_until_complete(main())
        finally:
            loop.close()

    def start(self, job: Job, context: JobContext) -> None:
        spec = _spec_for(self._registry, job)
        key = (job.id, job.attempt)
        with self._lock:
            assert not self._closed, "the executor was shut down"
            self._running += 1
            loop = self._started_loop()
            self._pending.append((key, spec, job, context))
            hand_off = not self._handing
            self._handing = True
        if hand_off:
            loop.call_soon_threadsafe(self._begin)
        # Queued behind the hand-off that takes this job: its task exists by then.
        context.on_abort(lambda: self._call_soon(loop, self._cancel, key))

    @staticmethod
    def _call_soon(loop: asyncio.AbstractEventLoop, func: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # closed: nothing runs there any more
            loop.call_soon_threadsafe(func, *args)

    def _begin(self) -> None:
        """On the loop: a task for each job started since the last hand-off."""
        with self._lock:
            pending, self._pending = self._pending, []
            self._handing = False
        loop = asyncio.get_running_loop()
        for key, spec, job, context in pending:
            self._tasks[key] = loop.create_task(self._run(key, spec, job, context))

    def _cancel(self, key: _Key) -> None:
        task = self._tasks.get(key)
        if task is not None:
            task.cancel()

    async def _run(self, key: _Key, spec: TaskSpec, job: Job, context: JobContext) -> None:
        with nullcontext() if self._around is None else self._around(job):
            try:
                result = await invoke_async(spec, job, context)
            except asyncio.CancelledError:
                result = stopped_result(context)
            finally:
                self._tasks.pop(key, None)
                with self._lock:
                    self._running -= 1
            self._on_finished(result)

    @property
    def running(self) -> int:
        """Handlers started and not yet ended."""
        with self._lock:
            return self._running

    def shutdown(self, *, wait: bool) -> None:
        """Cancel what still runs and end the loop (its thread, when `wait`, is joined)."""
        with self._lock:
            self._closed = True
            loop, thread, stopping = self._loop, self._thread, self._stopping
        if loop is None or stopping is None:
            return
        self._call_soon(loop, stopping.set)
        if wait and thread is not None:
            thread.join()


class PlainExecutor(Protocol):
    """What runs the plain (`def`) handlers: `ThreadExecutor` or `ProcessExecutor`."""

    def start(self, job: Job, context: JobContext) -> None: ...

    @property
    def running(self) -> int: ...

    def shutdown(self, *, wait: bool) -> None: ...


class LaneExecutor:
    """Starts an `async def` task's job on `coroutines`, any other on `plain`."""

    def __init__(
        self, registry: TaskRegistry, *, plain: PlainExecutor, coroutines: AsyncExecutor
    ) -> None:
        self._registry = registry
        self.plain = plain
        self.coroutines = coroutines

    def start(self, job: Job, context: JobContext) -> None:
        if _spec_for(self._registry, job).is_async:
            self.coroutines.start(job, context)
        else:
            self.plain.start(job, context)

    @property
    def running(self) -> int:
        return self.plain.running + self.coroutines.running

    def shutdown(self, *, wait: bool) -> None:
        self.plain.shutdown(wait=wait)
        self.coroutines.shutdown(wait=wait)


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
