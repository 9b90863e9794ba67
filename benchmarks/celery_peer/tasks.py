"""The benchmark methods as Celery tasks (the same work as benchmarks/app/methods.py).

Tasks of a prefork worker are plain functions: ``sleep`` holds its worker process.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.celery_peer.celery_app import app


@app.task(name="ping")
def ping() -> str:
    return "pong"


@app.task(name="echo")
def echo(value: Any) -> Any:
    return value


@app.task(name="sleep")
def sleep(ms: float) -> float:
    time.sleep(ms / 1000)
    return ms


@app.task(name="cpu")
def cpu(ms: float) -> float:
    end = time.thread_time() + ms / 1000
    while time.thread_time() < end:
        pass
    return ms


@app.task(name="add")
def add(a: float, b: float) -> float:
    return a + b


TASKS: dict[str, Any] = {task.name: task for task in (ping, echo, sleep, cpu, add)}
