"""The task catalog on every store: publications are upserted whole, the last one wins,
and each entry says who published it and when (store time)."""

from __future__ import annotations

import attrs

from taskyard.domain.arguments import Kind, Parameter, Parameters
from taskyard.domain.catalog import TaskInfo
from taskyard.domain.ports import JobStore
from taskyard.domain.retry import Jitter, RetryPolicy
from tests.contract.conftest import Harness


def _task(name: str, **changes: object) -> TaskInfo:
    task = TaskInfo(
        name=name,
        queue="emails",
        priority=5,
        max_attempts=7,
        backoff=RetryPolicy(base_s=0.25, factor=3.0, max_s=90.0, jitter=Jitter.EQUAL),
        timeout_s=1.5,
        params=Parameters(
            named=(
                Parameter(name="user_id", kind=Kind.REQUIRED),
                Parameter(name="lang", kind=Kind.OPTIONAL),
            ),
            any_other=False,
        ),
    )
    return attrs.evolve(task, **changes)


def test_an_empty_catalog_lists_nothing(store: JobStore) -> None:
    assert store.tasks() == []


def test_published_tasks_come_back_whole_with_who_and_when(store: JobStore) -> None:
    before = store.now()
    odd = _task(
        "émails.send ✉",
        timeout_s=None,
        params=Parameters(any_other=True),
        backoff=RetryPolicy(),
    )
    store.publish_tasks([_task("b.second"), odd], worker="w-1")
    after = store.now()
    [first, second] = store.tasks()
    assert [first.name, second.name] == ["b.second", "émails.send ✉"], "by name"
    for published, sent in ((first, _task("b.second")), (second, odd)):
        assert published.published_by == "w-1"
        assert published.published_at is not None
        assert before <= published.published_at <= after
        assert attrs.evolve(published, published_by=None, published_at=None) == sent


def test_the_last_publication_of_a_task_wins_whole(
    store_harness: Harness[JobStore],
) -> None:
    store = store_harness.adapter
    store.publish_tasks([_task("a.task"), _task("b.kept")], worker="old")
    store_harness.pass_time(1.0)
    newer = _task("a.task", queue="fast", max_attempts=1, timeout_s=None, params=Parameters())
    store.publish_tasks([newer], worker="new")
    by_name = {task.name: task for task in store.tasks()}
    assert set(by_name) == {"a.task", "b.kept"}, "a publication removes no other task"
    replaced, kept = by_name["a.task"], by_name["b.kept"]
    assert replaced.published_by == "new" and kept.published_by == "old"
    assert replaced.queue == "fast" and replaced.max_attempts == 1
    assert replaced.timeout_s is None and replaced.params == Parameters()
    assert replaced.published_at is not None and kept.published_at is not None
    assert replaced.published_at > kept.published_at


def test_publishing_nothing_changes_nothing(store: JobStore) -> None:
    store.publish_tasks([_task("a.task")], worker="w")
    listed = store.tasks()
    store.publish_tasks([], worker="other")
    assert store.tasks() == listed
