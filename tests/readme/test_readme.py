"""The README's example, run as written; and what the docs say that the code can check.

The README's "In short" blocks become a package in a temporary directory: its consumer, its
method and its ``mysite/asgi.py`` are imported into this process (in-memory channel layer, so
the method runs embedded, along the path a call takes through Redis and a worker), the ASGI
application is served by uvicorn on a free port, and the client block runs against it and must
print what its comment says.
"""

from __future__ import annotations

import importlib
import io
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from channels_rpc.exceptions import RPC_ERRORS, JsonRpcErrorCode

from .markdown import DOCS, README, section

#: Where the README's client connects; the test's server listens where the OS lets it.
README_ADDRESS = "127.0.0.1:8000"
#: The README's packages, imported here for the test only.
PACKAGES = ("myapp", "mysite")


def test_the_readme_example_runs_as_written(tmp_path: Path) -> None:
    files = {b.target()[0]: b.text for b in section("In short") if b.lang == "python"}
    assert set(files) == {"myapp/consumers.py", "myapp/rpc.py", "mysite/asgi.py", "client.py"}
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(text, encoding="utf-8")
    expected = re.search(r"# prints (.+)$", files["client.py"], re.M)
    assert expected, "the client's comment does not say what it prints"
    assert README_ADDRESS in files["client.py"]

    sys.path.insert(0, str(tmp_path))
    try:
        # In a project with myapp installed, channels_rpc imports myapp.rpc on startup
        # (the Quick start's test runs that); here the test does.
        importlib.import_module("myapp.rpc")
        asgi = importlib.import_module("mysite.asgi")
        with serve(asgi.application) as address:
            client = files["client.py"].replace(README_ADDRESS, address)
            printed = io.StringIO()
            with redirect_stdout(printed):
                exec(compile(client, "client.py", "exec"), {"__name__": "__main__"})
    finally:
        sys.path.remove(str(tmp_path))
        for name in list(sys.modules):
            if name.partition(".")[0] in PACKAGES:
                del sys.modules[name]
    assert printed.getvalue().splitlines() == [expected.group(1)]


@contextmanager
def serve(application: Any) -> Iterator[str]:
    """``application`` served by uvicorn in a thread; yields its ``host:port``."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        application, lifespan="off", ws="websockets-sansio", log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped before it started"
            assert time.monotonic() < deadline, "uvicorn did not start in 10 s"
            time.sleep(0.02)
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    assert not thread.is_alive(), "uvicorn did not stop"


def test_the_error_code_table_is_the_enum() -> None:
    """docs/reference/errors.md lists every code, with its name and message."""
    page = (DOCS / "reference" / "errors.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (-\d+) \| `(\w+)` \| ([^|]+) \|", page, re.M)
    listed = {int(code): (name, message.strip()) for code, name, message in rows}
    assert set(listed) == {int(code) for code in JsonRpcErrorCode}
    for code in JsonRpcErrorCode:
        name, message = listed[code]
        assert name == code.name
        if code != JsonRpcErrorCode.GENERIC_APPLICATION_ERROR:  # a method's exception
            assert message == RPC_ERRORS[code], code.name


@pytest.mark.parametrize("page", [README, *sorted(DOCS.rglob("*.md"))], ids=lambda p: p.name)
def test_relative_links_lead_to_files(page: Path) -> None:
    """Links to files of the repository resolve from the page (on GitHub as on the site)."""
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
