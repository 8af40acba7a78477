"""The PostgreSQL store and its schema migrations (see `store.py`, `schema.py`)."""

from taskyard.adapters.postgres.schema import MigrationError, MigrationResult, migrate
from taskyard.adapters.postgres.store import AmbiguousCommit, PoolSettings, PostgresJobStore

__all__ = [
    "AmbiguousCommit",
    "MigrationError",
    "MigrationResult",
    "PoolSettings",
    "PostgresJobStore",
    "migrate",
]
