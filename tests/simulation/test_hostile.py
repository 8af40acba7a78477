"""The malformed submissions the simulated clients send (`taskyard.simulation.hostile`)
are each refused by the production parser, whatever body they start from: otherwise a
green run would say nothing, and a red one would blame the parser for the generator."""

from __future__ import annotations

import random

import pytest

from taskyard.adapters.clock import ManualClock
from taskyard.adapters.memory import InMemoryJobStore
from taskyard.domain import management
from taskyard.domain.builtins import BuiltinPolicy
from taskyard.domain.catalog import UnknownTask
from taskyard.domain.client import Client
from taskyard.domain.context import TaskSpec
from taskyard.domain.errors import UnknownDependency, ValidationError
from taskyard.simulation import hostile
from taskyard.simulation.nodes import HANDLERS
from taskyard.simulation.profiles import draw

DRAWS = 30


def _client(*, strict: bool) -> Client:
    clock = ManualClock()
    store = InMemoryJobStore(clock)
    store.publish_tasks(
        [TaskSpec(name=name, handler=handler).info() for name, handler in HANDLERS.items()],
        worker="w1",
    )
    return Client(
        store=store,
        coordinator=None,
        clock=clock,
        rng=random.Random(1),
        builtins=BuiltinPolicy(http_allowed_hosts=hostile.ALLOWED_HOSTS, shell_enabled=strict),
        unknown_task=UnknownTask.REFUSE if strict else UnknownTask.WARN,
    )


def _bodies() -> list[dict[str, object]]:
    workload = draw(5).workload
    return [plan.body(dep_ids=(), run_at=None) for plan in workload.plans[:6]]


def _send(client: Client, sent: hostile.Malformed, *, store: bool = False) -> None:
    if sent.batch:
        client.parse_batch(sent.body)
        return
    submission = client.parse(sent.body, idempotency_key_header=sent.header)
    if store:
        client.submit([submission])


def test_every_broken_change_and_filter_is_refused() -> None:
    for data in hostile.CHANGES:
        with pytest.raises(ValidationError):
            management.parse_changes(data)
    for data, action in hostile.FILTERS:
        with pytest.raises(ValidationError):
            management.parse_job_filter(data, action="retry" if action == "retry" else "cancel")


@pytest.mark.parametrize("strict", [False, True])
def test_every_breakage_is_refused_naming_a_field(strict: bool) -> None:
    client = _client(strict=strict)
    breakages = hostile.BREAKAGES if strict else hostile.BREAKAGES[:-1]
    rng = random.Random(7)
    for body in _bodies():
        for breakage in breakages:
            for _ in range(DRAWS):
                sent = breakage(rng, body)
                if sent.refused_by_store:
                    with pytest.raises(UnknownDependency):
                        _send(client, sent, store=True)
                    continue
                with pytest.raises(ValidationError) as refused:
                    _send(client, sent)
                assert refused.value.errors, sent
                assert all(error.message for error in refused.value.errors), sent


def test_the_bodies_broken_are_accepted_as_they_are() -> None:
    client = _client(strict=True)
    for body in _bodies():
        client.parse(body)
