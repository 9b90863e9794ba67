"""The demo page of the reference project, in-process: ``/`` renders it, and ``workers.asgi``
serves the browser client under /static/ itself (daphne serves no files of its own).

tests/browser/ drives the same page in Chromium against a real cluster.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from channels.testing import ApplicationCommunicator
from django.test import override_settings

from workers import settings as project

pytestmark = pytest.mark.anyio

PAGE_IDS = [
    "state", "session", "method", "params", "call", "result", "subscription", "notifications",
    "publish-text", "publish", "report-start", "report-cancel", "report-progress", "report-status",
]  # fmt: skip


async def get(path: str) -> dict[str, Any]:
    """``GET path`` through the reference project's ASGI application, with its settings."""
    with override_settings(
        ROOT_URLCONF="workers.urls",
        ALLOWED_HOSTS=["testserver"],
        TEMPLATES=project.TEMPLATES,
        STATIC_URL=project.STATIC_URL,
        RPC_ALLOWED_ORIGINS=[],
        RPC_ALLOW_SAME_ORIGIN=True,
    ):
        application = importlib.import_module("workers.asgi").application
        scope = {
            "type": "http", "http_version": "1.1", "method": "GET", "path": path,
            "query_string": b"", "headers": [(b"host", b"testserver")],
        }  # fmt: skip
        communicator = ApplicationCommunicator(application, scope)
        await communicator.send_input({"type": "http.request", "body": b""})
        start = await communicator.receive_output(5)
        body = b""
        while True:  # a file comes in chunks, the last one possibly without a "body" key
            chunk = await communicator.receive_output(5)
            body += chunk.get("body", b"")
            if not chunk.get("more_body"):
                break
        await communicator.wait(5)
        return {"status": start["status"], "headers": dict(start["headers"]), "body": body}


async def test_the_demo_page_imports_the_browser_client() -> None:
    response = await get("/")
    assert response["status"] == 200
    assert response["headers"][b"Content-Type"].startswith(b"text/html")
    page = response["body"].decode()
    assert '<script type="module">' in page
    assert 'import { RpcClient, RpcError } from "/static/channels_rpc/client.js";' in page
    for element_id in PAGE_IDS:
        assert f'id="{element_id}"' in page


async def test_the_asgi_application_serves_the_browser_client() -> None:
    response = await get("/static/channels_rpc/client.js")
    assert response["status"] == 200
    assert response["headers"][b"Content-Type"] in (
        b"text/javascript",
        b"application/javascript",
    )
    assert b"export class RpcClient extends EventTarget" in response["body"]
    assert b"export class RpcError extends Error" in response["body"]
    assert b'"rpc.resume"' in response["body"]  # the client resumes sessions


async def test_an_unknown_static_file_is_a_404() -> None:
    assert (await get("/static/channels_rpc/nope.js"))["status"] == 404
