"""The simulated executor: a handler is a pair of events at virtual times (its
checkpoints and its end), finished with the production `invoke`, so its return or
exception is classified exactly as in production. The job's script (in its args) says
how long it runs and how it ends; the `handler.*` sites make it slow, hang or fail.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from functools import partial

from taskyard.domain.context import JobContext, TaskSpec, invoke
from taskyard.domain.errors import Refusal, StoreUnavailable
from taskyard.domain.model import Job
from taskyard.domain.timefmt import after
from taskyard.simulation.checker import Violation
from taskyard.simulation.clocks import EPOCH
from taskyard.simulation.ledger import Ledger
from taskyard.simulation.loop import EventLoop
from taskyard.simulation.network import Network
from taskyard.simulation.nodes import MISBEHAVIOURS, Node, SimHandler, SimSignal, WorkerNode
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
        )
        signal.handler = handler
        node.handlers[(job.id, job.attempt)] = handler
        now = self._loop.clock.t
        if len(node.handlers) > node.spec.concurrency:
            self._violations.append(
                Violation(
                    invariant="worker_slots",
                    message=f"{node.label} runs {len(node.handlers)} handlers with "
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
        if handler.done or not handler.honours:
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

    def _done(self, handler: SimHandler) -> None:
        if handler.done:
            return
        handler.done = True
        node = handler.node
        node.handlers.pop((handler.job.id, handler.job.attempt), None)
        spec = TaskSpec(name=handler.job.task, handler=handler.run)
        result = invoke(spec, handler.job, handler.context)
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


class SimExecutor:
    """One worker's executor port: hands each started job to the shared `Executor`."""

    def __init__(self, executor: Executor, node: WorkerNode) -> None:
        self._executor = executor
        self._node = node

    def start(self, job: Job, context: JobContext) -> None:
        self._executor.start_handler(self._node, job, context)
