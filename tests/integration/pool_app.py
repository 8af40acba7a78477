"""Tasks the process-pool tests run: the children load them by this module's path."""

from __future__ import annotations

import os
import time
from pathlib import Path

import taskyard

app = taskyard.App("memory://")


@app.task(name="pool.hang")
def hang(pid_file: str) -> str:
    """Writes its process id, then ignores every request to stop for a minute."""
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(60)
    return "outlived its timeout"


@app.task(name="pool.pid")
def pid(ctx: taskyard.JobContext) -> dict[str, int]:
    ctx.checkpoint({"step": 1})
    return {"pid": os.getpid(), "attempt": ctx.attempt}
