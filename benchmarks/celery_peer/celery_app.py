"""The Celery application of the peer: the bench's Redis as broker and result backend.

Its keys carry a prefix of their own (``CELERY_PEER_PREFIX``), so that they stay apart from
this package's on the same Redis. ``REDIS_URL`` is the bench's: ``unix:///path`` (the bench's
own redis-server) or ``redis://host:port/db``.
"""

from __future__ import annotations

import logging
import os

from celery import Celery  # type: ignore[import-untyped]


def celery_url(redis_url: str) -> str:
    """Celery's spelling of ``redis_url``, as broker and as result backend."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url.removeprefix("unix://")
    return redis_url


url = celery_url(os.environ["REDIS_URL"])
prefix = {"global_keyprefix": os.environ.get("CELERY_PEER_PREFIX", "celery-peer:")}
app = Celery("celery_peer", broker=url, backend=url)
app.conf.include = ["benchmarks.celery_peer.tasks"]
app.conf.update(
    broker_transport_options=prefix,
    result_backend_transport_options=prefix,
    broker_connection_retry_on_startup=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
)

# The worker logs at INFO for its "ready" line, which the bench waits for; not two lines per task
# ("received", "succeeded"), which would cost the worker more than the tasks do.
for name in ("celery.worker.strategy", "celery.app.trace"):
    logging.getLogger(name).setLevel(logging.WARNING)
