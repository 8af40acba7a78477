"""Without Chromium the browser tests skip on a developer's machine, and fail in CI."""

from __future__ import annotations

import pytest

from tests.browser.conftest import require_browser

NOWHERE = "/nonexistent/chromium"


def test_a_missing_browser_fails_the_tier_when_services_are_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKYARD_REQUIRE_SERVICES", "1")
    with pytest.raises(pytest.fail.Exception, match="must run: no Chromium"):
        require_browser(NOWHERE)


def test_a_missing_browser_skips_loudly_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKYARD_REQUIRE_SERVICES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="BROWSER TESTS SKIPPED"):
        require_browser(NOWHERE)
