"""A FastAPI (Starlette) service that enqueues taskyard jobs in its own transactions.

    export TASKYARD_DATABASE_URL=postgresql://taskyard@db/taskyard  # the service's database
    export TASKYARD_REDIS_URL=redis://redis:6379/0                  # as the workers use it
    uvicorn fastapi_lifespan:api

The lifespan opens the service's connection pool at start-up and closes it, and the
taskyard app, at shutdown. A sign-up writes the user and enqueues the welcome email in one
transaction (`tasks.transaction(conn)`): both commit, or neither, and the workers are woken
once they have. `GET /jobs/{id}?wait=10` waits up to ten seconds for the job to finish.
Routes are plain `def`: FastAPI runs them on its thread pool, where blocking calls belong.
This file is a test of the repository (tests/integration/test_fastapi_example.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypedDict

import psycopg
import psycopg_pool
from fastapi import FastAPI, HTTPException, Query, Request

import taskyard

tasks = taskyard.App()  # TASKYARD_DATABASE_URL, TASKYARD_REDIS_URL, ... as the workers read them


@tasks.task(queue="emails", max_attempts=5)
def send_welcome(user_id: int) -> dict[str, int]:
    return {"welcomed": user_id}


class State(TypedDict):
    pool: psycopg_pool.ConnectionPool[psycopg.Connection[tuple[Any, ...]]]


@asynccontextmanager
async def lifespan(api: FastAPI) -> AsyncIterator[State]:
    with psycopg_pool.ConnectionPool(tasks.url, min_size=1, max_size=4) as pool:
        yield {"pool": pool}
    tasks.close()


api = FastAPI(lifespan=lifespan)


@api.post("/users", status_code=201)
def sign_up(request: Request, name: str) -> dict[str, Any]:
    pool: psycopg_pool.ConnectionPool[psycopg.Connection[tuple[Any, ...]]] = request.state.pool
    with pool.connection() as conn:
        try:
            with tasks.transaction(conn):
                row = conn.execute(
                    "INSERT INTO users (name) VALUES (%s) RETURNING id", (name,)
                ).fetchone()
                assert row is not None
                job = send_welcome.options(connection=conn).enqueue(user_id=row[0])
        except psycopg.errors.UniqueViolation:
            raise HTTPException(status_code=409, detail=f"{name!r} is taken") from None
    return {"user_id": row[0], "job_id": str(job.id)}


@api.get("/jobs/{job_id}")
def job(job_id: str, wait: float = Query(0.0, ge=0, le=30)) -> dict[str, Any]:
    try:
        found = tasks.wait(job_id, timeout=wait) if wait > 0 else tasks.get(job_id)
    except taskyard.WaitTimeout as late:
        found = late.job  # not finished yet: as it stands
    except taskyard.JobNotFound:
        raise HTTPException(status_code=404, detail="no such job") from None
    return found.to_json()
