"""The test suite's settings (pytest-django reads DJANGO_SETTINGS_MODULE from pyproject.toml).

handoff_site.settings as the environment shapes it (embedded, or PostgreSQL and Redis as CI
runs them), with what the tests change on top. The servers and workers the tests start run
handoff_site.settings itself, as in production (tests/conftest.py).
"""

import os
from unittest import mock

# settings.py refuses to start without these when DEBUG is off (it is, with DATABASE_URL):
# the tests' own values while it is read, unless the environment has some. The environment
# is left as it was, so the processes the tests start get none of them.
TEST_ENVIRONMENT = {
    "SECRET_KEY": "tests-only-insecure-key-0123456789abcdef0123456789abcdef",
    "ALLOWED_HOSTS": "127.0.0.1,localhost,[::1],testserver",
}


def _own_redis_database(url: str, worker: str) -> str:
    """REDIS_URL for one of pytest-xdist's workers ("gw0", "gw1", ...): the database number
    plus the worker's index, so each worker's broker queues, channel groups, rate limits and
    metrics are its own (the workers' test databases are apart already: pytest-django names
    them test_<name>_gw0, ...)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{base + int(worker.removeprefix('gw'))}"))


if os.environ.get("REDIS_URL") and os.environ.get("PYTEST_XDIST_WORKER"):
    # Before settings read it; the servers and workers the tests start inherit it.
    os.environ["REDIS_URL"] = _own_redis_database(
        os.environ["REDIS_URL"], os.environ["PYTEST_XDIST_WORKER"]
    )

with mock.patch.dict(os.environ, {k: v for k, v in TEST_ENVIRONMENT.items() if not os.environ.get(k)}):
    from handoff_site.settings import *  # noqa: F403
    from handoff_site.settings import DEBUG, env_bool

TESTING = True

if not DEBUG:
    # The tests' servers speak plain http on 127.0.0.1.
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=False)

# Tests run Celery tasks themselves, or start real workers (tests/processes.py).
CELERY_EMBEDDED_WORKER = env_bool("CELERY_EMBEDDED_WORKER", default=False)

# The tests' receivers listen on loopback.
OUTBOUND_ALLOW_PRIVATE = env_bool("OUTBOUND_ALLOW_PRIVATE", default=True)

# A slow hash only slows the tests down.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# No collectstatic before the tests: static files are served from the finders.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
