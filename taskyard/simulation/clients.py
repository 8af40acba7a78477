"""What clients and people do: submit the workload's jobs (retrying a submission that
failed with `StoreUnavailable`), submit one again unchanged or changed under its
idempotency key, cancel, retry dead jobs and reschedule. What the clients were told is
kept for the checker: the jobs acknowledged and every idempotent replay.
"""

from __future__ import annotations

from functools import partial
from typing import Any
from uuid import UUID

from taskyard.domain.errors import IdempotencyConflict, Refusal, StoreUnavailable
from taskyard.domain.model import JobState
from taskyard.domain.ports import JobFilter, JobQuery
from taskyard.domain.timefmt import after
from taskyard.simulation.checker import Replay
from taskyard.simulation.ledger import Ledger
from taskyard.simulation.loop import EventLoop
from taskyard.simulation.nodes import ClientNode
from taskyard.simulation.rand import Streams
from taskyard.simulation.workload import ClientOp, OpKind, Workload

S = JobState

SUBMIT_TRIES_MAX = 6

Bodies = list[tuple[int, dict[str, Any]]]
"""(plan index, request body) of each job of one submission."""


class Clients:
    def __init__(
        self, *, loop: EventLoop, ledger: Ledger, streams: Streams, workload: Workload
    ) -> None:
        self._loop = loop
        self._ledger = ledger
        self._streams = streams
        self._workload = workload
        self.acked: dict[int, UUID] = {}
        """Plan index -> the job the client was told it got."""
        self.acknowledged: set[UUID] = set()
        self.replays: list[Replay] = []
        self.pending = 0
        """Submissions waiting to be tried again (the world is not quiet meanwhile)."""
        self.submit_failures = 0
        self._bodies: dict[int, dict[str, Any]] = {}

    def perform(self, node: ClientNode, op: ClientOp) -> None:
        plans = self._workload.plans
        if op.kind is OpKind.SUBMIT:
            bodies: Bodies = []
            for index in op.plans:
                plan = plans[index]
                body = plan.body(
                    dep_ids=tuple(str(self.acked[d]) for d in plan.deps if d in self.acked),
                    run_at=(
                        after(node.clock.now(), plan.run_at_ahead_s)
                        if plan.run_at_ahead_s is not None
                        else None
                    ),
                )
                self._bodies[index] = body
                bodies.append((index, body))
            self._submit(node, op, bodies, 1)
        elif op.kind in (OpKind.RESUBMIT, OpKind.CONFLICT):
            index = op.plans[0]
            if index not in self.acked or plans[index].key is None:
                return
            body = self._bodies[index]
            if op.kind is OpKind.CONFLICT:
                body = plans[index].body(
                    dep_ids=tuple(body.get("depends_on", ())),
                    run_at=body.get("run_at"),
                    args_extra=1 + index,
                )
            self._submit(node, op, [(index, body)], 1)
        elif op.kind is OpKind.CANCEL:
            if op.plans[0] in self.acked:
                self._person(node, "cancel", self.acked[op.plans[0]])
        elif op.kind is OpKind.CANCEL_RUNNING:
            chosen = self._pick(node, frozenset({S.RUNNING}))
            if chosen is not None:
                self._person(node, "cancel", chosen)
        elif op.kind is OpKind.RETRY_DEAD:
            chosen = self._pick(node, frozenset({S.DEAD})) or self._pick(
                node, frozenset({S.CANCELLED})
            )
            if chosen is not None:
                self._person(node, "retry", chosen)
        elif op.kind is OpKind.RESCHEDULE and op.plans[0] in self.acked:
            run_at = after(node.clock.now(), op.amount)
            self._person(node, "reschedule", self.acked[op.plans[0]], run_at=run_at)

    def _pick(self, node: ClientNode, states: frozenset[JobState]) -> UUID | None:
        try:
            page = node.store.list_jobs(JobQuery(filter=JobFilter(states=states), limit=1000))
        except StoreUnavailable as exc:
            self._loop.note(node.label, f"list {'/'.join(sorted(states))} failed: {exc}")
            return None
        ids = sorted(job.id for job in page.jobs)
        if not ids:
            return None
        return self._streams.get(f"client/{node.name}/ops").choice(ids)

    def _person(self, node: ClientNode, action: str, job_id: UUID, **kwargs: Any) -> None:
        label = self._ledger.job_label(job_id)
        try:
            if action == "cancel":
                assert node.client is not None
                job = node.client.cancel(job_id)
            elif action == "retry":
                job = node.store.retry(job_id)
            else:
                job = node.store.reschedule(
                    job_id,
                    priority=self._streams.get(f"client/{node.name}/ops").randint(-5, 5),
                    **kwargs,
                )
        except Refusal as exc:
            self._loop.note(node.label, f"{action} {label} refused: {type(exc).__name__}")
            return
        except StoreUnavailable as exc:
            self._loop.note(node.label, f"{action} {label} failed: {exc}")
            return
        self._loop.note(node.label, f"{action} {label}: now {job.state.value}")

    def _submit(self, node: ClientNode, op: ClientOp, bodies: Bodies, tries: int) -> None:
        assert node.client is not None
        note = partial(self._loop.note, node.label)
        names = ",".join(f"p{index}" for index, _ in bodies)
        try:
            # The task's defaults come from the catalog: a parse may read the store too.
            submissions = [node.client.parse(body) for _, body in bodies]
            enqueued = node.client.submit(submissions)
        except StoreUnavailable as exc:
            self.submit_failures += 1
            if tries >= SUBMIT_TRIES_MAX:
                note(f"{op.kind.value} {names} given up: {exc}")
                return
            delay = self._streams.get(f"client/{node.name}/ops").uniform(0.2, 1.0) * tries
            note(f"{op.kind.value} {names} failed ({exc}); again in {delay:.3f} s")
            self.pending += 1
            self._loop.at(
                self._loop.clock.t + delay,
                partial(self._resubmit_later, node, op, bodies, tries + 1),
                node,
            )
            return
        except IdempotencyConflict as exc:
            if op.kind is not OpKind.CONFLICT:
                raise AssertionError(f"{op.kind.value} {names} refused: {exc}") from exc
            index = bodies[0][0]
            self.replays.append(
                Replay(
                    key=str(bodies[0][1]["idempotency_key"]),
                    first_job_id=self.acked[index],
                    replay_job_id=None,
                    same_body=False,
                )
            )
            note(f"conflict {names} refused: {exc}")
            return
        for (index, body), result in zip(bodies, enqueued, strict=True):
            job_id = result.job.id
            how = "created" if result.created else "found existing"
            note(
                f"{op.kind.value} p{index} accepted: {how} "
                f"{self._ledger.job_label(job_id)} ({result.job.state.value})"
            )
            if op.kind is OpKind.SUBMIT:
                self.acked[index] = job_id
                self.acknowledged.add(job_id)
            else:
                self.acknowledged.add(job_id)
                self.replays.append(
                    Replay(
                        key=str(body["idempotency_key"]),
                        first_job_id=self.acked[index],
                        replay_job_id=job_id,
                        same_body=op.kind is OpKind.RESUBMIT,
                    )
                )

    def _resubmit_later(self, node: ClientNode, op: ClientOp, bodies: Bodies, tries: int) -> None:
        self.pending -= 1
        self._submit(node, op, bodies, tries)
