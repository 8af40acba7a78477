"""The simulated executor: a handler is a pair of events at virtual times (its
checkpoints and its end), finished with the production `invoke`, so its return or
exception is classified exactly as in production. The job's script (in its args) says
how long it runs and how it ends; the `handler.*` sites make it slow, hang or fail.

An `async def` task's handler (`report`) is finished through `invoke_async`, driven to its
end by hand (it awaits nothing), and is stopped at once when its attempt is aborted, as
the production event loop cancels a coroutine: its outcome is then `stopped_result`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from taskyard.domain.context import (
    HandlerResult,
    JobContext,
    TaskSpec,
    invoke,
    invoke_async,
    is_coroutine_handler,
    stopped_result,
)
from taskyard.domain.errors import Refusal, StoreUnavailable
from taskyard.domain.model import Job
from taskyard.domain.timefmt import after
from taskyard.simulation.checker import Violation
from taskyard.simulation.clocks import EPOCH
from taskyard.simulation.ledger import Ledger
from taskyard.simulation.loop import EventLoop
from taskyard.simulation.network import Network
from taskyard.simulation.nodes import (
    HANDLERS,
    MISBEHAVIOURS,
    Node,
    SimHandler,
    SimSignal,
    WorkerNode,
)
from taskyard.simulation.rand import Streams
from taskyard.simulation.workload import Script


class Executor:
    """Runs every worker's handlers as events."""

    def __init__(
        self,
        *,
        loop: EventLoop,
        network: Network,
        ledger: Ledger,
        streams: Streams,
        exercised: Counter[str],
        violations: list[Violation],
        wake: Callable[[Node], None],
    ) -> None:
        self._loop = loop
        self._network = network
        self._ledger = ledger
        self._streams = streams
        self._exercised = exercised
        self._violations = violations
        self._wake = wake

    def make_signal(self, node: WorkerNode) -> SimSignal:
        signal = SimSignal(self.handler_aborted)
        node.last_signal = signal
        return signal

    def start_handler(self, node: WorkerNode, job: Job, context: JobContext) -> None:
        signal = node.last_signal
        node.last_signal = None
        assert signal is not None, "the worker makes a signal for each context it starts"
        script = Script.from_args(job.args)
        rng = self._streams.get(f"handler/{node.name}")
        fire = self._network.fire
        duration = script.duration_s
        honours = script.honours_cancel
        notes: list[str] = []
        if fire("handler.slow", node.label):
            duration *= rng.uniform(4.0, 12.0)
            notes.append("slow")
        if job.timeout_s is not None and fire("handler.hang", node.label):
            duration = max(duration, job.timeout_s * rng.uniform(1.5, 3.0))
            honours = False
            notes.append("hangs past its timeout")
        injected = None
        if fire("handler.fail", node.label):
            injected = rng.choice(MISBEHAVIOURS)
            notes.append(f"will fail: {injected}")
        handler = SimHandler(
            node=node,
            job=job,
            context=context,
            script=script,
            honours=honours,
            injected=injected,
            is_async=is_coroutine_handler(HANDLERS.get(job.task, _plain)),
        )
        signal.handler = handler
        node.handlers[(job.id, job.attempt)] = handler
        if handler.is_async:
            context.on_abort(partial(self._cancel, handler))
        now = self._loop.clock.t
        lane = sum(1 for h in node.handlers.values() if h.is_async == handler.is_async)
        if lane > node.spec.concurrency:
            self._violations.append(
                Violation(
                    invariant="worker_slots",
                    message=f"{node.label} runs {lane} handlers in a lane of "
                    f"concurrency {node.spec.concurrency} (an abandoned handler must keep "
                    "its slot until it returns)",
                    job_id=job.id,
                    at=after(EPOCH, now),
                )
            )
        extra = f" ({', '.join(notes)})" if notes else ""
        self._loop.note(
            node.label,
            f"handler {self._ledger.job_label(job.id)} #{job.attempt} starts, "
            f"runs {duration:.3f} s{extra}",
        )
        self._loop.at(now + duration, partial(self._done, handler), node)
        for k in range(1, script.checkpoints + 1):
            at = now + duration * k / (script.checkpoints + 1)
            self._loop.at(at, partial(self._checkpoint, handler, k), node)

    def handler_aborted(self, handler: SimHandler) -> None:
        if handler.done or not handler.honours or handler.is_async:
            return
        delay = self._streams.get(f"handler/{handler.node.name}").uniform(0.01, 0.3)
        self._loop.at(self._loop.clock.t + delay, partial(self._done, handler), handler.node)

    def _checkpoint(self, handler: SimHandler, step: int) -> None:
        if handler.done or handler.error is not None:
            return
        if handler.honours and handler.context.cancelled:
            return
        who = f"handler {self._ledger.job_label(handler.job.id)} #{handler.job.attempt}"
        try:
            handler.context.checkpoint({"step": step})
        except (Refusal, StoreUnavailable) as exc:
            handler.error = exc
            self._exercised["checkpoint_refused"] += 1
            self._loop.note(
                handler.node.label, f"{who} checkpoint {step} raised {type(exc).__name__}"
            )
            self._loop.at(self._loop.clock.t, partial(self._done, handler), handler.node)

    def _cancel(self, handler: SimHandler) -> None:
        """An async handler's attempt was aborted: its coroutine is cancelled at its
        current await, a moment later; one that does not honour it (`handler.hang`: it
        swallows the cancellation, or blocks the loop) runs on and reports late."""
        if handler.done or not handler.honours:
            return
        delay = self._streams.get(f"handler/{handler.node.name}").uniform(0.001, 0.05)
        self._loop.at(self._loop.clock.t + delay, partial(self._stopped, handler), handler.node)

    def _stopped(self, handler: SimHandler) -> None:
        if not handler.done:
            self._end(handler, stopped_result(handler.context))

    def _done(self, handler: SimHandler) -> None:
        if handler.done:
            return
        if handler.is_async:
            spec = TaskSpec(name=handler.job.task, handler=handler.run_async)
            result = _drive(invoke_async(spec, handler.job, handler.context))
        else:
            spec = TaskSpec(name=handler.job.task, handler=handler.run)
            result = invoke(spec, handler.job, handler.context)
        self._end(handler, result)

    def _end(self, handler: SimHandler, result: HandlerResult) -> None:
        handler.done = True
        node = handler.node
        node.handlers.pop((handler.job.id, handler.job.attempt), None)
        what = result.kind.value
        if result.error is not None:
            what += f" ({result.error.type}: {result.error.message})"
        self._loop.note(
            node.label,
            f"handler {self._ledger.job_label(handler.job.id)} #{handler.job.attempt} ends {what}",
        )
        assert node.worker is not None
        node.worker.handler_finished(result)
        self._wake(node)


def _plain() -> None:
    return None


def _drive(coroutine: Coroutine[Any, Any, HandlerResult]) -> HandlerResult:
    """Run a coroutine that awaits nothing to its end, without an event loop."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        result: HandlerResult = stop.value
        return result
    coroutine.close()
    raise AssertionError("a simulated handler awaited something")


class SimExecutor:
    """One worker's executor port: hands each started job to the shared `Executor`."""

    def __init__(self, executor: Executor, node: WorkerNode) -> None:
        self._executor = executor
        self._node = node

    def start(self, job: Job, context: JobContext) -> None:
        self._executor.start_handler(self._node, job, context)
