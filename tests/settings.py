"""Settings for in-process tests: in-memory channel layer, embedded worker, in-memory SQLite."""

from __future__ import annotations

SECRET_KEY = "tests"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "channels",
    "channels_rpc",
    "workers",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
CHANNELS_RPC = {"DEFAULT_TIMEOUT": 5.0, "REPLY_GRACE": 0.5}
