"""`/v1/jobs...`: submit, read, list, change, cancel and retry jobs."""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any
from uuid import UUID

import falcon

from taskyard.domain import contract
from taskyard.domain.catalog import unknown_problem
from taskyard.domain.contract import LISTED_ON_REQUEST, PAGE_BYTES_MAX
from taskyard.domain.errors import FieldError, JobNotFound, UnknownDependency, ValidationError
from taskyard.domain.ids import parse_job_id
from taskyard.domain.management import (
    BulkAction,
    count_bulk,
    parse_changes,
    parse_job_filter,
)
from taskyard.domain.model import WAITING_STATES, Enqueued, Job, JobState
from taskyard.domain.ports import JobFilter, JobPage, JobQuery, JobStore
from taskyard.domain.store.plans import CLAIMABLE
from taskyard.domain.submission import Submission, trace_context_of_headers
from taskyard.entrypoints.api import query
from taskyard.entrypoints.api.body import BATCH_BODY_BYTES_MAX, read_object
from taskyard.entrypoints.api.services import Services

IDEMPOTENCY_HEADER = contract.IDEMPOTENCY_KEY_HEADER.name
TRACEPARENT_HEADER = contract.TRACEPARENT_HEADER.name
TRACESTATE_HEADER = contract.TRACESTATE_HEADER.name
log = logging.getLogger("taskyard.api")


def job_path(job_id: UUID) -> str:
    return f"/v1/jobs/{job_id}"


def job_id_of(text: str) -> UUID:
    """A job id from a path; a malformed one is simply not found."""
    job_id = parse_job_id(text)
    if job_id is None:
        raise JobNotFound(text)
    return job_id


def _submit(
    services: Services,
    req: falcon.Request,
    submissions: Sequence[Submission],
    raw: Sequence[Mapping[str, Any]],
    *,
    prefix: str,
) -> list[Enqueued]:
    try:
        return services.submissions.submit(
            submissions,
            correlation_id=req.context.request_id,
            trace_context=req.context.trace_context,
        )
    except UnknownDependency as exc:
        raise UnknownDependency(exc.job_id, _dependency_field(exc.job_id, raw, prefix)) from None


def _dependency_field(job_id: UUID, raw: Sequence[Mapping[str, Any]], prefix: str) -> str:
    """Where the first mention of an unknown dependency is, as the client sent it."""
    for index, item in enumerate(raw):
        deps = item.get("depends_on")
        for position, dep in enumerate(deps if isinstance(deps, list) else ()):
            if isinstance(dep, str) and parse_job_id(dep) == job_id:
                where = f"{prefix}[{index}]." if prefix else ""
                return f"{where}depends_on[{position}]"
    return f"{prefix}.depends_on" if prefix else "depends_on"


def _trace_context(req: falcon.Request) -> None:
    """The request's W3C trace context (`traceparent`, `tracestate`) for the jobs it
    creates, on `req.context`; a malformed one is ignored and warned of (W3C asks a
    receiver to carry on without it, not to refuse the request)."""
    context, problem = trace_context_of_headers(
        req.get_header(TRACEPARENT_HEADER), req.get_header(TRACESTATE_HEADER)
    )
    req.context.trace_context = context
    req.context.trace_problem = problem
    if problem is not None:
        log.warning("ignored a malformed traceparent header")


def _warned(
    services: Services,
    req: falcon.Request,
    answer: dict[str, Any],
    submissions: Sequence[Submission],
    *,
    prefix: str,
) -> dict[str, Any]:
    """The answer to an accepted submission, with a warning for each job of a task no
    worker has published (`unknown_task` is `warn`: one set to `refuse` was refused), and
    for a malformed `traceparent` header it ignored."""
    warnings: list[dict[str, str]] = []
    unknown = services.client.unknown(submissions)
    if unknown:
        problem = unknown_problem(services.client.unknown_task)
        where = [f"{prefix}[{i}].{problem.field}" if prefix else problem.field for i in unknown]
        warnings.extend({"field": field, "message": problem.message} for field in where)
        log.warning("accepted %d job(s) of a task no worker has published", len(unknown))
    trace_problem = req.context.trace_problem
    if trace_problem is not None:
        warnings.append({"field": trace_problem.field, "message": trace_problem.message})
    if warnings:
        answer["warnings"] = warnings
    return answer


class Jobs:
    """`POST /v1/jobs` submits one job; `GET /v1/jobs` lists them."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        query.params_of(req, ())
        data = read_object(req)
        _trace_context(req)
        submission = self.services.client.parse(
            data, idempotency_key_header=req.get_header(IDEMPOTENCY_HEADER)
        )
        [enqueued] = _submit(self.services, req, [submission], [data], prefix="")
        job = enqueued.job
        req.context.job_id = str(job.id)
        resp.status = falcon.HTTP_201 if enqueued.created else falcon.HTTP_200
        resp.location = job_path(job.id)
        resp.media = _warned(self.services, req, {**job.to_json()}, [submission], prefix="")

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        state, queue, task, limit, cursor, include = contract.LISTING_PARAMS
        params = query.params_of(req, {p.name for p in contract.LISTING_PARAMS})
        cursor_text = query.value(params, cursor)
        page = self.services.store.list_jobs(
            JobQuery(
                filter=JobFilter(
                    states=query.states(params, state),
                    queues=query.values(params, queue),
                    tasks=query.values(params, task),
                ),
                limit=query.value(params, limit),
                cursor=query.decode_cursor(cursor_text) if cursor_text is not None else None,
            )
        )
        resp.content_type = falcon.MEDIA_JSON
        resp.data = listing(page, include=query.values(params, include), bytes_max=PAGE_BYTES_MAX)


def listing(page: JobPage, *, include: Collection[str], bytes_max: int) -> bytes:
    """`{"jobs": [...], "next_cursor": ...}` of `page` with only the asked-for optional
    fields, cut short (with a cursor after its last job) where it would pass `bytes_max`."""
    left_out = set(LISTED_ON_REQUEST) - set(include)
    parts: list[bytes] = []
    size = 0
    next_cursor = page.next_cursor
    for job in page.jobs:
        shown = {k: v for k, v in job.to_json().items() if k not in left_out}
        part = json.dumps(shown, ensure_ascii=False).encode()
        if parts and size + len(part) > bytes_max:
            last = page.jobs[len(parts) - 1]
            next_cursor = (last.created_at, last.id)
            break
        parts.append(part)
        size += len(part) + 2
    cursor = query.encode_cursor(next_cursor) if next_cursor is not None else None
    return (
        b'{"jobs": ['
        + b", ".join(parts)
        + b'], "next_cursor": '
        + json.dumps(cursor).encode()
        + b"}"
    )


class Batch:
    """`POST /v1/jobs/batch`: 1 to 1,000 submissions, stored all or nothing."""

    body_bytes_max = BATCH_BODY_BYTES_MAX

    def __init__(self, services: Services) -> None:
        self.services = services

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        query.params_of(req, ())
        if req.get_header(IDEMPOTENCY_HEADER) is not None:
            raise ValidationError(
                [
                    FieldError(
                        IDEMPOTENCY_HEADER,
                        "a batch takes an idempotency_key in each job, not the header",
                    )
                ]
            )
        data = read_object(req, limit_bytes=self.body_bytes_max)
        _trace_context(req)
        submissions = self.services.client.parse_batch(data)
        enqueued = _submit(self.services, req, submissions, data["jobs"], prefix="jobs")
        req.context.job_count = len(enqueued)
        resp.status = falcon.HTTP_201
        answer = {"jobs": [e.job.to_json() for e in enqueued]}
        resp.media = _warned(self.services, req, answer, submissions, prefix="jobs")


class OneJob:
    """`GET`, `PATCH` (priority and/or run_at) and `DELETE` (cancel) of `/v1/jobs/{id}`."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        resp.media = job_detail(self.services, _seen(req, job_id))

    def on_patch(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        the_id = _seen(req, job_id)
        changes = parse_changes(read_object(req))
        job = self.services.store.reschedule(
            the_id, priority=changes.priority, run_at=changes.run_at
        )
        resp.media = job.to_json()

    def on_delete(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        resp.media = self.services.client.cancel(_seen(req, job_id)).to_json()


NOT_STARTED = WAITING_STATES | {CLAIMABLE}
"""The states of a job that has not started (again) yet: only such a job has a reason to
wait (the store's own sets, `store.reads.waiting_reason`'s)."""


def waiting_reason_of(store: JobStore, job: Job) -> str | None:
    """Why `job`, as just read, waits (`JobStore.waiting_reason`); None, without asking
    the store, when it has started or finished. Read after the job, the reason is None
    when the job started meanwhile."""
    reason = store.waiting_reason(job.id) if job.state in NOT_STARTED else None
    return None if reason is None else reason.value


def job_detail(services: Services, job_id: UUID) -> dict[str, Any]:
    """`GET /v1/jobs/{id}`: the job, and why it waits (`contract.JOB_DETAIL`)."""
    job = services.store.get(job_id)
    return {**job.to_json(), "waiting_reason": waiting_reason_of(services.store, job)}


def _seen(req: falcon.Request, text: str) -> UUID:
    """The job id of the path (404 when malformed); the id routes take no query parameter."""
    query.params_of(req, ())
    job_id = job_id_of(text)
    req.context.job_id = str(job_id)
    return job_id


class Cancel:
    """`POST /v1/jobs/{id}/cancel`."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def on_post(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        resp.media = self.services.client.cancel(_seen(req, job_id)).to_json()


class Retry:
    """`POST /v1/jobs/{id}/retry`: a dead or cancelled job runs again."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def on_post(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        resp.media = retry_job(self.services, _seen(req, job_id)).to_json()


def retry_job(services: Services, job_id: UUID) -> Job:
    """Retry one job (for the API and the dashboard), waking its queue's workers when it is
    queued at once."""
    job = services.store.retry(job_id)
    if job.state is JobState.QUEUED:
        services.client.ring([job.queue])
    return job


class Attempts:
    """`GET /v1/jobs/{id}/attempts`, oldest first."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        records = self.services.store.attempts(_seen(req, job_id))
        resp.media = {"attempts": [record.to_json() for record in records]}


def _bulk_request(req: falcon.Request, action: BulkAction) -> tuple[JobFilter, bool]:
    """The filter of a bulk request, and whether `?dry_run=true` asks only for the count."""
    params = query.params_of(req, {contract.DRY_RUN.name})
    dry_run = query.flag(params, contract.DRY_RUN)
    return parse_job_filter(read_object(req), action=action), dry_run


def _counted(
    services: Services, req: falcon.Request, job_filter: JobFilter, action: BulkAction
) -> dict[str, Any]:
    """The answer of a dry run: how many jobs the action would change now (nothing is
    written; `exact` is false when more matched than a count looks at)."""
    counted = count_bulk(services.store, job_filter, action=action)
    req.context.job_count = counted.count
    return {"count": counted.count, "exact": counted.exact, "dry_run": True}


def bulk_act(services: Services, job_filter: JobFilter, action: BulkAction) -> int:
    """Do a bulk action (for the API and the dashboard): how many jobs it changed. A retry
    wakes the workers of the queues it touched (every queue when the filter names none)."""
    if action == "cancel":
        return services.store.cancel_many(job_filter)
    count = services.store.retry_many(job_filter)
    if count:
        names = job_filter.queues or {q.name for q in services.store.queues()}
        services.client.ring(sorted(names))
    return count


class BulkRetry:
    """`POST /v1/jobs/retry`: every dead or cancelled job the filter matches runs again
    (`?dry_run=true`: only count them)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        job_filter, dry_run = _bulk_request(req, "retry")
        if dry_run:
            resp.media = _counted(self.services, req, job_filter, "retry")
            return
        count = bulk_act(self.services, job_filter, "retry")
        req.context.job_count = count
        resp.media = {"count": count}


class BulkCancel:
    """`POST /v1/jobs/cancel`: every unfinished job the filter matches is cancelled
    (`?dry_run=true`: only count them)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        job_filter, dry_run = _bulk_request(req, "cancel")
        if dry_run:
            resp.media = _counted(self.services, req, job_filter, "cancel")
            return
        count = bulk_act(self.services, job_filter, "cancel")
        req.context.job_count = count
        resp.media = {"count": count}
