"""The peers benchmark: taskyard beside PgQueuer, Procrastinate, Huey and Celery, on this
machine, in one run, by one method. See README.md beside this file.

    python benchmarks/peers/run.py                         # everything: 10,000 jobs, 3 runs
    python benchmarks/peers/run.py --jobs 2000 --repeat 1  # a quick look
    python benchmarks/peers/run.py --systems taskyard,pgqueuer --configs defaults

Run it with the checkout's development venv (it needs psycopg and redis, which taskyard
depends on). Each system runs from a virtualenv of its own under --cache; taskyard from one
where this checkout is installed in editable mode. The table goes to standard output; the
raw results (JSON), the table and every process's log go under --out.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import phases  # noqa: E402
import report  # noqa: E402
import services  # noqa: E402
import venvs  # noqa: E402
from sidechannel import LANES, receiver  # noqa: E402
from systems import SYSTEMS, System  # noqa: E402

CHECKOUT = HERE.parents[1]
DEFAULT_CACHE = Path.home() / ".cache" / "taskyard-peers"
PHASES = ("enqueue", "drain", "pickup", "kill")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per system and config")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma separated")
    parser.add_argument(
        "--configs",
        default="defaults,tuned,async",
        help="comma separated (only taskyard has an async config: its async def handlers)",
    )
    parser.add_argument("--phases", default=",".join(PHASES), help="comma separated")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per run")
    parser.add_argument("--pickup-jobs", type=int, default=500)
    parser.add_argument("--pickup-gap-ms", type=float, default=20.0)
    parser.add_argument("--kill-at-s", type=float, default=2.0)
    parser.add_argument("--kill-job-s", type=float, default=10.0)
    parser.add_argument(
        "--recovery-wait-s",
        type=float,
        default=60.0,
        help="how long to wait for the killed worker's job to start again",
    )
    parser.add_argument(
        "--profile",
        default="",
        help="comma separated systems whose first worker py-spy records during the drain "
        "(py-spy must be on PATH); the busiest frames are printed after the table",
    )
    parser.add_argument(
        "--database-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a PostgreSQL server where databases may be created and dropped",
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379", help="a Redis server")
    parser.add_argument(
        "--redis-dbs", default="1-15", help="Redis database numbers a run may claim (empty ones)"
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="virtualenvs go here")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for results.json, table.md and logs (default: under --cache/results)",
    )
    parser.add_argument(
        "--taskyard-python",
        default=None,
        help="run taskyard from the virtualenv of this interpreter instead of making one "
        "(it must have this checkout installed)",
    )
    parser.add_argument("--python", default=venvs.default_python(), help="makes the venvs")
    return parser


def _options(args: argparse.Namespace) -> phases.Options:
    chosen = frozenset(p for p in args.phases.split(",") if p)
    unknown = chosen - set(PHASES)
    if unknown:
        raise SystemExit(f"--phases: unknown {', '.join(sorted(unknown))} (use {PHASES})")
    for name, value, low, high in (
        ("--jobs", args.jobs, 2, 1_000_000),
        ("--repeat", args.repeat, 1, 20),
        ("--workers", args.workers, 1, 16),
        ("--pickup-jobs", args.pickup_jobs, 1, 100_000),
    ):
        if not low <= value <= high:
            raise SystemExit(f"{name}: {value} is out of range ({low} to {high})")
    if not (0 <= args.pickup_gap_ms <= 10_000 and 0 < args.kill_at_s < args.kill_job_s <= 600):
        raise SystemExit("--pickup-gap-ms, --kill-at-s or --kill-job-s out of range")
    if not 0 < args.recovery_wait_s <= 3_600:
        raise SystemExit("--recovery-wait-s: out of range (0 to 3600)")
    return phases.Options(
        jobs=args.jobs,
        workers=args.workers,
        pickup_jobs=args.pickup_jobs,
        pickup_gap_ms=args.pickup_gap_ms,
        kill_at_s=args.kill_at_s,
        kill_job_s=args.kill_job_s,
        recovery_wait_s=args.recovery_wait_s,
        phases=chosen,
        profile=frozenset(s.key for s in _systems(args.profile)),
    )


def _systems(text: str) -> list[System]:
    chosen = []
    for key in (k.strip() for k in text.split(",") if k.strip()):
        if key not in SYSTEMS:
            raise SystemExit(f"--systems: unknown {key!r} (use {', '.join(SYSTEMS)})")
        chosen.append(SYSTEMS[key])
    return chosen


def _bin_dir(system: System, args: argparse.Namespace, logs: Path) -> Path:
    if system.key == "taskyard" and args.taskyard_python:
        return Path(args.taskyard_python).absolute().parent
    return venvs.ensure(
        system, cache=args.cache, checkout=CHECKOUT, python=args.python, log=logs / "pip.log"
    )


def _version(system: System, bin_dir: Path) -> str:
    """The installed version of the system's package, as its virtualenv reports it."""
    import subprocess

    name = (
        system.requirements[0].split("==")[0].split("[")[0] if system.requirements else "taskyard"
    )
    version = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            [
                str(bin_dir / "python"),
                "-c",
                f"import importlib.metadata as m; print(m.version({name!r}))",
            ],
            capture_output=True,
            check=False,
            text=True,
            timeout=60,
        )
        if done.returncode == 0:
            version = done.stdout.strip()
    if system.key == "taskyard":
        version += _git_describe()
    return version


def _git_describe() -> str:
    import subprocess

    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["git", "-C", str(CHECKOUT), "describe", "--always", "--dirty"],
            capture_output=True,
            check=False,
            text=True,
            timeout=10,
        )
        if done.returncode == 0 and done.stdout.strip():
            return f" @ {done.stdout.strip()}"
    return ""


def _env(system: System, config: Any, database: str, redis_url: str, sock: str) -> dict[str, str]:
    """The environment of a system's processes: this one's minus any PYTHONPATH, PG* or
    TASKYARD_* setting, plus where everything is."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TASKYARD_", "PG", "PYTHON", "CELERY", "HUEY", "VIRTUAL_ENV"))
    }
    env.update(
        PYTHONPATH=str(phases.DRIVERS),
        PYTHONUNBUFFERED="1",
        PEERS_SOCKET=sock,
        PEERS_LANES=str(LANES),
        PEERS_DATABASE_URL=database,
        PEERS_REDIS_URL=redis_url,
    )
    if database:
        env["PGDSN"] = database
        env["TASKYARD_DATABASE_URL"] = database
    if redis_url:
        env["TASKYARD_REDIS_URL"] = redis_url
    env.update(config.env)
    return env


@contextlib.contextmanager
def _namespace(system: System, args: argparse.Namespace) -> Any:
    with contextlib.ExitStack() as stack:
        database = (
            stack.enter_context(services.postgres_database(args.database_url, system.key))
            if system.postgres
            else ""
        )
        redis_url = (
            stack.enter_context(
                services.redis_database(args.redis, services.parse_dbs(args.redis_dbs))
            )
            if system.redis
            else ""
        )
        yield database, redis_url


def _one(
    system: System,
    config: Any,
    args: argparse.Namespace,
    options: phases.Options,
    bin_dir: Path,
    logs: Path,
    kill: bool,
) -> dict[str, Any]:
    """One run (or the kill scenario) in fresh namespaces, with a receiver of its own."""
    logs.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    where: dict[str, str] = {}
    try:
        with receiver() as recv, _namespace(system, args) as (database, redis_url):
            ctx = phases.Context(
                system=system,
                config=config,
                bin=bin_dir,
                env=_env(system, config, database, redis_url, recv.path),
                logs=logs,
                receiver=recv,
                options=options,
            )
            where = {"database": database, "redis": redis_url}
            figures, errors = phases.run_kill(ctx) if kill else phases.run_measured(ctx)
    except (phases.PhaseError, services.ServiceError, OSError) as exc:
        figures, errors = {}, {"run": f"{type(exc).__name__}: {exc}"}
    except Exception as exc:  # a broken peer or server must not stop the other systems
        figures, errors = {}, {"run": f"{type(exc).__name__}: {exc}"}
    return {
        "figures": figures,
        "errors": errors,
        "seconds": time.monotonic() - began,
        "where": where,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    options = _options(args)
    systems = _systems(args.systems)
    configs = [c for c in args.configs.split(",") if c]
    now = datetime.datetime.now(datetime.UTC)
    out = args.out or args.cache / "results" / f"peers-{now:%Y%m%dT%H%M%SZ}"
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    meta: dict[str, Any] = {
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": services.machine(),
        "options": {**vars(args), "cache": str(args.cache), "out": str(out)},
    }
    meta["options"]["phases"] = sorted(options.phases)
    if any(s.postgres for s in systems):
        meta["postgres"] = services.postgres_facts(args.database_url)
    if any(s.redis for s in systems):
        meta["redis"] = services.redis_facts(args.redis)
    print(report.header(meta), flush=True)

    columns: list[report.Column] = []
    for system in systems:
        try:
            bin_dir = _bin_dir(system, args, logs)
        except venvs.VenvError as exc:
            columns += [
                report.Column(
                    system=system.key,
                    title=system.title,
                    version="?",
                    config=c.name,
                    label=c.label,
                    runs=[],
                    failure=str(exc),
                )
                for c in system.configs
                if c.name in configs
            ]
            continue
        version = _version(system, bin_dir)
        for config in (c for c in system.configs if c.name in configs):
            runs = []
            for n in range(1, args.repeat + 1):
                where = logs / f"{system.key}-{config.name}-{n}"
                print(f"# {system.key} {config.name} run {n}/{args.repeat}", flush=True)
                runs.append(_one(system, config, args, options, bin_dir, where, kill=False))
                print(f"#   {json.dumps(runs[-1], default=str)}", flush=True)
            kill = None
            if "kill" in options.phases and config.is_default:
                print(f"# {system.key} {config.name} kill scenario", flush=True)
                where = logs / f"{system.key}-{config.name}-kill"
                kill = _one(system, config, args, options, bin_dir, where, kill=True)
                print(f"#   {json.dumps(kill, default=str)}", flush=True)
            columns.append(
                report.Column(
                    system=system.key,
                    title=system.title,
                    version=version,
                    config=config.name,
                    label=config.label,
                    runs=runs,
                    kill=kill,
                )
            )

    text = report.table(
        columns, gap_ms=args.pickup_gap_ms, kill_at_s=args.kill_at_s, kill_job_s=args.kill_job_s
    )
    document = report.header(meta) + "\n\n" + text + "\n"
    (out / "table.md").write_text(document)
    results = {**meta, "columns": [_column_json(c) for c in columns]}
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print()
    print(document)
    for spied in sorted(logs.glob("*-1/worker1.pyspy*.txt")):
        what = "the thread holding the GIL" if "gil" in spied.name else "threads not idle"
        print(f"\npy-spy, {spied.parent.name}, worker 1 during the drain, {what} ({spied}):")
        print(report.profile_summary(spied.read_text()))
    print(f"raw results: {out / 'results.json'}; logs: {logs}")
    return 0


def _column_json(column: report.Column) -> dict[str, Any]:
    medians = {key: report.median(column.runs, key) for row in report.ROWS for key in row.keys}
    return {
        "system": column.system,
        "version": column.version,
        "config": column.config,
        "label": column.label,
        "failure": column.failure,
        "medians": medians,
        "runs": list(column.runs),
        "kill": column.kill,
    }


if __name__ == "__main__":
    sys.exit(main())
