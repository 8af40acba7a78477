"""A job's trace context (`trace_context`) is kept by every store: read back as it was
enqueued, through a get, a listing, a claim and a report (`JobStore` contract)."""

from __future__ import annotations

from taskyard.domain.model import JobState
from taskyard.domain.ports import ClaimRequest, JobQuery, JobStore
from tests import factories as f

TRACE = {
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "tracestate": "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
}


def test_a_jobs_trace_context_reads_back_as_enqueued_and_claimed(store: JobStore) -> None:
    traced = f.enqueue(store, trace_context=TRACE)
    plain = f.enqueue(store)
    assert traced.trace_context == TRACE
    assert plain.trace_context is None
    assert store.get(traced.id).trace_context == TRACE
    listed = {job.id: job for job in store.list_jobs(JobQuery(limit=10)).jobs}
    assert listed[traced.id].trace_context == TRACE
    request = ClaimRequest(worker="w1", limit=2, lease_ttl_s=30.0)
    claimed = {job.id: job for job in store.claim(request)}
    assert claimed[traced.id].trace_context == TRACE
    assert claimed[plain.id].trace_context is None
    [result] = store.report([f.succeed(claimed[traced.id])])
    assert result.state is JobState.SUCCEEDED
    assert store.get(traced.id).trace_context == TRACE


def test_many_traced_jobs_at_once_keep_theirs(store: JobStore) -> None:
    """A batch large enough for a store's bulk insert path (PostgreSQL's COPY)."""
    enqueued = f.enqueue_many(store, 64, trace_context=TRACE)
    assert all(store.get(e.job.id).trace_context == TRACE for e in enqueued)
