"""Structured logs: one JSON object per line, carrying the request id and job id."""

from __future__ import annotations

import io
import json
import logging
import unicodedata
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskyard.entrypoints.logs import configure_logging, log_context
from tests.api.conftest import make_api


@pytest.fixture
def captured(restore_logging: None) -> io.StringIO:
    """Route every logger through taskyard's JSON format into a buffer for the test."""
    stream = io.StringIO()
    configure_logging(log_format="json", level="info", stream=stream)
    return stream


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_each_request_logs_one_json_line_with_its_ids(captured: io.StringIO) -> None:
    api = make_api()
    created = api.post("/v1/jobs", {"task": "sleep"}, headers={"X-Request-ID": "req-1"})
    api.get("/v1/jobs/not-an-id", headers={"X-Request-ID": "req-2"})
    first, second = [line for line in lines(captured) if line["message"] == "request"]
    assert first["request_id"] == "req-1" and first["job_id"] == created.json["id"]
    assert first["method"] == "POST" and first["path"] == "/v1/jobs" and first["status"] == 201
    assert first["level"] == "info" and first["logger"] == "taskyard.api"
    assert first["time"].endswith("Z") and isinstance(first["duration_ms"], float)
    assert second["request_id"] == "req-2" and second["status"] == 404


def test_the_log_context_and_extras_become_fields(captured: io.StringIO) -> None:
    log = logging.getLogger("taskyard.client")
    with log_context(request_id="outer", worker_id="w-1"):
        log.warning("something", extra={"job_id": "j", "attempt": 2})
    [line] = lines(captured)
    assert line == {
        "time": line["time"],
        "level": "warning",
        "logger": "taskyard.client",
        "message": "something",
        "pid": line["pid"],
        "attempt": 2,
        "job_id": "j",
        "request_id": "outer",
        "worker_id": "w-1",
    }
    log.warning("after")
    assert "request_id" not in lines(captured)[-1]


def test_the_store_being_down_is_logged_with_the_request_id(captured: io.StringIO) -> None:
    from tests.api.test_system import unpluggable_api

    api, store = unpluggable_api()
    store.down = True
    api.get("/v1/jobs", headers={"X-Request-ID": "req-down"})
    warning = next(line for line in lines(captured) if line["level"] == "warning")
    assert warning["request_id"] == "req-down" and "connection refused" in warning["message"]


@pytest.mark.usefixtures("restore_logging")
def test_text_format_puts_fields_after_the_message() -> None:
    stream = io.StringIO()
    configure_logging(log_format="text", level="warning", stream=stream)
    with log_context(request_id="r-9"):
        logging.getLogger("taskyard.x").warning("hello %s", "there", extra={"job_id": "j 1"})
        logging.getLogger("taskyard.x").info("not shown at warning")
    [line] = stream.getvalue().splitlines()
    assert line.endswith('WARNING taskyard.x: hello there job_id="j 1" request_id=r-9')


# --- forged lines -------------------------------------------------------------------------

FORGED = "2026-12-05T00:00:00.000Z INFO taskyard.api: request method=GET path=/ status=200"


def _control(char: str) -> bool:
    return unicodedata.category(char) == "Cc" or char in "\u2028\u2029"


def _text_lines(*, level: str = "info") -> tuple[io.StringIO, logging.Logger]:
    stream = io.StringIO()
    configure_logging(log_format="text", level=level, stream=stream)
    return stream, logging.getLogger("taskyard.forge")


@pytest.mark.usefixtures("restore_logging")
@given(st.text())
def test_no_value_in_a_text_line_can_start_a_line_of_its_own(value: str) -> None:
    stream, log = _text_lines()
    log.info("got %s", value, extra={"path": value, "job_id": f"x{value}"})
    [line] = stream.getvalue().splitlines()  # every kind of line break Python knows
    assert not any(_control(char) for char in line)


@pytest.mark.usefixtures("restore_logging")
def test_control_characters_are_escaped_in_messages_and_fields() -> None:
    stream, log = _text_lines()
    log.warning("a\r\nb", extra={"path": "/v1\n" + FORGED, "nul": "x\x00y", "c1": "\x9b2J"})
    [line] = stream.getvalue().splitlines()
    assert line.endswith(
        f'WARNING taskyard.forge: a\\r\\nb c1="\\u009b2J" nul="x\\u0000y" path="/v1\\n{FORGED}"'
    )


@pytest.mark.usefixtures("restore_logging")
def test_a_traceback_is_indented_and_its_message_stays_on_one_line() -> None:
    stream, log = _text_lines()
    try:
        raise ValueError(f"boom\n{FORGED}\r\n\x1b[2K")
    except ValueError:
        log.exception("handler failed")
    first, *rest = stream.getvalue().splitlines()
    assert first.endswith("ERROR taskyard.forge: handler failed") and rest
    assert all(line.startswith("  ") for line in rest)
    assert rest[-1] == f"  ValueError: boom\\n{FORGED}\\r\\n\\x1b[2K"


@pytest.mark.usefixtures("restore_logging")
def test_a_request_path_cannot_write_a_log_line() -> None:
    stream, _ = _text_lines()
    api = make_api()
    # Tabs, not spaces, between the forged words: no space to make the value quoted.
    hostile = "/v1/jobs%0D%0A" + FORGED.replace(" ", "%09") + "%0Ax%00%C2%85"
    assert api.client.simulate_get(hostile).status_code == 404
    [line] = stream.getvalue().splitlines()
    assert "INFO taskyard.api: request " in line and not any(_control(c) for c in line)
    forged = FORGED.replace(" ", "\\t")
    assert f'path="/v1/jobs\\r\\n{forged}\\nx\\u0000\\u0085"' in line


@given(created=st.floats(min_value=0, max_value=2**33, allow_nan=False) | st.integers(0, 2**33))
def test_a_records_time_is_written_as_format_time_writes_it(created: float) -> None:
    """The logs reuse the text of the last whole second; what they write is unchanged."""
    from datetime import UTC, datetime

    from taskyard.domain.timefmt import format_time
    from taskyard.entrypoints.logs import _time

    for moment in (created, created + 0.0005, float(int(created)) + 0.9999996):
        record = logging.LogRecord("t", logging.INFO, "p", 1, "m", None, None)
        record.created = moment
        assert _time(record) == format_time(datetime.fromtimestamp(moment, UTC))
