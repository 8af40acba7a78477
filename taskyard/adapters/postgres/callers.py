"""A caller's own psycopg connection, fit for the store's statements for a while.

`PostgresJobStore.enqueue_in` writes through a connection the store did not open: a
framework's. Django's makes client-side-binding cursors (`ClientCursor`), which cannot
read the binary results of the store's hot statements. `with_server_cursors` gives the
connection psycopg's own cursors for the store's statements and puts the caller's cursor
class back afterwards (a connection serves one thread at a time). What a framework loads
`jsonb` and `timestamptz` as does not matter: the store reads what it writes as text and
makes every time it reads aware (UTC).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg


@contextlib.contextmanager
def with_server_cursors(conn: psycopg.Connection[Any]) -> Iterator[None]:
    theirs = conn.cursor_factory
    conn.cursor_factory = psycopg.Cursor
    try:
        yield
    finally:
        conn.cursor_factory = theirs
