"""The Django settings every benchmark peer shares: Channels alone, no database, quiet logs.

Here, not under ``benchmarks/app``, because channels-rpc 1.0.1 runs from this folder alone, in
its own virtualenv, with no trace of this repository on its path (``upstream_settings`` imports
it as a top-level module); the Celery peer imports it as ``benchmarks.upstream_app.base_settings``.
"""

from __future__ import annotations

SECRET_KEY = "benchmarks"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["channels"]
DATABASES: dict[str, dict[str, str]] = {}
# Quiet, but for daphne's "Listening on TCP address", the readiness line the harness waits for.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
    "loggers": {"daphne.server": {"level": "INFO"}},
}
