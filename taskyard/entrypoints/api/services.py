"""What the API needs, built by the composition root and handed to `create_app`."""

from __future__ import annotations

import random

import attrs

from taskyard.adapters.clock import SystemClock
from taskyard.domain.builtins import BuiltinPolicy
from taskyard.domain.client import Client
from taskyard.domain.ports import Clock, Coordinator, JobStore, Random
from taskyard.entrypoints.api.grouping import SubmissionGroups
from taskyard.entrypoints.bootstrap import STORE_SCHEMES, ConfigError, make_coordinator, make_store
from taskyard.entrypoints.config import Settings


@attrs.frozen(kw_only=True)
class Services:
    """The API's dependencies: the store, the coordinator when one is configured, the
    domain client (validation and submission, shared with the Python library), and the
    bearer tokens (none: the API is open)."""

    store: JobStore
    client: Client
    coordinator: Coordinator | None = None
    tokens: tuple[str, ...] = ()
    submissions: SubmissionGroups = attrs.field(
        default=attrs.Factory(lambda self: SubmissionGroups(self.client), takes_self=True)
    )
    """Submissions through `client`, concurrent requests sharing store calls."""

    def __attrs_post_init__(self) -> None:
        assert self.client.store is self.store, "the client must write to the same store"
        assert self.client.coordinator is self.coordinator, "and ring the same coordinator"
        assert self.submissions.client is self.client, "and submit through the same client"

    @classmethod
    def build(
        cls,
        *,
        store: JobStore,
        coordinator: Coordinator | None = None,
        clock: Clock | None = None,
        rng: Random | None = None,
        builtins: BuiltinPolicy | None = None,
        tokens: tuple[str, ...] = (),
    ) -> Services:
        client = Client(
            store=store,
            coordinator=coordinator,
            clock=clock or SystemClock(),
            rng=rng or random.SystemRandom(),
            builtins=builtins,
        )
        return cls(store=store, client=client, coordinator=coordinator, tokens=tokens)


def build_services(settings: Settings) -> Services:
    """Adapters for `settings` (through `taskyard.entrypoints.bootstrap`). Nothing is
    connected here: the adapters connect on first use and retry on their own."""
    if settings.database_url is None:
        raise ConfigError("TASKYARD_DATABASE_URL", f"not set (use {STORE_SCHEMES})")
    clock = SystemClock()
    store = make_store(settings.database_url, clock=clock, setting=settings.source("database_url"))
    coordinator = (
        make_coordinator(
            settings.redis_url,
            clock=clock,
            key_prefix=settings.redis_key_prefix,
            setting=settings.source("redis_url"),
        )
        if settings.redis_url
        else None
    )
    return Services.build(
        store=store,
        coordinator=coordinator,
        clock=clock,
        builtins=BuiltinPolicy(
            http_allowed_hosts=settings.http_allowed_hosts,
            shell_enabled=settings.shell_enabled,
        ),
        tokens=settings.api_tokens,
    )
