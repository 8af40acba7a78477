"""`App.set_queue_limits` / `App.queue_limits`: a queue's limits, kept in the store,
replaced whole, refused with the field named when a value is out of its bounds; and
`concurrency_key` on `enqueue`."""

from __future__ import annotations

from typing import Any

import pytest

import taskyard
from taskyard.domain.errors import ValidationError
from taskyard.domain.flow import QueueLimits, RateLimit

NONE = QueueLimits().to_json()


def test_an_apps_queue_limits_are_stored_replaced_whole_and_read_back() -> None:
    app = taskyard.App("memory://")
    assert app.queue_limits("reports") == NONE
    got = app.set_queue_limits(
        "reports",
        concurrency_limit=2,
        rate_limit=taskyard.RateLimit(count=10, period_s=60),
        key_rate_limit={"count": 1, "period_seconds": 0.5},
        weight=4,
    )
    assert got == {
        **NONE,
        "concurrency_limit": 2,
        "rate_limit": {"count": 10, "period_seconds": 60},
        "key_rate_limit": {"count": 1, "period_seconds": 0.5},
        "weight": 4,
    }
    assert app.queue_limits("reports") == got
    assert app.store.queue_limits()["reports"] == QueueLimits(
        concurrency_limit=2,
        rate_limit=RateLimit(count=10, period_s=60),
        key_rate_limit=RateLimit(count=1, period_s=0.5),
        weight=4,
    )
    assert app.set_queue_limits("reports", key_concurrency_limit=1) == {
        **NONE,
        "key_concurrency_limit": 1,
    }
    app.set_queue_limits("reports")
    assert app.store.queue_limits() == {}
    assert taskyard.RateLimit is RateLimit  # the name users import


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"concurrency_limit": 0}, "concurrency_limit"),
        ({"concurrency_limit": True}, "concurrency_limit"),
        ({"key_concurrency_limit": 10**7}, "key_concurrency_limit"),
        ({"rate_limit": RateLimit(count=0, period_s=1)}, r"rate_limit\.count"),
        ({"rate_limit": RateLimit(count=1, period_s=float("nan"))}, r"rate_limit\.period_seconds"),
        ({"key_rate_limit": {"count": 1}}, "key_rate_limit"),
        ({"key_rate_limit": (1, 60)}, "key_rate_limit"),
        ({"weight": 0}, "weight"),
        ({"weight": 2.0}, "weight"),
    ],
)
def test_a_bad_limit_is_refused_naming_it_and_nothing_changes(
    kwargs: dict[str, Any], field: str
) -> None:
    app = taskyard.App("memory://")
    app.set_queue_limits("reports", concurrency_limit=5)
    with pytest.raises(ValidationError, match=f"{field}: "):
        app.set_queue_limits("reports", **kwargs)
    assert app.store.queue_limits() == {"reports": QueueLimits(concurrency_limit=5)}


def test_a_bad_queue_name_is_refused() -> None:
    app = taskyard.App("memory://")
    for name in ("bad\x00queue", "", "x" * 101, "a b"):
        with pytest.raises(ValidationError, match="queue: not a queue name"):
            app.set_queue_limits(name, concurrency_limit=1)
        with pytest.raises(ValidationError, match="queue: not a queue name"):
            app.queue_limits(name)
    assert app.store.queue_limits() == {}


def test_enqueue_takes_a_concurrency_key() -> None:
    app = taskyard.App("memory://")
    job = app.enqueue("sleep", queue="reports", concurrency_key="tenant-7")
    assert job.concurrency_key == "tenant-7"
    assert app.get(job).concurrency_key == "tenant-7"
    [many] = app.enqueue_many([app.submission("sleep", concurrency_key="tenant-8")])
    assert many.job.concurrency_key == "tenant-8"
    with pytest.raises(ValidationError, match="concurrency_key"):
        app.enqueue("sleep", concurrency_key="")

    @app.task(queue="reports")
    def send_report(report_id: int) -> None: ...

    bound = send_report.options(concurrency_key="customer-7").enqueue(report_id=42)
    assert (bound.queue, bound.concurrency_key) == ("reports", "customer-7")
