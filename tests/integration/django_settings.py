"""A minimal Django settings module for the tests of `taskyard.django`: Django's default
database is the test session's PostgreSQL database (its URL in `DJANGO_TEST_DATABASE_URL`,
set by the test before `django.setup()`)."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

_url = urlsplit(os.environ["DJANGO_TEST_DATABASE_URL"])

SECRET_KEY = "tests only"
USE_TZ = True
INSTALLED_APPS: list[str] = []
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _url.path.lstrip("/"),
        "USER": _url.username or "",
        "PASSWORD": _url.password or "",
        "HOST": _url.hostname or "",
        "PORT": str(_url.port or ""),
    }
}
TASKYARD = {"DATABASE": "default", "APP": "tests.integration.test_django:app"}
