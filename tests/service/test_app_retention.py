"""`App.set_retention`: a queue's own retention, kept in the store, replaced whole, and
refused with the field named when a value is not a period."""

from __future__ import annotations

import pytest

import taskyard
from taskyard.domain.errors import ValidationError
from taskyard.domain.model import JobState

S = JobState


def test_an_apps_queue_retention_is_stored_replaced_whole_and_checked() -> None:
    app = taskyard.App("memory://")
    assert app.set_retention("reports", succeeded=3600, dead=0) == {"succeeded": 3600, "dead": 0}
    assert app.store.retention_overrides() == {"reports": {S.SUCCEEDED: 3600, S.DEAD: 0}}
    assert app.set_retention("reports", cancelled=60) == {"cancelled": 60}
    assert app.store.retention_overrides() == {"reports": {S.CANCELLED: 60}}
    with pytest.raises(ValidationError, match=r"retention_seconds\.dead: must be a whole"):
        app.set_retention("reports", dead=-1)
    with pytest.raises(ValidationError, match=r"retention_seconds\.succeeded"):
        app.set_retention("reports", succeeded=True)
    with pytest.raises(ValidationError, match="queue: not a queue name"):
        app.set_retention("bad\x00queue", succeeded=1)
    assert app.store.retention_overrides() == {"reports": {S.CANCELLED: 60}}
    app.set_retention("reports")
    assert app.store.retention_overrides() == {}
