"""Concurrent submissions of one API process share one store call and one doorbell ring.

Each `POST /v1/jobs` of a busy API would otherwise pay a store call (a statement, a commit)
and a Redis ring of its own. Requests that arrive while a store call is under way wait for
it to end and then go together, like a group commit: one request leads (it makes the call
for everything waiting, its own jobs first in line), the others sleep until their answer
is in. Nothing waits on purpose: a request that finds no call under way makes its own at
once, so a quiet API answers exactly as fast as before.

Grouping never changes an answer:

* Every request's jobs are prepared (ids, correlation id) before they join a group, and
  its answer is its own slice of the group's, in its order. A group is stored all or
  nothing, like one request, so when it succeeds each request is answered exactly as if
  it had been stored alone, in group order (a repeated idempotency key in a later
  request of the group finds the earlier one's job, `created=False`).
* When a group is refused (a conflicting idempotency key, an unknown dependency, any
  error but an unavailable store), nothing of it was stored: each request of the group is
  then submitted again on its own, in order, so only the request at fault is refused.
* When the store is unavailable, every request of the group hears so (a 503), as each
  would have alone.
* A request returns only once its jobs are durable (the group's call has returned).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping, Sequence

import attrs

from taskyard.domain.client import Client
from taskyard.domain.errors import StoreUnavailable
from taskyard.domain.model import Enqueued, NewJob
from taskyard.domain.submission import Submission

GROUP_JOBS_MAX = 1_000
"""The most jobs one grouped store call carries (a request's batch always goes whole)."""


@attrs.define(eq=False)
class _Request:
    new_jobs: list[NewJob]
    ready: threading.Event = attrs.field(factory=threading.Event)
    """Set when the answer is in, or when this request is to lead the next group."""
    lead: bool = False
    answer: list[Enqueued] | None = None
    error: BaseException | None = None


class SubmissionGroups:
    """`submit` as `Client.submit`, with concurrent callers sharing store calls."""

    def __init__(self, client: Client, *, jobs_max: int = GROUP_JOBS_MAX) -> None:
        assert jobs_max >= 1, jobs_max
        self.client = client
        self._jobs_max = jobs_max
        self._lock = threading.Lock()
        self._waiting: deque[_Request] = deque()
        self._busy = False
        """A store call is under way (or about to be): newcomers wait for it."""
        self.calls = 0
        self.grouped = 0
        """Store calls made, and requests answered by them (for tests and metrics)."""

    def submit(
        self,
        submissions: Sequence[Submission],
        *,
        correlation_id: str | None = None,
        trace_context: Mapping[str, str] | None = None,
    ) -> list[Enqueued]:
        request = _Request(
            new_jobs=self.client.prepare(
                submissions, correlation_id=correlation_id, trace_context=trace_context
            )
        )
        with self._lock:
            self._waiting.append(request)
            request.lead = not self._busy
            self._busy = True
        if not request.lead:
            request.ready.wait()
        if request.lead:
            request.ready.clear()
            self._lead()
            request.ready.wait()  # set by `_lead`: the request was in the group it stored
        if request.error is not None:
            raise request.error
        assert request.answer is not None
        return request.answer

    def _lead(self) -> None:
        """Store one group (the waiting requests, oldest first, up to the size bound), then
        hand the lead to the oldest request still waiting, or stand down."""
        with self._lock:
            group = [self._waiting.popleft()]
            jobs = len(group[0].new_jobs)
            while self._waiting and jobs + len(self._waiting[0].new_jobs) <= self._jobs_max:
                jobs += len(self._waiting[0].new_jobs)
                group.append(self._waiting.popleft())
        try:
            self._store(group)
        finally:
            for request in group:
                request.ready.set()
            with self._lock:
                if self._waiting:
                    successor = self._waiting[0]
                    successor.lead = True
                    successor.ready.set()
                else:
                    self._busy = False

    def _store(self, group: list[_Request]) -> None:
        self.calls += 1
        self.grouped += len(group)
        try:
            enqueued = self.client.enqueue([job for r in group for job in r.new_jobs])
        except StoreUnavailable as exc:
            for request in group:
                request.error = exc
            return
        except Exception as exc:
            if len(group) == 1:
                group[0].error = exc
                return
            for request in group:  # nothing was stored: each on its own, in order
                self.calls += 1
                try:
                    request.answer = self.client.enqueue(request.new_jobs)
                except Exception as alone:
                    request.error = alone
            return
        start = 0
        for request in group:
            end = start + len(request.new_jobs)
            request.answer = enqueued[start:end]
            start = end
