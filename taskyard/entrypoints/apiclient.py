"""A small client of the REST API for the command line (`submit`, `jobs`, `queues`,
`workers`), on the standard library's HTTP client, and the tables those commands print.

    client = ApiClient("http://127.0.0.1:8000", token=None)
    job = client.call("POST", "/v1/jobs", body={"task": "sleep"})

A refusal or failure of the API raises `ApiError` with the problem document; a network
failure raises `ApiUnreachable`. The CLI turns both into exit code 1.

What a person types is checked here before anything is sent (`queue_name`, `task_name`):
a name the API would refuse is a usage error of one line, shown escaped and shortened, so
control characters, NUL or a megabyte of text never reach the terminal or the URL.

Commands that change many jobs ask first (`confirm`), showing how many they will touch;
`--yes` skips the question, and without a terminal to ask on they refuse (exit 2) rather
than wait for an answer that cannot come.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

import attrs

from taskyard import __version__
from taskyard.domain.contract import TASK_LEN_MAX, is_queue_name
from taskyard.entrypoints import config
from taskyard.entrypoints.config import ConfigError

TIMEOUT_S = 30.0


@attrs.define
class ApiError(Exception):
    """The API answered with an error status."""

    status: int
    problem: Mapping[str, Any]

    def lines(self) -> list[str]:
        """What to print: status, title and detail, then one line per field error."""
        title = self.problem.get("title") or "error"
        detail = self.problem.get("detail")
        head = f"{self.status} {title}"
        if detail and detail != title:
            head = f"{head}: {detail}"
        out = [head]
        for error in self.problem.get("errors") or ():
            if isinstance(error, Mapping):
                line = f"{error.get('field') or '(body)'}: {error.get('message', '')}"
                if line not in head:  # a lone error is often the detail already
                    out.append(f"  {line}")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


@attrs.define
class ApiUnreachable(Exception):
    url: str
    reason: str

    def __str__(self) -> str:
        return f"cannot reach the API at {self.url}: {self.reason}"


@attrs.define
class Declined(Exception):
    """The person asked said no: nothing was changed."""

    what: str

    def __str__(self) -> str:
        return f"not confirmed: {self.what}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class ApiClient:
    def __init__(self, url: str, *, token: str | None, timeout_s: float = TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s
        self._opener = urllib.request.build_opener(_NoRedirect)

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Sequence[tuple[str, str]] = (),
    ) -> Any:
        """Send one request; the decoded JSON of a 2xx answer, else `ApiError`."""
        target = self.url + path
        if params:
            target = f"{target}?{urlencode(list(params))}"
        headers = {"Accept": "application/json", "User-Agent": f"taskyard-cli/{__version__}"}
        data = None
        if body is not None:
            data = json.dumps(body, allow_nan=False).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(target, data=data, headers=headers, method=method)
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            raise ApiError(status=exc.code, problem=_problem(exc.code, raw)) from None
        except OSError as exc:  # URLError and timeouts are OSErrors
            reason = getattr(exc, "reason", exc)
            text = getattr(reason, "strerror", None) or str(reason)
            raise ApiUnreachable(url=self.url, reason=text) from None
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiUnreachable(url=self.url, reason="the answer is not JSON") from None


def _problem(status: int, raw: bytes) -> Mapping[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if isinstance(doc, Mapping):
        return doc
    text = raw.decode("utf-8", "replace").strip()[:200]
    return {"title": f"HTTP {status}", "detail": text or None}


def job_path(job_id: str, suffix: str = "") -> str:
    return f"/v1/jobs/{quote(job_id, safe='')}{suffix}"


# --- printing -----------------------------------------------------------------------------


def short_time(value: Any) -> str:
    """`2026-11-22T10:00:00.123Z` as `2026-11-22 10:00:00`; '-' for none."""
    if not value:
        return "-"
    text = str(value)
    return text[:19].replace("T", " ") if len(text) >= 19 else text


def compact(value: Any, width: int = 60) -> str:
    if value is None:
        return "-"
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell; the last column is not padded."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        lines.append("  ".join([*padded, row[-1]]).rstrip())
    return "\n".join(lines)


def job_view(job: Mapping[str, Any]) -> str:
    """One job as `field  value` lines."""
    lease = job.get("lease")
    error = job.get("last_error")
    rows: list[tuple[str, Any]] = [
        ("id", job.get("id")),
        ("state", job.get("state")),
        ("task", job.get("task")),
        ("args", compact(job.get("args"), 200)),
        ("queue", job.get("queue")),
        ("priority", job.get("priority")),
        ("attempt", job.get("attempt", 0)),
        ("max_attempts", job.get("max_attempts")),
        ("run_at", short_time(job.get("run_at"))),
        ("created_at", short_time(job.get("created_at"))),
        ("updated_at", short_time(job.get("updated_at"))),
        ("finished_at", short_time(job.get("finished_at"))),
    ]
    if lease:
        rows.append(("lease", f"{lease.get('worker')} until {short_time(lease.get('expires_at'))}"))
    if job.get("cancel_requested"):
        rows.append(("cancel_requested", "yes"))
    if job.get("depends_on"):
        rows.append(("depends_on", ", ".join(job["depends_on"])))
    if job.get("waiting_reason"):
        rows.append(("waiting_reason", job["waiting_reason"]))
    for name in ("idempotency_key", "concurrency_key", "correlation_id"):
        if job.get(name):
            rows.append((name, job[name]))
    if job.get("result") is not None:
        rows.append(("result", compact(job.get("result"), 200)))
    if error:
        rows.append(("last_error", f"{error.get('type')}: {error.get('message')}"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def jobs_table(jobs: Sequence[Mapping[str, Any]]) -> str:
    return table(
        ["ID", "STATE", "TASK", "QUEUE", "PRI", "ATTEMPT", "RUN_AT", "UPDATED"],
        [
            [
                j.get("id"),
                j.get("state"),
                compact(j.get("task"), 40),
                j.get("queue"),
                j.get("priority"),
                j.get("attempt"),
                short_time(j.get("run_at")),
                short_time(j.get("updated_at")),
            ]
            for j in jobs
        ],
    )


def attempts_table(attempts: Sequence[Mapping[str, Any]]) -> str:
    def duration(a: Mapping[str, Any]) -> str:
        value = a.get("duration_seconds")
        return "-" if value is None else f"{value:.3f}s"

    def error(a: Mapping[str, Any]) -> str:
        e = a.get("error")
        return "-" if not e else compact(f"{e.get('type')}: {e.get('message')}", 60)

    return table(
        ["ATTEMPT", "OUTCOME", "WORKER", "STARTED", "DURATION", "ERROR"],
        [
            [
                a.get("attempt"),
                a.get("outcome"),
                a.get("worker"),
                short_time(a.get("started_at")),
                duration(a),
                error(a),
            ]
            for a in attempts
        ],
    )


STATES = ("scheduled", "queued", "running", "retrying", "succeeded", "dead", "cancelled")


def queues_table(queues: Sequence[Mapping[str, Any]]) -> str:
    def oldest(q: Mapping[str, Any]) -> str:
        age = q.get("oldest_queued_age_seconds")
        return "-" if age is None else f"{age:.1f}s"

    def limit(q: Mapping[str, Any]) -> str:
        value = (q.get("limits") or {}).get("concurrency_limit")
        return "-" if value is None else str(value)

    def rate(q: Mapping[str, Any]) -> str:
        """`started/count/period`: `3/10/60s`, 3 of 10 starts in the last 60 s."""
        found = (q.get("limits") or {}).get("rate_limit")
        if not found:
            return "-"
        started = (q.get("usage") or {}).get("started_in_window")
        return f"{started}/{found.get('count')}/{found.get('period_seconds'):g}s"

    return table(
        ["QUEUE", "PAUSED", *(s.upper() for s in STATES), "LIMIT", "RATE", "OLDEST_QUEUED"],
        [
            [
                q.get("name"),
                "yes" if q.get("paused") else "no",
                *((q.get("counts") or {}).get(s, 0) for s in STATES),
                limit(q),
                rate(q),
                oldest(q),
            ]
            for q in queues
        ],
    )


def workers_table(workers: Sequence[Mapping[str, Any]]) -> str:
    return table(
        ["WORKER", "QUEUES", "CONCURRENCY", "RUNNING", "STARTED", "LAST_HEARTBEAT"],
        [
            [
                w.get("id"),
                ",".join(w.get("queues") or ()) or "*",
                w.get("concurrency"),
                len(w.get("running_job_ids") or ()),
                short_time(w.get("started_at")),
                short_time(w.get("last_heartbeat_at")),
            ]
            for w in workers
        ],
    )


def schedulers_table(schedulers: Sequence[Mapping[str, Any]]) -> str:
    return table(
        ["SCHEDULER", "LEADER", "TERM", "LAST_HEARTBEAT"],
        [
            [
                s.get("id"),
                "yes" if s.get("leader") else "no",
                s.get("term") if s.get("term") is not None else "-",
                short_time(s.get("last_heartbeat_at")),
            ]
            for s in schedulers
        ],
    )


# --- what a person types ------------------------------------------------------------------

SHOWN_LEN_MAX = 40


def shown(text: str) -> str:
    """`text` fit for one line of a terminal: quoted and escaped (control characters, NUL),
    and cut with its length named when it is long."""
    if len(text) > SHOWN_LEN_MAX:
        return f"{text[:SHOWN_LEN_MAX]!r}... ({len(text):,} characters)"
    return repr(text)


def queue_name(text: str, *, source: str) -> str:
    """A queue name the API accepts, else a usage error naming `source` (the flag)."""
    if not is_queue_name(text):
        raise ConfigError(
            source, f"{shown(text)} is not a queue name (1 to 100 of letters, digits, . _ -)"
        )
    return text


def task_name(text: str, *, source: str) -> str:
    if not 1 <= len(text) <= TASK_LEN_MAX:
        raise ConfigError(source, f"{shown(text)}: a task name is 1 to {TASK_LEN_MAX} characters")
    return text


def confirm(question: str, *, yes: bool, declined: str) -> None:
    """Ask `question` on the terminal (on stderr, so stdout stays the command's output) and
    go on only on yes. `yes` (the `--yes` flag) skips it; without a terminal to ask on it is
    a usage error. Raises `Declined` with `declined` on any other answer or end of input."""
    if yes:
        return
    stdin = sys.stdin
    if stdin is None or stdin.closed or not stdin.isatty():
        raise ConfigError(
            "--yes", f"stdin is not a terminal to ask on: {question} Add --yes to go ahead."
        )
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    answer = stdin.readline()
    if answer.strip().lower() not in ("y", "yes"):
        if not answer:
            print(file=sys.stderr)  # end of input: end the prompt's line
        raise Declined(declined)


# --- the commands' shared shell -----------------------------------------------------------


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    """`--url`, `--token`, `--config` and `--json`."""
    config.add_arguments(parser, config.CLIENT_SETTINGS)
    parser.add_argument(
        "--json", action="store_true", help="print the API's JSON instead of a table"
    )


def run_client(args: argparse.Namespace, work: Callable[[ApiClient], str | None]) -> int:
    """Resolve `--url`/`--token`, run `work`, print what it returns. Exit code 0, or 1
    (printing the problem) when the API refused, failed or could not be reached, or the
    person asked declined."""
    settings = config.resolve(args, config.CLIENT_SETTINGS)
    client = ApiClient(settings.url, token=settings.token)
    try:
        out = work(client)
    except ApiError as exc:
        for line in exc.lines():
            print(f"taskyard: {line}" if not line.startswith(" ") else line, file=sys.stderr)
        return 1
    except ApiUnreachable as exc:
        print(f"taskyard: {_unreachable_line(exc, settings)}", file=sys.stderr)
        return 1
    except Declined as exc:
        print(f"taskyard: {exc}", file=sys.stderr)
        return 1
    if out:
        print(out)
    return 0


def _unreachable_line(exc: ApiUnreachable, settings: config.Settings) -> str:
    """One line: which URL failed and how, where that URL came from unless it is the
    default, and the two ways to give another."""
    where = f" (from {settings.sources['url']})" if "url" in settings.sources else ""
    return (
        f"cannot reach the API at {exc.url}{where}: {exc.reason}; is taskyard running there? "
        "Give its address with --url or TASKYARD_URL"
    )


def as_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)
