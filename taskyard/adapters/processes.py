"""`ProcessExecutor`: plain handlers in child processes, killed at a timeout or a cancel.

Each slot is a thread of the worker that minds one child process. The child loads the
tasks once, when it starts (`load_registry`, which must pickle: it names the app by its
import path rather than holding it), then runs the jobs its slot sends it, one at a time,
through the same `invoke` as a thread does, and sends each `HandlerResult` back. A
handler's `ctx.checkpoint` goes over the pipe and is saved by the slot's thread.

When the worker aborts an attempt (its timeout, a cancel request, a lost lease, the end of
the grace period) the child is killed (SIGKILL) at once, whatever the handler is doing:
the slot reports `stopped_result` (a timeout, or cancelled), and takes the standby child
the executor keeps ready (one per worker) for its next job; a new standby is started
behind it. A child that dies on its own (a crash, the OOM killer) fails the
attempt as `child_died`, retried like any failure.

Children start from a fork server (`multiprocessing`'s `forkserver`), never from a fork of
the threaded worker itself. What a child gets (the job) and gives back (the outcome) is
pickled; nothing else is shared with the worker.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import signal
import threading
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

import attrs

from taskyard.adapters.executors import Around, Finished
from taskyard.domain.context import (
    Flag,
    HandlerResult,
    JobContext,
    invoke,
    stopped_result,
)
from taskyard.domain.model import ErrorInfo, Job, JsonValue, LeaseRef
from taskyard.domain.ports import TaskRegistry
from taskyard.domain.transitions import ReportKind

RegistryLoader = Callable[[], TaskRegistry]
"""Builds, in a child, the tasks the worker runs. Must pickle."""

CHILD_DIED = "child_died"
"""The error type of an attempt whose child process died on its own."""


class ProcessExecutor:
    """Up to `processes` children, one per slot, started as work needs them."""

    def __init__(
        self,
        registry: TaskRegistry,
        on_finished: Finished,
        *,
        processes: int,
        load_registry: RegistryLoader,
        preload: Sequence[str] = (),
        around: Around | None = None,
    ) -> None:
        """`preload`: modules the fork server imports once, so that a child (a fresh one
        after each kill) starts without importing them again: the app's module, and what
        `load_registry` imports."""
        assert processes >= 1, processes
        self._registry = registry
        self._on_finished = on_finished
        self._load_registry = load_registry
        self._around = around
        self._processes_max = processes
        self._mp = multiprocessing.get_context("forkserver")
        self._mp.set_forkserver_preload(["__main__", "taskyard.adapters.processes", *preload])
        self._work: queue.SimpleQueue[tuple[Job, JobContext] | None] = queue.SimpleQueue()
        self._slots: list[_Slot] = []
        self._lock = threading.Lock()
        self._running = 0
        self._idle = 0
        self._closed = False
        self.children_started = 0
        self._spare: _Child | None = None
        """A standby child, ready to replace a killed one at once (under `_lock`)."""
        self._spare_wanted = threading.Event()
        self._spare_keeper: threading.Thread | None = None
        """Children started so far (a fresh one replaces each killed or dead one)."""

    def start(self, job: Job, context: JobContext) -> None:
        spec = self._registry.get(job.task)
        assert spec is not None and not spec.is_async, job.task
        with self._lock:
            assert not self._closed, "the executor was shut down"
            self._running += 1
            grow = self._idle <= 0 and len(self._slots) < self._processes_max
            if grow:
                slot = _Slot(self, len(self._slots))
                self._slots.append(slot)
            else:
                self._idle -= 1
        if grow:
            self._keep_spare()
            slot.thread.start()
        self._work.put((job, context))

    @property
    def running(self) -> int:
        with self._lock:
            return self._running

    def prestart(self) -> None:
        """Start every slot's child and wait until each has loaded the tasks, so that no
        job's timeout pays for a child's start (but a job that waits for the fresh child
        after a kill). Raises `ChildFailed` when a child cannot load them."""
        with self._lock:
            assert not self._slots, "prestart comes before any job"
        starters = [threading.Thread(target=self._prestart_one) for _ in range(self._processes_max)]
        for starter in starters:
            starter.start()
        for starter in starters:
            starter.join()
        with self._lock:
            failed = len(self._slots) < self._processes_max
            slots = list(self._slots)
            self._idle = len(slots)
        for slot in slots:
            slot.thread.start()
        if failed:
            self.shutdown(wait=False)
            raise ChildFailed("a handler process could not load the tasks")
        self._keep_spare()

    def _prestart_one(self) -> None:
        try:
            child = self._spawn()
        except ChildFailed:
            return
        with self._lock:
            slot = _Slot(self, len(self._slots))
            slot.child = child
            self._slots.append(slot)

    def shutdown(self, *, wait: bool) -> None:
        """Run nothing more; children end after their current job (killed, when the worker
        aborted it), and at once when idle."""
        with self._lock:
            self._closed = True
            slots = list(self._slots)
            spare, self._spare = self._spare, None
        self._spare_wanted.set()
        if spare is not None:
            spare.end()
        for _ in slots:
            self._work.put(None)
        if wait:
            for slot in slots:
                slot.thread.join()

    def _keep_spare(self) -> None:
        """Start the thread that keeps a standby child ready (once)."""
        with self._lock:
            if self._spare_keeper is not None:
                return
            self._spare_keeper = threading.Thread(
                target=self._spare_loop, name="taskyard-handler-spare", daemon=True
            )
        self._spare_wanted.set()
        self._spare_keeper.start()

    def _spare_loop(self) -> None:
        while True:
            self._spare_wanted.wait()
            self._spare_wanted.clear()
            with self._lock:
                if self._closed:
                    return
                if self._spare is not None:
                    continue
            try:
                child = self._spawn()
            except ChildFailed:
                return  # the slots start their own children (and report why they cannot)
            with self._lock:
                keep = not self._closed
                if keep:
                    self._spare = child
            if not keep:
                child.end()
                return

    def _fresh(self) -> _Child:
        """A child for a slot whose child was killed or died: the standby when it is ready
        (a new standby is started behind it), else one started now."""
        with self._lock:
            spare, self._spare = self._spare, None
        self._spare_wanted.set()
        if spare is not None and spare.process.is_alive():
            return spare
        if spare is not None:
            spare.end()
        return self._spawn()

    def _spawn(self) -> _Child:
        parent_end, child_end = self._mp.Pipe()
        process = self._mp.Process(
            target=child_main,
            args=(child_end, self._load_registry),
            name="taskyard-handler-child",
            daemon=True,
        )
        process.start()
        child_end.close()
        with self._lock:
            self.children_started += 1
        child = _Child(process=process, conn=parent_end)
        try:
            ready = parent_end.recv()  # sent once it has loaded the tasks
        except (EOFError, OSError):
            ready = None
        if ready != ("ready", None):
            child.end()
            raise ChildFailed(
                f"a handler process could not load the tasks (exit code {process.exitcode}); "
                "its error is on standard error"
            )
        return child

    def _done(self) -> None:
        with self._lock:
            self._running -= 1
            self._idle += 1


class ChildFailed(Exception):
    """A handler process could not start (its app did not import)."""


class _Child:
    def __init__(self, *, process: BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.lock = threading.Lock()
        self.serving: tuple[Any, int] | None = None
        """The attempt it runs now; a kill for any other is ignored."""

    def kill_if_serving(self, key: tuple[Any, int]) -> None:
        """Called by the worker's abort (never blocks)."""
        with self.lock:
            if self.serving == key and self.process.is_alive():
                self.process.kill()

    def end(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.process.join(timeout=1.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=1.0)
        self.conn.close()


class _Slot:
    def __init__(self, owner: ProcessExecutor, number: int) -> None:
        self.owner = owner
        self.child: _Child | None = None
        self.thread = threading.Thread(
            target=self._serve, name=f"taskyard-handler-slot-{number}", daemon=True
        )

    def _serve(self) -> None:
        owner = self.owner
        try:
            while True:
                item = owner._work.get()
                if item is None:
                    return
                job, context = item
                if owner._closed:
                    owner._done()
                    continue
                around = owner._around
                with contextlib.nullcontext() if around is None else around(job):
                    result = self._run(job, context)
                    owner._done()
                    owner._on_finished(result)
                if self.child is None and not owner._closed:
                    # A fresh child, ready for the next job (or, if it fails, tried again then).
                    with contextlib.suppress(ChildFailed):
                        self.child = owner._fresh()
        finally:
            if self.child is not None:
                self.child.end()

    def _run(self, job: Job, context: JobContext) -> HandlerResult:
        if self.child is None or not self.child.process.is_alive():
            try:
                self.child = self.owner._fresh()
            except ChildFailed as exc:
                self.child = None
                return HandlerResult(
                    ref=context.ref,
                    kind=ReportKind.FAILED,
                    error=ErrorInfo(type=CHILD_DIED, message=str(exc)),
                )
        child = self.child
        key = (job.id, job.attempt)
        with child.lock:
            child.serving = key
        try:
            context.on_abort(lambda: child.kill_if_serving(key))
            try:
                child.conn.send(job)
            except OSError:
                result = None  # it died before it took the job
            else:
                result = self._await(child, context)
        finally:
            with child.lock:
                child.serving = None
        if result is None:
            self.child = None
            child.process.join(timeout=1.0)
            child.conn.close()
            if context.cancelled:
                return stopped_result(context)
            return HandlerResult(
                ref=context.ref,
                kind=ReportKind.FAILED,
                error=ErrorInfo(
                    type=CHILD_DIED,
                    message=f"the handler's process died (exit code {child.process.exitcode})",
                ),
            )
        return result

    @staticmethod
    def _await(child: _Child, context: JobContext) -> HandlerResult | None:
        """The child's outcome, serving its checkpoints meanwhile; None if it died."""
        while True:
            ready = wait([child.conn, child.process.sentinel])
            if child.conn not in ready:
                return None
            try:
                message = child.conn.recv()
            except (EOFError, OSError):
                return None
            kind, body = message
            if kind == "done":
                assert isinstance(body, HandlerResult)
                return body
            assert kind == "checkpoint", kind
            try:
                context.checkpoint(body)
                answer: tuple[str, Any] = ("ok", None)
            except Exception as exc:
                answer = ("error", exc)
            try:
                child.conn.send(answer)
            except OSError:
                return None


# --- in the child -------------------------------------------------------------------------


class _PipeSaver:
    """A child's checkpoint: saved by its slot's thread in the worker, errors sent back."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def __call__(self, ref: LeaseRef, state: JsonValue) -> None:
        self._conn.send(("checkpoint", state))
        kind, error = self._conn.recv()
        if kind == "error":
            raise error


def child_main(conn: Connection, load_registry: RegistryLoader) -> None:
    """A child's life: load the tasks, then run each job sent until told to end (None) or
    the worker goes away. Ctrl-C in a terminal reaches the whole process group: the child
    leaves it to the worker, which decides when its handlers stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    registry = load_registry()
    conn.send(("ready", None))
    save = _PipeSaver(conn)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        spec = registry.get(job.task)
        context = JobContext(job, save=save, signal=Flag())
        if spec is None:
            result = HandlerResult(
                ref=context.ref,
                kind=ReportKind.FAILED,
                error=ErrorInfo(type="unknown_task", message=f"no handler for {job.task!r}"),
            )
        else:
            # The exception object stays here (it may not pickle): its type, message and
            # traceback travel as text in `error`.
            result = attrs.evolve(invoke(spec, job, context), exception=None)
        conn.send(("done", result))
