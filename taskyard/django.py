"""Django: enqueue inside the request's transaction; the workers are woken once it commits.

    # settings.py (both optional)
    TASKYARD = {
        "DATABASE": "default",         # the alias whose PostgreSQL database holds taskyard's
                                       # schema (`taskyard migrate`); "default" if unset
        "APP": "shop.tasks:app",       # the `taskyard.App`, for `enqueue_named`
    }

    # views.py
    from django.db import transaction
    from taskyard.django import enqueue

    with transaction.atomic():
        order = Order.objects.create(...)
        enqueue(send_invoice, order_id=order.id)   # commits or rolls back with the order

A job enqueued here is written through Django's own connection to that database, inside
its current transaction (`App.enqueue(..., connection=...)`), and the doorbells of its
queue ring from `transaction.on_commit`: a rolled-back transaction leaves no job and wakes
no worker. Outside `atomic()` (autocommit) the job commits and rings at once. The app's
store must be the same database (`TASKYARD_DATABASE_URL`, or the app's URL).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from typing import Any, ParamSpec, TypeVar, Unpack

import attrs
from django.conf import settings
from django.db import connections, transaction

from taskyard.domain.model import Job
from taskyard.entrypoints.library import App, Bound, Options, Task

P = ParamSpec("P")
R = TypeVar("R")

DATABASE_DEFAULT = "default"
KEYS = frozenset({"DATABASE", "APP"})


def _setting(key: str) -> object:
    """One key of the `TASKYARD` setting (a dict); None when not given."""
    given = getattr(settings, "TASKYARD", {})
    if not isinstance(given, Mapping) or not set(given) <= KEYS:
        raise ValueError(f"TASKYARD: a dict with the keys {', '.join(sorted(KEYS))} only")
    return given.get(key)


def database() -> str:
    """The Django database alias jobs are written through (`TASKYARD["DATABASE"]`)."""
    alias = _setting("DATABASE") or DATABASE_DEFAULT
    if not isinstance(alias, str) or alias not in settings.DATABASES:
        raise ValueError(f"TASKYARD['DATABASE']: {alias!r} is not a database of DATABASES")
    return alias


def connection() -> Any:
    """The psycopg connection under Django's connection to that database (in its
    current transaction, if any)."""
    wrapper = connections[database()]
    wrapper.ensure_connection()
    return wrapper.connection


@functools.cache
def _app(path: str) -> App:
    module, _, name = path.partition(":")
    app = getattr(importlib.import_module(module), name or "app")
    if not isinstance(app, App):
        raise TypeError(f"TASKYARD['APP']: {path} is not a taskyard.App")
    return app


def app() -> App:
    """The app named by `TASKYARD["APP"]` (`module:attribute`)."""
    path = _setting("APP")
    if not isinstance(path, str):
        raise ValueError("TASKYARD['APP'] is not set: name the taskyard.App as 'module:attribute'")
    return _app(path)


def enqueue(task: Task[P, R] | Bound[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Job:
    """Enqueue a job of `task` (or of `task.options(...)`) in Django's current transaction;
    its queue's workers are woken when that transaction commits."""
    bound = task if isinstance(task, Bound) else task.options()
    raw = connection()
    job = attrs.evolve(bound, connection=raw).enqueue(*args, **kwargs)
    _wake_on_commit(bound.task.app, raw)
    return job


def enqueue_named(
    name: str, *, args: Mapping[str, Any] | None = None, **options: Unpack[Options]
) -> Job:
    """`enqueue` by the task's name, through the app of `TASKYARD["APP"]` (code that does not
    import the task's function; its args are checked by the app's task, or the catalog)."""
    the_app = app()
    raw = connection()
    job = the_app.enqueue(name, args=args, connection=raw, **options)
    _wake_on_commit(the_app, raw)
    return job


def _wake_on_commit(the_app: App, raw: Any) -> None:
    transaction.on_commit(functools.partial(the_app.committed, raw), using=database())
