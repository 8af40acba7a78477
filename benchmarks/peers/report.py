"""The report: medians over repeats, and the table (Markdown) with its header.

A column is one system in one config. A cell is the median over the runs that produced
the figure; a figure no run produced shows the first error (`failed: ...`), and a figure
not measured for that column stays empty. taskyard's cells carry their ratio to the
PgQueuer column of the same config (taskyard / PgQueuer).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

TASKYARD = "taskyard"
TIMES = "\u00d7"
"""The multiplication sign of the ratios."""


@attrs.frozen(kw_only=True)
class Column:
    system: str
    title: str
    version: str
    config: str
    label: str
    runs: Sequence[Mapping[str, Any]]
    """Each run: {"figures": {...}, "errors": {...}}."""
    kill: Mapping[str, Any] | None = None
    """The kill scenario's {"figures": ..., "errors": ...}, when it ran for this column."""
    failure: str | None = None
    """Why the column has no runs at all (its virtualenv could not be made, ...)."""

    @property
    def header(self) -> str:
        return f"{self.title} {self.version} ({self.label})"


def median(runs: Sequence[Mapping[str, Any]], key: str) -> float | None:
    """The median of a figure over the runs that have it.

    >>> median([{"figures": {"x": 3.0}}, {"figures": {"x": None}}, {"figures": {"x": 1.0}}], "x")
    2.0
    >>> median([{"figures": {}}], "x") is None
    True
    """
    values = [r["figures"][key] for r in runs if r["figures"].get(key) is not None]
    return statistics.median(values) if values else None


def _error(runs: Sequence[Mapping[str, Any]], phase: str) -> str | None:
    for run in runs:
        if phase in run.get("errors", {}):
            return str(run["errors"][phase])
    return None


def _num(value: float, digits: int = 0) -> str:
    """`1,895`, `3.3`.

    >>> _num(12384.4), _num(3.25, 1)
    ('12,384', '3.2')
    """
    return f"{value:,.{digits}f}"


def _ratio(mine: float | None, reference: float | None) -> str:
    if mine is None or not reference:
        return ""
    return f" ({mine / reference:.2f}{TIMES})"


@attrs.frozen(kw_only=True)
class Row:
    title: str
    phase: str
    """The phase whose error explains an empty cell."""
    keys: tuple[str, ...]
    digits: int = 0
    unit: str = ""


ROWS = (
    Row(
        title="drain, jobs/s between the first and the last handler start",
        phase="drain",
        keys=("drain_per_s",),
    ),
    Row(
        title="enqueue one at a time through the Python library, jobs/s",
        phase="enqueue_one",
        keys=("enqueue_one_per_s",),
    ),
    Row(
        title="enqueue 1,000 per call through the Python library, jobs/s",
        phase="enqueue_bulk",
        keys=("enqueue_bulk_per_s",),
    ),
    Row(
        title="pickup: one job every {gap} ms to idle workers, enqueue call included, p50 / p99 ms",
        phase="pickup",
        keys=("pickup_p50_ms", "pickup_p99_ms"),
        digits=1,
    ),
    Row(
        title="RSS of one idle worker process (with its children), MiB",
        phase="pickup",
        keys=("rss_mib",),
    ),
)


def _cell(column: Column, row: Row, reference: Column | None) -> str:
    values = [median(column.runs, key) for key in row.keys]
    if all(v is None for v in values):
        error = _error(column.runs, row.phase) or _error(column.runs, "run")
        return f"failed: {error}" if error else ""
    parts = []
    for key, value in zip(row.keys, values, strict=True):
        if value is None:
            parts.append("?")
            continue
        text = _num(value, row.digits)
        if reference is not None:
            text += _ratio(value, median(reference.runs, key))
        parts.append(text)
    return " / ".join(parts)


def _kill_cell(column: Column, reference: Column | None, kill_at_s: float) -> str:
    if column.kill is None:
        return ""
    if column.kill.get("errors"):
        return "failed: " + "; ".join(column.kill["errors"].values())
    figures = column.kill["figures"]
    seconds = figures.get("recovery_s")
    if seconds is None:
        text = str(figures.get("recovery", "not run again"))
    else:
        text = f"{seconds:.1f} s"
        if reference is not None and reference.kill is not None:
            theirs = reference.kill["figures"].get("recovery_s")
            text += _ratio(seconds, theirs)
    committed = figures.get("committed")
    if committed is None:
        text += "; outcome not recorded by the system"
    elif committed == 0:
        text += "; not committed"
    elif committed == 1:
        text += "; committed once"
    else:
        text += f"; committed {committed} times"
    if figures.get("outcome"):
        text += f" ({figures['outcome']})"
    return text


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(columns: Sequence[Column], *, gap_ms: float, kill_at_s: float, kill_job_s: float) -> str:
    """The Markdown table: one row per figure, one column per system and config."""
    refs = {c.config: c for c in columns if c.system == "pgqueuer"}
    lines = [
        "| figure | " + " | ".join(_escape(c.header) for c in columns) + " |",
        "| --- |" + " --- |" * len(columns),
    ]
    for row in ROWS:
        cells = []
        for column in columns:
            if column.failure is not None:
                cells.append(f"failed: {column.failure}")
                continue
            reference = refs.get(column.config) if column.system == TASKYARD else None
            cells.append(_cell(column, row, reference))
        title = row.title.format(gap=f"{gap_ms:g}")
        lines.append(f"| {title} | " + " | ".join(_escape(c) for c in cells) + " |")
    kill_cells = []
    for column in columns:
        reference = refs.get(column.config) if column.system == TASKYARD else None
        kill_cells.append(_kill_cell(column, reference, kill_at_s))
    if any(kill_cells):
        title = f"worker SIGKILLed {kill_at_s:g} s into a {kill_job_s:g} s job: runs again after"
        lines.append(f"| {title} | " + " | ".join(_escape(c) for c in kill_cells) + " |")
    return "\n".join(lines)


def header(meta: Mapping[str, Any]) -> str:
    m = meta["machine"]
    pg = meta.get("postgres") or {}
    rd = meta.get("redis") or {}
    o = meta["options"]
    lines = [
        f"taskyard peers benchmark, {meta['date']}",
        f"machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['kernel']}, "
        f"Python {m['python']}; load average at the start {m['load_average']}",
    ]
    if pg:
        lines.append(
            f"PostgreSQL {pg['version']} (fsync={pg['fsync']}, "
            f"synchronous_commit={pg['synchronous_commit']})"
        )
    if rd:
        lines.append(f"Redis {rd['version']} (save={rd['save']!r}, appendonly={rd['appendonly']})")
    lines.append(
        f"method: {o['workers']} worker processes started fresh per run; {o['jobs']:,} jobs per "
        f"run; median of {o['repeat']} run(s); pickup over {o['pickup_jobs']} jobs; "
        "completions and latency from a Unix datagram each handler sends "
        f"(net.unix.max_dgram_qlen={m.get('unix_dgram_qlen')})"
    )
    lines.append("ratios: taskyard / PgQueuer in the same config")
    return "\n".join(lines)


def profile_summary(collapsed: str, top: int = 15) -> str:
    """The busiest frames of py-spy's collapsed stacks (`frame;frame;... count` lines): by
    samples on top of the stack (self) and anywhere in it (total), as shares of all
    samples.

    >>> print(profile_summary("a (m.py:1);b (m.py:2) 3\\na (m.py:1) 1\\n", top=2))
    samples: 4
    by self:
      self  total  frame
     75.0%  75.0%  b (m.py:2)
     25.0% 100.0%  a (m.py:1)
    by total:
      self  total  frame
     25.0% 100.0%  a (m.py:1)
     75.0%  75.0%  b (m.py:2)
    """
    own: dict[str, int] = {}
    anywhere: dict[str, int] = {}
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            anywhere[frame] = anywhere.get(frame, 0) + count
    if not total:
        return "samples: 0"
    lines = [f"samples: {total}"]
    for title, counts in (("self", own), ("total", anywhere)):
        lines += [f"by {title}:", "  self  total  frame"]
        for frame in sorted(counts, key=lambda f: (-counts[f], f))[:top]:
            mine = own.get(frame, 0) / total
            lines.append(f"{mine:6.1%} {anywhere[frame] / total:6.1%}  {frame}")
    return "\n".join(lines)
