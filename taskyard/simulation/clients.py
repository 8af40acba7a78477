"""What clients and people do: submit the workload's jobs (retrying a submission that
failed with `StoreUnavailable`), submit one again unchanged or changed under its
idempotency key, cancel, retry dead jobs and reschedule. What the clients were told is
kept for the checker: the jobs acknowledged and every idempotent replay.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any
from uuid import UUID

import attrs

from taskyard.domain import flow, management, queue_settings
from taskyard.domain.catalog import TaskInfo
from taskyard.domain.context import TaskSpec
from taskyard.domain.errors import (
    CoordinatorUnavailable,
    IdempotencyConflict,
    Refusal,
    StoreUnavailable,
    ValidationError,
)
from taskyard.domain.model import JobState
from taskyard.domain.ports import JobFilter, JobQuery
from taskyard.domain.submission import trace_context_of_headers
from taskyard.domain.timefmt import after, format_time
from taskyard.simulation import hostile
from taskyard.simulation.checker import Replay, Violation
from taskyard.simulation.clocks import EPOCH
from taskyard.simulation.ledger import Ledger
from taskyard.simulation.loop import EventLoop
from taskyard.simulation.nodes import HANDLERS, ClientNode
from taskyard.simulation.rand import Streams
from taskyard.simulation.workload import ClientOp, OpKind, Workload

S = JobState
WAITING = frozenset({S.SCHEDULED, S.QUEUED, S.RETRYING})
"""The states of a job not running yet, whose `waiting_reason` says why."""
WAITED = frozenset(
    {
        flow.WaitingReason.CONCURRENCY_LIMIT,
        flow.WaitingReason.KEY_CONCURRENCY_LIMIT,
        flow.WaitingReason.RATE_LIMIT,
    }
)
"""Reasons an inspection counts (`waited_<reason>`): a limit held a job back."""

SUBMIT_TRIES_MAX = 6
PAGE_LIMIT_MAX = 7
"""A listing is walked in pages of at most this many jobs (so that it takes several)."""
RUN_S_BUCKETS = (0.1, 1.0, 10.0)

CLIENT_ANSWERS = "client_answers"
"""The invariant of what clients are answered (checked while the world runs): a malformed
submission is refused naming a field and stores nothing; a listing walked page by page
gives each matching job once and no other."""

Bodies = list[tuple[int, dict[str, Any]]]
"""(plan index, request body) of each job of one submission."""


def _library_task(name: str) -> TaskInfo | None:
    """What a library client knows of a task from its own registered function."""
    handler = HANDLERS.get(name)
    return TaskSpec(name=name, handler=handler).info() if handler is not None else None


class Clients:
    def __init__(
        self,
        *,
        loop: EventLoop,
        ledger: Ledger,
        streams: Streams,
        workload: Workload,
        exercised: Counter[str],
        redeploy: Callable[[str, float], bool],
    ) -> None:
        self._loop = loop
        self._ledger = ledger
        self._streams = streams
        self._workload = workload
        self._exercised = exercised
        self._redeploy = redeploy
        """Redeploys the worker of the given id with that grace; False when none is up."""
        self.violations: list[Violation] = []
        """Broken promises of `CLIENT_ANSWERS`."""
        self.paused: Counter[str] = Counter()
        """Queues a person paused, and how many pauses are not over yet."""
        self.acked: dict[int, UUID] = {}
        """Plan index -> the job the client was told it got."""
        self.acknowledged: set[UUID] = set()
        self.replays: list[Replay] = []
        self.pending = 0
        """Submissions waiting to be tried again (the world is not quiet meanwhile)."""
        self.submit_failures = 0
        self._bodies: dict[int, dict[str, Any]] = {}
        self._sent = 0

    def perform(self, node: ClientNode, op: ClientOp) -> None:
        plans = self._workload.plans
        if op.kind is OpKind.SUBMIT:
            bodies: Bodies = []
            for index in op.plans:
                plan = plans[index]
                body = plan.body(
                    dep_ids=tuple(str(self.acked[d]) for d in plan.deps if d in self.acked),
                    run_at=(
                        format_time(after(node.clock.now(), plan.run_at_ahead_s))
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
            self._person(node, "reschedule", self.acked[op.plans[0]], ahead_s=op.amount)
        elif op.kind is OpKind.MALFORMED:
            self._malformed(node, op)
        elif op.kind is OpKind.INSPECT:
            self._inspect(node, op)
        elif op.kind is OpKind.BULK:
            self._bulk(node, op)
        elif op.kind is OpKind.PAUSE_QUEUE:
            self._pause_queue(node, plans[op.plans[0]].queue, op.amount)
        elif op.kind is OpKind.CANCEL_IN_DEPLOY:
            self._cancel_in_deploy(node, op.amount)

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

    def _person(self, node: ClientNode, action: str, job_id: UUID, *, ahead_s: float = 0.0) -> None:
        label = self._ledger.job_label(job_id)
        try:
            if action == "cancel":
                assert node.client is not None
                job = node.client.cancel(job_id)
            elif action == "retry":
                job = node.store.retry(job_id)
            else:
                # As the API's PATCH: a JSON change, parsed by the production parser.
                change = management.parse_changes(
                    {
                        "priority": self._streams.get(f"client/{node.name}/ops").randint(-5, 5),
                        # nanoseconds and an offset: the parser keeps microseconds, in UTC
                        "run_at": format_time(after(node.clock.now(), ahead_s)).replace(
                            "Z", "000000+00:00"
                        ),
                    }
                )
                job = node.store.reschedule(job_id, priority=change.priority, run_at=change.run_at)
        except Refusal as exc:
            self._loop.note(node.label, f"{action} {label} refused: {type(exc).__name__} ({exc})")
            return
        except StoreUnavailable as exc:
            self._loop.note(node.label, f"{action} {label} failed: {exc}")
            return
        self._loop.note(node.label, f"{action} {label}: now {job.state.value}")

    def _submit(self, node: ClientNode, op: ClientOp, bodies: Bodies, tries: int) -> None:
        assert node.client is not None
        note = partial(self._loop.note, node.label)
        names = ",".join(f"p{index}" for index, _ in bodies)
        client = node.client
        try:
            # As the API's routes: several jobs go as one JSON batch; a resubmission sends
            # its key in the Idempotency-Key header. The task's defaults come from the
            # catalog: a parse may read the store too.
            if len(bodies) > 1:
                submissions = client.parse_batch({"jobs": [body for _, body in bodies]})
            elif op.kind is OpKind.RESUBMIT:
                body = dict(bodies[0][1])
                key = body.pop("idempotency_key")
                submissions = [client.parse(body, idempotency_key_header=key)]
            elif bodies[0][0] % 2:
                # As the library's `task.enqueue(**args)`: the args bound to the function's
                # parameters, the task's own defaults and parameters known locally.
                body = dict(bodies[0][1])
                local = _library_task(body["task"])
                if local is not None:
                    body["args"] = local.params.bind((), body["args"])
                submissions = [client.parse(body, local=_library_task)]
            else:
                submissions = [client.parse(bodies[0][1])]
            unknown = client.unknown(submissions)
            if unknown:
                note(f"{op.kind.value} {names}: {len(unknown)} of a task nobody published yet")
            correlation_id = f"{node.label}/{self._sent}"
            self._sent += 1
            if bodies[0][0] % 2:
                # As the library's App: the hooks make the trace context around the enqueue.
                with node.hooks.enqueue([s.task for s in submissions]) as trace_context:
                    enqueued = client.submit(
                        submissions, correlation_id=correlation_id, trace_context=trace_context
                    )
            else:
                # As the API: the trace context of the request's W3C headers, if readable.
                header = hostile.TRACEPARENTS[bodies[0][0] // 2 % len(hostile.TRACEPARENTS)]
                trace_context, problem = trace_context_of_headers(header, "sim=1")
                if problem is not None:
                    note(f"{op.kind.value} {names}: warning: {problem.field}: {problem.message}")
                enqueued = client.submit(
                    submissions, correlation_id=correlation_id, trace_context=trace_context
                )
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
            if result.created and result.job.trace_context != (
                dict(trace_context) if trace_context else None
            ):
                self._broken(node, f"p{index} stored another trace context than it was sent")
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

    # --- what people get wrong, and what they look at -------------------------------------

    def _broken(self, node: ClientNode, message: str) -> None:
        self._loop.note(node.label, f"BROKEN: {message}")
        self.violations.append(
            Violation(
                invariant=CLIENT_ANSWERS, message=message, at=after(EPOCH, self._loop.clock.t)
            )
        )

    def _malformed(self, node: ClientNode, op: ClientOp) -> None:
        rng = self._streams.get(f"client/{node.name}/malformed")
        roll = rng.random()
        if roll < 0.1:
            self._malformed_change(node, rng.choice(hostile.CHANGES))
            return
        if roll < 0.2:
            data, action = rng.choice(hostile.FILTERS)
            self._malformed_filter(node, data, action)
            return
        if roll < 0.3:
            self._malformed_trace(node, op, rng.choice(hostile.TRACE_CONTEXTS))
            return
        strict = rng.random() < 0.5
        client = node.strict if strict else node.client
        assert client is not None
        plan = self._workload.plans[op.plans[0]]
        body = self._bodies.get(op.plans[0]) or plan.body(dep_ids=(), run_at=None)
        sent = hostile.draw(rng, body, refuses_unknown=strict)
        commits = self._ledger.commits()
        note = partial(self._loop.note, node.label)
        try:
            if sent.batch:
                client.parse_batch(sent.body)
            else:
                submission = client.parse(sent.body, idempotency_key_header=sent.header)
                if sent.refused_by_store:
                    client.submit([submission])
        except ValidationError as exc:
            self._refused(node, sent.name, exc)
        except Refusal as exc:
            self._exercised["malformed_refused"] += 1
            note(f"malformed ({sent.name}) refused by the store: {type(exc).__name__} ({exc})")
            if not sent.refused_by_store:
                self._broken(node, f"malformed ({sent.name}) refused, but not as malformed")
        except StoreUnavailable as exc:
            note(f"malformed ({sent.name}) not checked: {exc}")
        else:
            task = sent.needs_catalog
            if task is not None and client.task(task) is None:
                # The args are checked against what the workers published: nothing yet.
                note(f"malformed ({sent.name}) passed: {task} unknown yet")
            else:
                self._broken(node, f"a malformed submission ({sent.name}) was accepted")
        if self._ledger.commits() != commits:
            self._broken(node, f"a malformed submission ({sent.name}) stored something")

    def _refused(self, node: ClientNode, what: str, exc: ValidationError) -> None:
        fields = sorted({error.field for error in exc.errors})
        self._exercised["malformed_refused"] += 1
        self._loop.note(node.label, f"malformed ({what}) refused: {', '.join(fields)}")
        if not exc.errors or not all(error.message for error in exc.errors):
            self._broken(node, f"malformed ({what}) refused without saying why")

    def _malformed_trace(self, node: ClientNode, op: ClientOp, trace_context: object) -> None:
        """A tracing hook's bad trace context: the enqueue is refused, nothing stored."""
        assert node.client is not None
        body = self._workload.plans[op.plans[0]].body(dep_ids=(), run_at=None)
        body.pop("idempotency_key", None)
        commits = self._ledger.commits()
        try:
            submission = node.client.parse(body)
            node.client.submit([submission], trace_context=trace_context)  # type: ignore[arg-type]
        except ValidationError as exc:
            self._refused(node, "trace context", exc)
        except StoreUnavailable as exc:
            self._loop.note(node.label, f"malformed (trace context) not checked: {exc}")
        else:
            self._broken(node, f"a malformed trace context was accepted: {trace_context!r}")
        if self._ledger.commits() != commits:
            self._broken(node, "a submission with a malformed trace context stored something")

    def _malformed_change(self, node: ClientNode, data: object) -> None:
        try:
            management.parse_changes(data)
        except ValidationError as exc:
            self._refused(node, "change", exc)
            return
        self._broken(node, f"a malformed change was accepted: {data!r}")

    def _malformed_filter(self, node: ClientNode, data: object, action: str) -> None:
        assert action in ("retry", "cancel"), action
        try:
            management.parse_job_filter(data, action="retry" if action == "retry" else "cancel")
        except ValidationError as exc:
            self._refused(node, f"{action} filter", exc)
            return
        self._broken(node, f"a malformed {action} filter was accepted: {data!r}")

    def _inspect(self, node: ClientNode, op: ClientOp) -> None:
        """What the dashboard and the API's reads do, through the production store."""
        rng = self._streams.get(f"client/{node.name}/inspect")
        store = node.store
        note = partial(self._loop.note, node.label)
        try:
            if op.plans[0] in self.acked:
                job_id = self.acked[op.plans[0]]
                job = store.get(job_id)
                tried = store.attempts(job_id)
                # What the API answers with (its JSON), as a client would read it.
                shown = json.dumps([job.to_json(), *(a.to_json() for a in tried)])
                assert shown.startswith("[{"), shown
                # GET /v1/jobs/{id}'s waiting_reason: for a job not yet running, and only then.
                reason = store.waiting_reason(job_id)
                if (reason is None) == (job.state in WAITING):
                    self._broken(
                        node,
                        f"{self._ledger.job_label(job_id)} is {job.state.value}, yet its "
                        f"waiting reason is {reason}",
                    )
                note(
                    f"inspect {self._ledger.job_label(job_id)}: {job.state.value}, "
                    f"{len(tried)} attempt(s)" + (f", waiting: {reason.value}" if reason else "")
                )
            missing = UUID(int=rng.getrandbits(128))
            assert node.client is not None
            for look in (store.get, store.attempts, node.client.cancel):
                try:
                    look(missing)
                except Refusal as exc:
                    note(f"a job that does not exist: {type(exc).__name__} ({exc})")
                else:
                    self._broken(node, "a job that does not exist was found")
            states = frozenset(rng.sample(sorted(JobState), rng.randint(0, 3)))
            queues = (
                frozenset({self._workload.plans[op.plans[0]].queue})
                if rng.random() < 0.5
                else frozenset()
            )
            tasks = (
                frozenset({rng.choice(("work", "report"))}) if rng.random() < 0.3 else frozenset()
            )
            self._walk(node, JobFilter(states=states, queues=queues, tasks=tasks), rng)
            catalog = json.dumps([task.to_json() for task in store.tasks()])  # GET /v1/tasks
            assert catalog.startswith("["), catalog
            queues_seen = store.queues()
            # GET /v1/queues: each queue's limits and their usage now.
            shown = json.dumps(
                [
                    {"name": q.name, "limits": q.limits.to_json(), "usage": q.usage.to_json()}
                    for q in queues_seen
                ]
            )
            assert shown.startswith("["), shown
            for info in queues_seen:
                if info.limits.governed:
                    window = info.usage.started_in_window
                    note(
                        f"queue {info.name}: {info.usage.running} running"
                        + ("" if window is None else f", {window} started in the window")
                    )
            self._waiting(node)
            stats = store.stats(window_s=rng.choice((60.0, 3600.0)))
            totals = store.attempt_totals(run_s_buckets=RUN_S_BUCKETS)
            wakeup = store.next_wakeup()
            note(
                f"inspect: {len(queues_seen)} queue(s), {stats.succeeded} succeeded and "
                f"{stats.dead} dead lately, {totals.run_s_count} runs timed, next wake-up "
                f"{'none' if wakeup is None else 'set'}"
            )
            self._dashboard(node, op, rng)
            running = store.list_jobs(management.RUNNING_JOBS_QUERY).jobs
            workers = management.with_running_jobs(node.coordinator.workers(), running)
            on_them = sum(len(w.running_job_ids) for w in workers)
            note(f"inspect: {len(workers)} live worker(s), {on_them} job(s) on them")
        except (StoreUnavailable, CoordinatorUnavailable) as exc:
            note(f"inspect failed: {exc}")

    def _dashboard(self, node: ClientNode, op: ClientOp, rng: random.Random) -> None:
        """The dashboard's reads: a job by its key and its dependents, what ended lately,
        the dead jobs by task and error (whose counts must add up to the dead jobs, and
        each group as the world holds it: its count, and its newest job)."""
        store = node.store
        plan = self._workload.plans[op.plans[0]]
        if plan.key is not None and op.plans[0] in self.acked:
            found = store.find_by_key(plan.key)
            if found is None or found.id != self.acked[op.plans[0]]:
                self._broken(node, f"key {plan.key} does not find the job it made")
            else:
                store.dependents(found.id, limit=rng.randint(1, 5))
        series = store.outcome_series(bucket_s=rng.choice((1.0, 10.0)), buckets=6)
        groups = store.dead_groups()
        dead = store.count_jobs(JobFilter(states=frozenset({S.DEAD})))
        if sum(group.count for group in groups) != dead:
            self._broken(node, f"dead jobs by group do not add up to the {dead} dead")
        held = self._ledger.dead_by_group()
        for group in groups:
            jobs = held.get((group.task, group.error_type), [])
            name = f"dead group {group.task}/{group.error_type}"
            if group.count != len(jobs):
                self._broken(node, f"{name} counts {group.count}, the world holds {len(jobs)}")
            elif jobs and group.newest.id != jobs[0].id:
                self._broken(
                    node,
                    f"{name}'s newest is {self._ledger.job_label(group.newest.id)}, not "
                    f"{self._ledger.job_label(jobs[0].id)}",
                )
        if len(groups) != len(held):
            self._broken(node, f"{len(groups)} dead group(s), the world holds {len(held)}")
        for group in groups[:2]:
            store.dead_ids(task=group.task, error_type=group.error_type, limit=3)
        self._loop.note(
            node.label,
            f"dashboard: {sum(b.succeeded for b in series)} succeeded lately, "
            f"{dead} dead in {len(groups)} group(s)",
        )

    def _walk(self, node: ClientNode, job_filter: JobFilter, rng: random.Random) -> None:
        """List the jobs `job_filter` matches, page by page, and check the pages."""
        query = JobQuery(filter=job_filter, limit=rng.randint(1, PAGE_LIMIT_MAX))
        seen: set[UUID] = set()
        pages = 0
        while True:
            page = node.store.list_jobs(query)
            pages += 1
            for job in page.jobs:
                if job.id in seen:
                    self._broken(node, f"a listing gave {self._ledger.job_label(job.id)} twice")
                seen.add(job.id)
                if not (
                    (not job_filter.states or job.state in job_filter.states)
                    and (not job_filter.queues or job.queue in job_filter.queues)
                    and (not job_filter.tasks or job.task in job_filter.tasks)
                ):
                    self._broken(
                        node, f"a listing gave {self._ledger.job_label(job.id)}, which it excludes"
                    )
            if page.next_cursor is None or pages >= 50:
                break
            query = attrs.evolve(query, cursor=page.next_cursor)
        self._exercised["listing_walked"] += 1
        self._loop.note(node.label, f"list: {len(seen)} job(s) in {pages} page(s)")

    def _bulk(self, node: ClientNode, op: ClientOp) -> None:
        """A person's bulk action: a JSON filter through the production parser, counted
        first (the API's dry run), then taken."""
        action: management.BulkAction = "cancel" if op.amount < 0 else "retry"
        rng = self._streams.get(f"client/{node.name}/bulk")
        queue = self._workload.plans[op.plans[0]].queue
        states = sorted(management.BULK_STATES[action])
        data: dict[str, Any] = {"queue": queue}
        if rng.random() < 0.5:
            data["state"] = rng.choice(states)
        if rng.random() < 0.3:
            data["state"] = ["succeeded", *states]  # a state the action leaves alone
        note = partial(self._loop.note, node.label)
        try:
            job_filter = management.parse_job_filter(data, action=action)
        except ValidationError as exc:
            note(f"bulk {action} refused: {exc}")
            return
        try:
            counted = management.count_bulk(
                node.store, job_filter, action=action, scan_max=rng.randint(1, 10)
            )
            if action == "cancel":
                done = node.store.cancel_many(job_filter)
            else:
                done = node.store.retry_many(job_filter)
        except StoreUnavailable as exc:
            note(f"bulk {action} failed: {exc}")
            return
        self._exercised[f"bulk_{action}"] += 1
        note(
            f"bulk {action} on queue {queue}: counted {counted.count}"
            f"{'' if counted.exact else ' or more'}, changed {done}"
        )

    def _pause_queue(self, node: ClientNode, queue: str, pause_s: float) -> None:
        node.store.set_paused(queue, paused=True)
        self.paused[queue] += 1
        self._loop.note(node.label, f"pause queue {queue} for {pause_s:.3f} s")
        self._loop.at(self._loop.clock.t + pause_s, partial(self._resume_queue, node, queue))

    def _resume_queue(self, node: ClientNode, queue: str) -> None:
        self.paused[queue] -= 1
        if self.paused[queue] == 0:
            node.store.set_paused(queue, paused=False)
            self._loop.note(node.label, f"resume queue {queue}")

    def set_limits(self, node: ClientNode, queue: str, limits: flow.QueueLimits) -> None:
        """An operator sets a queue's limits as `PUT /v1/queues/{name}` does (the route's
        own functions: the name checked, the whole JSON body through `parse_settings`, the
        settings replaced whole with the queue's own retention sent back as it was), after
        a few broken bodies and out-of-bounds limits that must be refused naming a field,
        nothing stored."""
        rng = self._streams.get(f"client/{node.name}/limits")
        before = node.store.queue_limits()
        for data in rng.sample(hostile.LIMITS, 2):
            try:  # a body that is no JSON object: the limits' own parser names it
                if isinstance(data, Mapping):
                    queue_settings.parse_settings(data)
                else:
                    flow.parse_limits(data)
            except ValidationError as exc:
                self._refused(node, "queue limits", exc)
            else:
                self._broken(node, f"malformed queue limits were accepted: {data!r}")
        bad = rng.choice(hostile.BAD_LIMITS)
        try:
            node.store.set_queue_limits(queue, bad)
        except ValidationError as exc:
            self._refused(node, "queue limits (Python)", exc)
        else:
            self._broken(node, f"limits out of bounds were stored: {bad!r}")
        if node.store.queue_limits() != before:
            self._broken(node, "refused limits changed the store's")
        kept = queue_settings.stored_settings(node.store, queue_settings.check_queue_name(queue))
        body = json.loads(json.dumps(attrs.evolve(kept, limits=limits).to_json(queue)))
        del body["name"]  # what GET shows and PUT does not take
        parsed = queue_settings.parse_settings(body)
        if parsed.limits != limits:
            self._broken(node, f"limits {limits!r} read back from JSON as {parsed.limits!r}")
        stored = queue_settings.store_settings(node.store, queue, parsed)
        if stored != attrs.evolve(kept, limits=limits):
            self._broken(node, f"the store does not hold the settings of queue {queue} as set")

    def _waiting(self, node: ClientNode) -> None:
        """Why each job not yet running waits (`GET /v1/jobs/{id}`'s `waiting_reason`):
        a reason for each, and a limit's reason only where that limit is set."""
        store = node.store
        page = store.list_jobs(JobQuery(filter=JobFilter(states=WAITING), limit=1000))
        limits = store.queue_limits()
        reasons: Counter[str] = Counter()
        for job in page.jobs:
            reason = store.waiting_reason(job.id)
            reasons[str(reason)] += 1
            if reason in WAITED:
                self._exercised[f"waited_{reason}"] += 1
            set_ = limits.get(job.queue, flow.QueueLimits())
            needs = {
                flow.WaitingReason.CONCURRENCY_LIMIT: set_.concurrency_limit,
                flow.WaitingReason.KEY_CONCURRENCY_LIMIT: set_.key_concurrency_limit,
                flow.WaitingReason.RATE_LIMIT: set_.rate_limit or set_.key_rate_limit,
            }
            if reason is None or (reason in needs and needs[reason] is None):
                self._broken(
                    node,
                    f"{self._ledger.job_label(job.id)} ({job.state.value}, queue {job.queue}) "
                    f"waits for {reason}",
                )
        if reasons:
            self._loop.note(
                node.label,
                "waiting: " + ", ".join(f"{n} for {r}" for r, n in sorted(reasons.items())),
            )

    def _cancel_in_deploy(self, node: ClientNode, grace_s: float) -> None:
        """Cancel a running job whose handler does not stop when asked, and redeploy its
        worker: the lease is handed back with its cancellation requested."""
        try:
            page = node.store.list_jobs(
                JobQuery(filter=JobFilter(states=frozenset({S.RUNNING})), limit=1000)
            )
        except StoreUnavailable as exc:
            self._loop.note(node.label, f"list running failed: {exc}")
            return
        stubborn = sorted(
            (job.id, job.lease.worker)
            for job in page.jobs
            if job.lease is not None and not job.args.get("stop", True)
        )
        if not stubborn:
            return
        job_id, worker = self._streams.get(f"client/{node.name}/ops").choice(stubborn)
        self._person(node, "cancel", job_id)
        if self._redeploy(worker, grace_s):
            self._exercised["cancel_in_deploy"] += 1
