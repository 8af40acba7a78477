"""Queues, workers, schedulers, stats, and the open endpoints: health, readiness, metrics,
the OpenAPI document and the landing page."""

from __future__ import annotations

import html
import logging
from typing import Any

import falcon
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from taskyard import __version__
from taskyard.domain import contract
from taskyard.domain.contract import is_queue_name
from taskyard.domain.errors import CoordinatorUnavailable, StoreUnavailable
from taskyard.domain.management import RUNNING_JOBS_QUERY, with_running_jobs
from taskyard.domain.model import JobState, QueueInfo
from taskyard.domain.ports import SchedulerInfo, WorkerInfo
from taskyard.domain.queue_settings import parse_settings, store_settings, stored_settings
from taskyard.domain.schema import quoted
from taskyard.domain.timefmt import format_time
from taskyard.entrypoints.api import query
from taskyard.entrypoints.api.body import read_object
from taskyard.entrypoints.api.metrics import metrics_registry
from taskyard.entrypoints.api.probes import Deadline, NoAnswer, Probe
from taskyard.entrypoints.api.problems import not_found
from taskyard.entrypoints.api.services import Services

log = logging.getLogger("taskyard.api")


def queue_json(info: QueueInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "paused": info.paused,
        "counts": {state.value: info.counts.get(state, 0) for state in JobState},
        "oldest_queued_age_seconds": info.oldest_queued_age_s,
        "limits": info.limits.to_json(),
        "usage": info.usage.to_json(),
    }


def worker_json(info: WorkerInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "host": info.host,
        "pid": info.pid,
        "queues": list(info.queues),
        "concurrency": info.concurrency,
        "started_at": format_time(info.started_at),
        "last_heartbeat_at": format_time(info.last_heartbeat_at),
        "running_job_ids": [str(job_id) for job_id in info.running_job_ids],
    }


def scheduler_json(info: SchedulerInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "host": info.host,
        "pid": info.pid,
        "leader": info.leader,
        "term": info.term,
        "last_heartbeat_at": format_time(info.last_heartbeat_at),
    }


class Queues:
    """`GET /v1/queues`: every queue that has jobs, limits or a pause flag, with its counts,
    its limits and what it uses of them."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query.params_of(req, ())
        resp.media = {"queues": [queue_json(q) for q in self.services.store.queues()]}


def queue_name_of_path(name: str) -> str:
    """The queue a path names; anything else is simply not found (the dashboard's too)."""
    if not is_queue_name(name):
        raise not_found(f"{quoted(name)} is not a queue name ({contract.QUEUE_NAME.says()})")
    return name


class OneQueue:
    """`GET` and `PUT /v1/queues/{name}`: the queue's settings (limits, weight, its own
    retention), replaced whole by a PUT; any well-formed name, with or without jobs."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        query.params_of(req, ())
        queue = queue_name_of_path(name)
        resp.media = stored_settings(self.services.store, queue).to_json(queue)

    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        query.params_of(req, ())
        queue = queue_name_of_path(name)
        settings = parse_settings(read_object(req))
        stored = store_settings(self.services.store, queue, settings)
        # Room may have opened (a limit raised or removed): idle workers look again.
        self.services.client.ring([queue])
        resp.media = stored.to_json(queue)


class PauseQueue:
    """`POST /v1/queues/{name}/pause`: workers stop claiming from it; kept in the store."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        query.params_of(req, ())
        self.services.store.set_paused(queue_name_of_path(name), paused=True)
        resp.media = {"name": name, "paused": True}


class ResumeQueue:
    """`POST /v1/queues/{name}/resume`: claims go on, and idle workers are woken."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        query.params_of(req, ())
        self.services.store.set_paused(queue_name_of_path(name), paused=False)
        self.services.client.ring([name])
        resp.media = {"name": name, "paused": False}


class Workers:
    """`GET /v1/workers`: live workers, as the coordinator knows them (none without one),
    each with the jobs the store says it runs."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query.params_of(req, ())
        coordinator = self.services.coordinator
        found = coordinator.workers() if coordinator is not None else []
        if found:
            running = self.services.store.list_jobs(RUNNING_JOBS_QUERY).jobs
            found = with_running_jobs(found, running)
        resp.media = {"workers": [worker_json(w) for w in found]}


class Tasks:
    """`GET /v1/tasks`: the task catalog, as the workers last published it (built-in tasks
    are known everywhere and not listed)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query.params_of(req, ())
        resp.media = {"tasks": [task.to_json() for task in self.services.store.tasks()]}


class Schedulers:
    """`GET /v1/schedulers`: live schedulers and which one leads."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query.params_of(req, ())
        coordinator = self.services.coordinator
        found = coordinator.schedulers() if coordinator is not None else []
        resp.media = {"schedulers": [scheduler_json(s) for s in found]}


class StatsResource:
    """`GET /v1/stats?window=SECONDS` (60 to 604,800; 3,600 by default)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = query.params_of(req, {contract.WINDOW.name})
        window_s = query.value(params, contract.WINDOW)
        stats = self.services.store.stats(window_s=float(window_s))
        resp.media = {
            "window_seconds": window_s,
            "succeeded": stats.succeeded,
            "dead": stats.dead,
            "failed_attempts": stats.failed_attempts,
            "throughput_per_second": stats.throughput_per_s,
            "run_seconds_p50": stats.run_s_p50,
            "run_seconds_p95": stats.run_s_p95,
        }


class Health:
    """`GET /healthz`: the process answers."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


class Ready:
    """`GET /readyz`: the store (and the coordinator, when configured) answer, each within
    `PROBE_TIMEOUT_S` (`probes.py`)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.store_probe = Probe("store", services.store.now)
        coordinator = services.coordinator
        self.coordinator_probe = (
            Probe("coordinator", coordinator.leader) if coordinator is not None else None
        )

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        deadline = Deadline()
        store = self.store_probe.start()
        coordinator = self.coordinator_probe.start() if self.coordinator_probe else None
        checks: dict[str, str] = {}
        try:
            deadline.wait(store)
            checks["store"] = "ok"
        except (StoreUnavailable, NoAnswer) as exc:
            checks["store"] = f"down: {exc}"
        if coordinator is not None:
            try:
                deadline.wait(coordinator)
                checks["coordinator"] = "ok"
            except (CoordinatorUnavailable, NoAnswer) as exc:
                checks["coordinator"] = f"down: {exc}"
        ready = all(value == "ok" for value in checks.values())
        if not ready:
            log.warning("not ready", extra={"checks": checks})
            resp.status = falcon.HTTP_503
            resp.set_header("Retry-After", "1")
        resp.media = {"status": "ok" if ready else "unavailable", "checks": checks}


class Metrics:
    """`GET /metrics`: Prometheus exposition, gathered through the ports at scrape time."""

    def __init__(self, services: Services) -> None:
        self.registry = metrics_registry(services)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = generate_latest(self.registry)


class OpenApi:
    """`GET /openapi.json`."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.document


class Index:
    """`GET /`: a small landing page."""

    def __init__(self, services: Services) -> None:
        self.protected = bool(services.tokens)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_HTML
        resp.text = landing_page(protected=self.protected, base_url=req.prefix)


def landing_page(*, protected: bool, base_url: str) -> str:
    auth = (
        "Requests under <code>/v1/</code> need <code>Authorization: Bearer &lt;token&gt;</code>."
        if protected
        else "Requests under <code>/v1/</code> need no token (none is configured)."
    )
    links = [
        ("/ui", "the web dashboard"),
        ("/v1/jobs", "jobs, newest first"),
        ("/v1/queues", "queues and their counts"),
        ("/v1/workers", "live workers"),
        ("/v1/schedulers", "live schedulers and the leader"),
        ("/v1/stats", "the last hour's outcomes"),
        ("/openapi.json", "the OpenAPI 3.1 document"),
        ("/healthz", "liveness"),
        ("/readyz", "readiness: the store and the coordinator"),
        ("/metrics", "Prometheus metrics"),
    ]
    items = "\n".join(
        f'    <li><a href="{href}"><code>{href}</code></a>: {html.escape(text)}</li>'
        for href, text in links
    )
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>taskyard</title>
  <style>body {{ font-family: system-ui, sans-serif; max-width: 40em; margin: 2em auto; }}</style>
</head>
<body>
  <h1>taskyard {html.escape(__version__)}</h1>
  <p>A fault-tolerant distributed job scheduler. Submit a job:</p>
  <pre>curl -s {html.escape(base_url)}/v1/jobs -H 'content-type: application/json' \\
     -d '{{"task": "sleep", "args": {{"seconds": 0.1}}}}'</pre>
  <p>{auth}</p>
  <ul>
{items}
  </ul>
</body>
</html>
"""
