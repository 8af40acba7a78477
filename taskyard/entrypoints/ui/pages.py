"""The dashboard's pages: Falcon resources that render Jinja2 templates.

Every page is a `Page`. Who may reach it is the API's `Guard`'s decision (`api/access.py`),
from the access its route declares in `UI_ROUTES`: open (the login form, the static
files) or protected (a session cookie or a bearer token, when tokens are configured).
`UiGuard` (middleware, after the `Guard`) adds the dashboard's own rules: an action (any
POST to a protected page) needs the session's CSRF token; refusals and errors reach the
browser as HTML pages with the status `problems.py` gave them (a 401 for a page is the
login form); every dashboard response carries the Content-Security-Policy.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlencode
from uuid import UUID

import attrs
import falcon
import jinja2
from markupsafe import Markup

from taskyard import __version__
from taskyard.domain.contract import LISTING_PARAMS, TASK_LEN_MAX
from taskyard.domain.errors import IllegalTransition, JobNotFound, StaleFence
from taskyard.domain.ids import parse_job_id
from taskyard.domain.management import (
    BULK_STATES,
    RETRYABLE_STATES,
    RUNNING_JOBS_QUERY,
    count_bulk,
    parse_job_filter,
    with_running_jobs,
)
from taskyard.domain.management import BulkAction as BulkActionName
from taskyard.domain.model import TERMINAL_STATES, Job, JobState
from taskyard.domain.ports import JobFilter, JobQuery
from taskyard.domain.schema import Integer, Param
from taskyard.domain.storable import text_problem
from taskyard.domain.timefmt import seconds_between, to_epoch_s
from taskyard.entrypoints.api import query
from taskyard.entrypoints.api.access import Access, BearerToken, Guard
from taskyard.entrypoints.api.jobs import bulk_act, retry_job, waiting_reason_of
from taskyard.entrypoints.api.problems import PROBLEM_JSON, Problem, bad_request, not_found
from taskyard.entrypoints.api.services import Services
from taskyard.entrypoints.api.system import queue_name_of_path
from taskyard.entrypoints.ui.charts import outcome_chart
from taskyard.entrypoints.ui.session import (
    COOKIE_NAME,
    COOKIE_PATH,
    CSRF_FIELD,
    SESSION_S,
    Session,
    SessionKeys,
)
from taskyard.entrypoints.ui.views import COUNT_SCAN_MAX, SERIES_BUCKET_S, Views, error_type_of

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PARTIAL_HEADER = "X-Taskyard-Partial"
REFRESH_S = 5
"""How often an open page refreshes its live part (only while the tab is visible)."""
PAGE_LIMIT_DEFAULT = 50
PAGE_LIMIT_MAX = 200
PAGE_LIMIT = Param(
    name="limit", kind=Integer(low=1, high=PAGE_LIMIT_MAX), default=PAGE_LIMIT_DEFAULT
)
FORM_BYTES_MAX = 64 * 1024
FORM_FIELDS_MAX = 100
SHOWN_CHARS_MAX = 100_000
"""A JSON value (args, result, checkpoint) or a traceback is cut to this on a page."""
DEPENDENCIES_SHOWN_MAX = 100


@attrs.frozen(kw_only=True)
class NavItem:
    label: str
    href: str
    needs: str | None = None
    """The store method the page reads, for a page that not every store has: the entry is
    shown only when the store has it."""
    built: bool = True
    """False for a page whose place is kept but which does not exist yet (nothing links to
    it)."""

    def available(self, store: object) -> bool:
        return self.built and (self.needs is None or callable(getattr(store, self.needs, None)))


NAV = (
    NavItem(label="Overview", href="/ui"),
    NavItem(label="Jobs", href="/ui/jobs"),
    NavItem(label="Queues", href="/ui/queues"),
    NavItem(label="Workers", href="/ui/workers"),
    NavItem(label="Dead letters", href="/ui/dead"),
    # A page that reads a store method: shown when the store has it.
    NavItem(label="Schedules", href="/ui/schedules", needs="schedules"),
)


class Ui:
    """What every page shares: the services, the templates, the session keys, the views."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.store = services.store
        self.clock = services.client.clock
        self.keys = SessionKeys(services.tokens)
        self.tokens = BearerToken(services.tokens)
        self.views = Views(services.store, lambda: to_epoch_s(self.clock.now()))
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("taskyard.entrypoints.ui", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["when"] = _when
        self.env.filters["seconds"] = _seconds
        self.env.filters["shown"] = _shown
        self.env.globals.update(
            nav=[item for item in NAV if item.available(services.store)],
            version=__version__,
            refresh_s=REFRESH_S,
            csrf_field=CSRF_FIELD,
            protected=self.keys.protected,
            S=JobState,
        )

    def now_s(self) -> int:
        return int(to_epoch_s(self.clock.now()))

    def render(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        template_name: str,
        *,
        status: int = 200,
        **context: Any,
    ) -> None:
        """The page, or only its live part when the page's own script asks for it (with an
        ETag, so an unchanged part costs a 304 and no bytes)."""
        template = self.env.get_template(template_name)
        session: Session | None = getattr(req.context, "ui_session", None)
        context.setdefault("active", "")
        context["csrf_token"] = session.csrf_token if session is not None else ""
        context["signed_in"] = session is not None and self.keys.protected
        resp.status = status
        resp.content_type = falcon.MEDIA_HTML
        resp.vary = (PARTIAL_HEADER,)
        if req.get_header(PARTIAL_HEADER) == "live" and "live" in template.blocks:
            block = template.blocks["live"]
            text = "".join(block(template.new_context(context)))
            tag = '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'
            resp.etag = tag
            if req.get_header("If-None-Match") == tag:
                not_modified(resp)
                return
            resp.text = text
            return
        resp.text = template.render(context)


def not_modified(resp: falcon.Response) -> None:
    """304: no body, and so no Content-Type either."""
    resp.status = falcon.HTTP_304
    resp.content_type = None
    resp.text = None


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment is not None else "—"


def _seconds(value: float | None) -> str:
    """
    >>> [_seconds(v) for v in (None, 0.0123, 4.5, 75, 7300)]
    ['—', '12 ms', '4.5 s', '1 min 15 s', '2 h 1 min']
    """
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{int(value // 60)} min {int(value % 60)} s"
    return f"{int(value // 3600)} h {int(value % 3600 // 60)} min"


def _shown(value: object) -> str:
    """A JSON value as indented text, cut at `SHOWN_CHARS_MAX` characters."""
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
    if len(text) > SHOWN_CHARS_MAX:
        return text[:SHOWN_CHARS_MAX] + f"\n… ({len(text) - SHOWN_CHARS_MAX:,} more characters)"
    return text


# --- input --------------------------------------------------------------------------------


def _text(params: Mapping[str, list[str]], name: str, *, max_len: int) -> str | None:
    """A free-text query parameter: 1 to `max_len` characters a store can hold (what a task
    name, an idempotency key or an error type may be)."""
    value = query.single(params, name)
    if value is None or value == "":
        return None
    if len(value) > max_len:
        raise bad_request(f"{name} must be 1 to {max_len} characters", field=name)
    problem = text_problem(value)
    if problem is not None:
        raise bad_request(f"{name} {problem}", field=name)
    return value


def _filter_of(params: Mapping[str, list[str]]) -> JobFilter:
    """The state/queue/task filter of a query string, read as the API reads it; an empty
    value (a blank form field) is no condition."""
    cleaned = {k: [v for v in values if v != ""] for k, values in params.items()}
    state, queue, task = LISTING_PARAMS[:3]
    return JobFilter(
        states=query.states(cleaned, state),
        queues=query.values(cleaned, queue),
        tasks=query.values(cleaned, task),
    )


def _filter_query(job_filter: JobFilter) -> str:
    pairs = [("state", s.value) for s in sorted(job_filter.states)]
    pairs += [("queue", q) for q in sorted(job_filter.queues)]
    pairs += [("task", t) for t in sorted(job_filter.tasks)]
    return urlencode(pairs)


def read_form(req: falcon.Request) -> dict[str, list[str]]:
    """An `application/x-www-form-urlencoded` body of at most 64 KiB and 100 fields."""
    media = (req.content_type or "").split(";")[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise Problem(
            status=415,
            kind="unsupported-media-type",
            title="Unsupported media type",
            detail="send a form (application/x-www-form-urlencoded)",
        )
    raw = req.bounded_stream.read(FORM_BYTES_MAX + 1)
    if len(raw) > FORM_BYTES_MAX:
        raise Problem(
            status=413, kind="payload-too-large", title="Body too large", detail="over 64 KiB"
        )
    try:
        text = raw.decode("ascii")
        return parse_qs(
            text,
            keep_blank_values=True,
            strict_parsing=bool(text),
            encoding="utf-8",
            errors="strict",
            max_num_fields=FORM_FIELDS_MAX,
        )
    except (UnicodeDecodeError, ValueError):
        raise bad_request("the form cannot be read") from None


def safe_next(value: str | None) -> str:
    """Where to go after the login: a path of this dashboard, else its overview.

    >>> [safe_next(v) for v in ("/ui/jobs?state=dead", "//evil.example", "/ui\\\\x", "/v1/jobs")]
    ['/ui/jobs?state=dead', '/ui', '/ui', '/ui']
    """
    if (
        value is None
        or not re.fullmatch(r"/ui(/[A-Za-z0-9._~%/-]*)?(\?[A-Za-z0-9._~%&=+-]*)?", value)
        or "//" in value
        or "/.." in value
    ):
        return "/ui"
    return value


def see_other(resp: falcon.Response, location: str) -> None:
    resp.status = falcon.HTTP_303
    resp.location = location
    resp.content_type = falcon.MEDIA_HTML
    resp.text = ""


# --- the pages ----------------------------------------------------------------------------


class Page:
    """A dashboard resource (its access is declared with its route, in `UI_ROUTES`)."""

    active = ""

    def __init__(self, ui: Ui) -> None:
        self.ui = ui


class Overview(Page):
    """`GET /ui`: counts by state, queue depths and ages, outcomes over time."""

    active = "Overview"

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query.params_of(req, ())
        views = self.ui.views
        buckets = views.outcome_series()
        self.ui.render(
            req,
            resp,
            "overview.html",
            active=self.active,
            counts=views.state_counts(),
            queues=views.queues(),
            chart=outcome_chart(buckets, bucket_s=SERIES_BUCKET_S) if buckets else None,
            buckets=buckets or [],
            states=list(JobState),
        )


class Jobs(Page):
    """`GET /ui/jobs`: filter, find by id or idempotency key, keyset pages."""

    active = "Jobs"

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = query.params_of(req, {"state", "queue", "task", "limit", "cursor", "q", "done"})
        found = _text(params, "q", max_len=200)
        if found is not None:
            self._find(req, resp, found)
            return
        job_filter = _filter_of(params)
        limit = query.value(params, PAGE_LIMIT)
        cursor_text = query.single(params, "cursor")
        cursor = query.decode_cursor(cursor_text) if cursor_text else None
        page = self.ui.store.list_jobs(JobQuery(filter=job_filter, limit=limit, cursor=cursor))
        filter_text = _filter_query(job_filter)
        next_url = None
        if page.next_cursor is not None:
            extra = urlencode({"limit": limit, "cursor": query.encode_cursor(page.next_cursor)})
            next_url = f"/ui/jobs?{filter_text + '&' if filter_text else ''}{extra}"
        self.ui.render(
            req,
            resp,
            "jobs.html",
            active=self.active,
            jobs=page.jobs,
            job_filter=job_filter,
            filter_text=filter_text,
            states=list(JobState),
            limit=limit,
            next_url=next_url,
            first_page=cursor is None,
            done=_done_notice(params),
            bulk_links=_bulk_links(job_filter),
            searched=None,
        )

    def _find(self, req: falcon.Request, resp: falcon.Response, text: str) -> None:
        job_id = parse_job_id(text.strip())
        if job_id is not None:
            try:
                self.ui.store.get(job_id)
            except JobNotFound:
                pass
            else:
                see_other(resp, f"/ui/jobs/{job_id}")
                return
        found = self.ui.views.find_by_key(text)
        if found is not None:
            see_other(resp, f"/ui/jobs/{found.id}")
            return
        self.ui.render(
            req,
            resp,
            "jobs.html",
            status=404,
            active=self.active,
            jobs=[],
            job_filter=JobFilter(),
            filter_text="",
            states=list(JobState),
            limit=PAGE_LIMIT_DEFAULT,
            next_url=None,
            first_page=True,
            done=None,
            bulk_links={},
            searched=text,
        )


def _bulk_links(job_filter: JobFilter) -> dict[str, str]:
    """The filter of each bulk action a job list offers, its states narrowed to those the
    action changes; none for an empty filter (a bulk action names a condition)."""
    if job_filter.empty:
        return {}
    links: dict[str, str] = {}
    for action, states in BULK_STATES.items():
        narrowed = job_filter.states & states
        if job_filter.states and not narrowed:
            continue
        links[action] = _filter_query(attrs.evolve(job_filter, states=narrowed))
    return links


def _done_notice(params: Mapping[str, list[str]]) -> str | None:
    done = query.single(params, "done")
    if done is None:
        return None
    match = re.fullmatch(r"(retry|cancel)-(\d{1,10})", done)
    if match is None:
        raise bad_request("not a notice this dashboard gave out", field="done")
    verb = "retried" if match.group(1) == "retry" else "cancelled"
    count = int(match.group(2))
    return f"{count:,} job{'s' if count != 1 else ''} {verb}."


def _action_of(value: str | None) -> BulkActionName:
    for action in BULK_STATES:
        if value == action:
            return action
    raise bad_request("action must be retry or cancel", field="action")


def _bulk_filter(fields: Mapping[str, list[str]], action: BulkActionName) -> JobFilter:
    """A bulk action's filter from a query string or a form, validated as the API validates
    a bulk body (`parse_job_filter`: 422 naming each problem); blank fields are left out."""
    data = {
        name: [v for v in fields[name] if v != ""]
        for name in ("state", "queue", "task")
        if any(v != "" for v in fields.get(name, ()))
    }
    return parse_job_filter(data, action=action)


class BulkAction(Page):
    """`GET /ui/jobs/bulk?action=...&<filter>`: how many jobs the action changes now, and a
    button; `POST /ui/jobs/bulk` does it."""

    active = "Jobs"

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = query.params_of(req, {"action", "state", "queue", "task"})
        action = _action_of(query.single(params, "action"))
        job_filter = _bulk_filter(params, action)
        count = count_bulk(self.ui.store, job_filter, action=action, scan_max=COUNT_SCAN_MAX)
        self.ui.render(
            req,
            resp,
            "confirm.html",
            active=self.active,
            action=action,
            job_filter=job_filter,
            filter_text=_filter_query(job_filter),
            count=count,
            allowed=sorted(BULK_STATES[action]),
        )

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        query.params_of(req, ())
        form = req.context.ui_form
        unknown = sorted(set(form) - {"state", "queue", "task", "action", CSRF_FIELD})
        if unknown:
            raise bad_request(f"unknown field {unknown[0]!r}", field=unknown[0])
        action = _action_of(query.single(form, "action"))
        job_filter = _bulk_filter(form, action)
        count = bulk_act(self.ui.services, job_filter, action)
        self.ui.views.changed()
        req.context.job_count = count
        see_other(resp, f"/ui/jobs?{_filter_query(job_filter)}&done={action}-{count}")


def _job_of(text: str) -> UUID:
    job_id = parse_job_id(text)
    if job_id is None:
        raise JobNotFound(text[:100])
    return job_id


class JobDetail(Page):
    """`GET /ui/jobs/{job_id}`: every field, the attempts, dependencies both ways."""

    active = "Jobs"

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        params = query.params_of(req, {"done"})
        the_id = _job_of(job_id)
        store = self.ui.store
        job = store.get(the_id)
        attempts = store.attempts(the_id)
        upstream: list[Job | UUID] = []
        for dep in job.depends_on[:DEPENDENCIES_SHOWN_MAX]:
            try:
                upstream.append(store.get(dep))
            except JobNotFound:
                upstream.append(dep)
        downstream = self.ui.views.dependents(job)
        now = self.ui.clock.now()
        done = query.single(params, "done")
        if done is not None and done not in ("retry", "cancel"):
            raise bad_request("not a notice this dashboard gave out", field="done")
        self.ui.render(
            req,
            resp,
            "job.html",
            active=self.active,
            job=job,
            attempts=attempts,
            upstream=upstream,
            upstream_more=max(0, len(job.depends_on) - DEPENDENCIES_SHOWN_MAX),
            downstream=downstream,
            can_retry=job.state in RETRYABLE_STATES,
            can_cancel=job.state not in TERMINAL_STATES,
            lease_left_s=(
                seconds_between(now, job.lease.expires_at) if job.lease is not None else None
            ),
            timeline=_timeline(attempts, now),
            waiting_reason=waiting_reason_of(store, job),
            done=done,
        )


def _timeline(attempts: Sequence[Any], now: datetime) -> Markup | None:
    """The attempts as bars on one time axis (an SVG); the table beside it has the text."""
    if not attempts:
        return None
    start = attempts[0].started_at
    ends = [a.finished_at or now for a in attempts]
    span = max(0.001, *(seconds_between(start, end) for end in ends))
    rows = []
    for index, (attempt, end) in enumerate(zip(attempts, ends, strict=True)):
        x = 90 + 620 * seconds_between(start, attempt.started_at) / span
        w = max(2.0, 620 * seconds_between(attempt.started_at, end) / span)
        y = 6 + index * 22
        rows.append(
            f'<text class="axis" x="4" y="{y + 13}">attempt {attempt.attempt}</text>'
            f'<rect class="outcome-{attempt.outcome.value}" x="{x:.1f}" y="{y}" '
            f'width="{w:.1f}" height="16"><title>attempt {attempt.attempt}: '
            f"{attempt.outcome.value}</title></rect>"
        )
    height = 12 + 22 * len(attempts)
    return Markup(
        f'<svg class="timeline" viewBox="0 0 720 {height}" role="img" '
        f'aria-label="attempts on a time axis, {len(attempts)} in all" '
        f'xmlns="http://www.w3.org/2000/svg">{"".join(rows)}</svg>'
    )


class JobAction(Page):
    """`POST /ui/jobs/{job_id}/retry` and `/cancel`."""

    def __init__(self, ui: Ui, action: str) -> None:
        super().__init__(ui)
        self.action = action

    def on_post(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        query.params_of(req, ())
        the_id = _job_of(job_id)
        if self.action == "retry":
            retry_job(self.ui.services, the_id)
        else:
            self.ui.services.client.cancel(the_id)
        self.ui.views.changed()
        req.context.job_id = str(the_id)
        see_other(resp, f"/ui/jobs/{the_id}?done={self.action}")


class Queues(Page):
    """`GET /ui/queues`: counts, the oldest waiting job, pause and resume."""

    active = "Queues"

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query.params_of(req, ())
        self.ui.render(
            req,
            resp,
            "queues.html",
            active=self.active,
            queues=self.ui.views.queues(),
            states=list(JobState),
        )


class QueueAction(Page):
    """`POST /ui/queues/{name}/pause` and `/resume`."""

    def __init__(self, ui: Ui, *, paused: bool) -> None:
        super().__init__(ui)
        self.paused = paused

    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        query.params_of(req, ())
        self.ui.store.set_paused(queue_name_of_path(name), paused=self.paused)
        if not self.paused:
            self.ui.services.client.ring([name])
        self.ui.views.changed()
        see_other(resp, "/ui/queues")


class Workers(Page):
    """`GET /ui/workers`: the leader, the schedulers, the workers and what they run."""

    active = "Workers"

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query.params_of(req, ())
        coordinator = self.ui.services.coordinator
        now = self.ui.clock.now()
        workers = coordinator.workers() if coordinator is not None else []
        if workers:  # each with the jobs the store says it runs, as `GET /v1/workers`
            workers = with_running_jobs(workers, self.ui.store.list_jobs(RUNNING_JOBS_QUERY).jobs)
        self.ui.render(
            req,
            resp,
            "workers.html",
            active=self.active,
            has_coordinator=coordinator is not None,
            leader=coordinator.leader() if coordinator is not None else None,
            schedulers=coordinator.schedulers() if coordinator is not None else [],
            workers=sorted(workers, key=lambda w: w.id),
            ago=lambda moment: max(0.0, seconds_between(moment, now)),
        )


class Schedules(Page):
    """`GET /ui/schedules`: each schedule, its next fire and its recent fires (as the
    API shows them)."""

    active = "Schedules"

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query.params_of(req, ())
        self.ui.render(
            req,
            resp,
            "schedules.html",
            active=self.active,
            schedules=[s.to_json() for s in self.ui.store.schedules()],
        )


class DeadLetters(Page):
    """`GET /ui/dead`: dead jobs grouped by task and error type."""

    active = "Dead letters"

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query.params_of(req, ())
        self.ui.render(
            req,
            resp,
            "dead.html",
            active=self.active,
            groups=self.ui.views.dead_groups(),
            error_type_of=error_type_of,
        )


class DeadGroupRetry(Page):
    """`GET /ui/dead/retry?task=...&error_type=...`: confirm; `POST` retries the group."""

    active = "Dead letters"

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = query.params_of(req, {"task", "error_type"})
        task, error_type = self._group(params)
        job_ids = self.ui.views.dead_group(task, error_type)
        self.ui.render(
            req,
            resp,
            "confirm_group.html",
            active=self.active,
            task=task,
            error_type=error_type,
            count=len(job_ids),
        )

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        query.params_of(req, ())
        form = req.context.ui_form
        task, error_type = self._group(
            {k: v for k, v in form.items() if k in ("task", "error_type")}
        )
        retried = 0
        queues: set[str] = set()
        for job_id in self.ui.views.dead_group(task, error_type):
            try:
                job = self.ui.store.retry(job_id)
            except (IllegalTransition, StaleFence, JobNotFound):
                continue  # retried or changed meanwhile
            retried += 1
            queues.add(job.queue)
        if queues:
            self.ui.services.client.ring(sorted(queues))
        self.ui.views.changed()
        req.context.job_count = retried
        see_other(resp, f"/ui/jobs?state=queued&done=retry-{retried}")

    @staticmethod
    def _group(params: Mapping[str, list[str]]) -> tuple[str, str]:
        task = _text(params, "task", max_len=TASK_LEN_MAX)
        error_type = _text(params, "error_type", max_len=200)
        if task is None or error_type is None:
            raise bad_request("give task and error_type")
        return task, error_type


class Login(Page):
    """`GET /ui/login`: the form; `POST /ui/login`: a token for a session cookie."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = query.params_of(req, {"next"})
        target = safe_next(query.single(params, "next"))
        if not self.ui.keys.protected:
            see_other(resp, target)
            return
        self.ui.render(req, resp, "login.html", next=target, failed=False)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        query.params_of(req, ())
        form = read_form(req)
        target = safe_next(query.single(form, "next"))
        if not self.ui.keys.protected:
            see_other(resp, target)
            return
        token = query.single(form, "token") or ""
        if not (0 < len(token) <= 4096 and self.ui.tokens.matches(token)):
            self.ui.render(req, resp, "login.html", status=401, next=target, failed=True)
            resp.set_header("WWW-Authenticate", 'Cookie realm="taskyard"')
            return
        cookie = self.ui.keys.issue(now_s=self.ui.now_s(), token=token)
        set_session_cookie(req, resp, cookie)
        see_other(resp, target)


class Logout(Page):
    """`POST /ui/logout`: the cookie is deleted."""

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        query.params_of(req, ())
        resp.unset_cookie(COOKIE_NAME, path=COOKIE_PATH, same_site="Strict")
        see_other(resp, "/ui/login" if self.ui.keys.protected else "/ui")


def is_https(req: falcon.Request) -> bool:
    """Served over HTTPS, directly or (as a proxy in front says) to the browser. Only ever
    adds `Secure`; a client that lies here only changes its own cookie."""
    forwarded = (req.get_header("X-Forwarded-Proto") or "").strip().lower()
    return req.scheme == "https" or forwarded == "https"


def set_session_cookie(req: falcon.Request, resp: falcon.Response, value: str) -> None:
    resp.set_cookie(
        COOKIE_NAME,
        value,
        max_age=SESSION_S,
        path=COOKIE_PATH,
        secure=is_https(req),
        http_only=True,
        same_site="Strict",
    )


# --- static files -------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Asset:
    data: bytes
    content_type: str
    etag: str


ASSET_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}


def load_assets() -> dict[str, Asset]:
    """Every file of the package's `static/` folder, read once, by its plain name."""
    out = {}
    for entry in resources.files("taskyard.entrypoints.ui").joinpath("static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if suffix not in ASSET_TYPES:
            continue
        data = entry.read_bytes()
        out[entry.name] = Asset(
            data=data,
            content_type=ASSET_TYPES[suffix],
            etag='"' + hashlib.sha256(data).hexdigest()[:32] + '"',
        )
    return out


class Static(Page):
    """`GET /ui/static/{name}`: one of the files shipped in the package, looked up by name
    in a table read at start (no path is ever built from the request)."""

    def __init__(self, ui: Ui) -> None:
        super().__init__(ui)
        self.assets = load_assets()

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        query.params_of(req, ())
        asset = self.assets.get(name)
        if asset is None:
            raise not_found(f"no file {name[:100]!r}")
        resp.etag = asset.etag
        resp.cache_control = ("no-cache",)
        if req.get_header("If-None-Match") == asset.etag:
            not_modified(resp)
            return
        resp.content_type = asset.content_type
        resp.data = asset.data


# --- the guard ----------------------------------------------------------------------------


class UiGuard:
    """The dashboard's rules for its pages, after the API's `Guard` let a request in.

    * with no tokens configured, a browser without a session gets an (anonymous) one, so
      its forms carry a CSRF token all the same;
    * every POST to a protected page needs the session's CSRF token in the form
      (`csrf_token`), else 403 with nothing done; a request the browser marks as coming
      from another site (`Sec-Fetch-Site: cross-site`) is refused 403 on every POST;
    * every response of a page (and of a path that matched no route) carries the
      Content-Security-Policy; a problem document becomes an HTML page, and a 401 for a
      GET the login form.
    """

    def __init__(self, ui: Ui, guard: Guard) -> None:
        self.ui = ui
        self.guard = guard

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, params: Any
    ) -> None:
        if not isinstance(resource, Page):
            return
        keys = self.ui.keys
        now_s = self.ui.now_s()
        session = keys.verify(req.cookies.get(COOKIE_NAME), now_s=now_s)
        if req.method == "POST" and req.get_header("Sec-Fetch-Site") == "cross-site":
            raise _forbidden("a form of another site cannot act here")
        if session is None and not keys.protected and req.method == "GET":
            cookie = keys.issue(now_s=now_s)
            set_session_cookie(req, resp, cookie)
            session = keys.verify(cookie, now_s=now_s)
        req.context.ui_session = session
        if self.guard.access_of(resource) is Access.OPEN or req.method != "POST":
            return
        form = read_form(req)
        req.context.ui_form = form
        if session is None or not session.csrf_ok(query.single(form, CSRF_FIELD)):
            raise _forbidden("the form's CSRF token is missing or not this session's")

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        if resource is not None and not isinstance(resource, Page):
            return
        resp.set_header("Content-Security-Policy", CSP)
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.set_header("Referrer-Policy", "same-origin")
        resp.set_header("X-Frame-Options", "DENY")
        if resource is None:
            return
        if resp.cache_control is None or resp.cache_control == []:
            resp.cache_control = ("no-store",)
        if resp.content_type != PROBLEM_JSON or not isinstance(resp.text, str):
            return
        doc = json.loads(resp.text)
        if doc["status"] == 401 and req.method == "GET":
            target = safe_next(req.relative_uri)
            self.ui.render(req, resp, "login.html", status=401, next=target, failed=False)
        else:
            self.ui.render(req, resp, "error.html", status=int(doc["status"]), problem=doc)


def _forbidden(detail: str) -> Problem:
    return Problem(status=403, kind="forbidden", title="Forbidden", detail=detail)
