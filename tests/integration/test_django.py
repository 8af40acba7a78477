"""`taskyard.django`: a job enqueued in a Django transaction commits or rolls back with it,
and its queue's workers are woken once it commits (`transaction.on_commit`), on Django's
own connection to the test PostgreSQL database."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

import taskyard
from taskyard.entrypoints.bootstrap import bootstrap
from taskyard.entrypoints.config import Settings

django = pytest.importorskip("django")

QUEUE = f"django-{secrets.token_hex(3)}"
app = taskyard.App("memory://", coordinator_url="memory://")
"""Put on the test database by the fixture; its doorbells ring in this process."""


@app.task(name="shop.send_invoice", queue=QUEUE)
def send_invoice(order_id: int) -> int:
    return order_id


@pytest.fixture(scope="module")
def shop(migrated_postgres_url: str) -> Iterator[taskyard.App]:
    import os

    from django.conf import settings

    os.environ["DJANGO_TEST_DATABASE_URL"] = migrated_postgres_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.integration.django_settings"
    if not settings.configured:
        django.setup()
    from django.db import connection

    store_side = bootstrap(Settings(database_url=migrated_postgres_url))
    app.use(store=store_side.store)
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS shop_orders (id int PRIMARY KEY)")
    yield app
    app.close()
    store_side.close()
    connection.close()


def _rung(the_app: taskyard.App) -> bool:
    """Whether the queue's doorbell rang since the last look (a ring is kept until then)."""
    assert the_app.coordinator is not None
    return the_app.coordinator.wait([QUEUE], timeout_s=0)


def test_a_job_enqueued_in_an_atomic_block_commits_with_it_and_rings_after(
    shop: taskyard.App,
) -> None:
    from django.db import connection, transaction

    from taskyard.django import enqueue

    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO shop_orders VALUES (1)")
        job = enqueue(send_invoice, order_id=1)
        with pytest.raises(taskyard.JobNotFound):
            shop.get(job)  # not visible outside the transaction before it commits
        assert not _rung(shop), "no worker is woken before the commit"
    assert shop.get(job).state == "queued"
    assert _rung(shop), "the commit woke the queue's workers"


def test_a_rolled_back_atomic_block_leaves_no_job_and_wakes_no_worker(
    shop: taskyard.App,
) -> None:
    from django.db import connection, transaction

    from taskyard.django import enqueue

    class Abandon(Exception):
        pass

    made: list[taskyard.Job] = []

    def order_then_abandon() -> None:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("INSERT INTO shop_orders VALUES (2)")
            made.append(enqueue(send_invoice.options(priority=5), order_id=2))
            raise Abandon

    with pytest.raises(Abandon):
        order_then_abandon()
    with pytest.raises(taskyard.JobNotFound):
        shop.get(made[0])
    assert not _rung(shop)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM shop_orders WHERE id = 2")
        assert cursor.fetchone() == (0,)


def test_outside_a_transaction_the_job_commits_and_rings_at_once(shop: taskyard.App) -> None:
    from taskyard.django import enqueue, enqueue_named

    job = enqueue(send_invoice, 3)
    assert shop.get(job).state == "queued" and job.args == {"order_id": 3}
    assert _rung(shop)
    named = enqueue_named("shop.send_invoice", args={"order_id": 4}, priority=2)
    assert shop.get(named).priority == 2
    assert _rung(shop)
    key = f"order-5-{secrets.token_hex(3)}"
    keyed = enqueue(send_invoice.options(idempotency_key=key), order_id=5)
    again = enqueue(send_invoice.options(idempotency_key=key), order_id=5)
    assert again.id == keyed.id and again.args == {"order_id": 5}, "read back through Django's"
    with pytest.raises(taskyard.ValidationError, match=r"args\.order: unknown argument"):
        enqueue_named("shop.send_invoice", args={"order": 4})
