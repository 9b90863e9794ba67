"""The ``[client]`` extra, and what RpcClient says when it is used wrongly (no server needed).

The calls against a real server are in tests/integration/test_client.py.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from channels_rpc.client import ConnectionFailed, ConnectionLost, RpcClient

pytestmark = pytest.mark.anyio


def test_the_client_extra_installs_websockets() -> None:
    # Metadata of the installed distribution (refresh it with `pip install -e . --no-deps`).
    metadata = importlib.metadata.metadata("channels-rpc")
    assert "client" in metadata.get_all("Provides-Extra", [])
    requirements = importlib.metadata.requires("channels-rpc") or []
    assert 'websockets>=14; extra == "client"' in requirements


WITHOUT_WEBSOCKETS = textwrap.dedent(
    """
    import sys

    class NoWebsockets:  # as if websockets were not installed
        def find_spec(self, name, path=None, target=None):
            if name == "websockets" or name.startswith("websockets."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoWebsockets())
    import channels_rpc  # the library itself never needs websockets
    try:
        import channels_rpc.client
    except ImportError as exc:
        print(f"ImportError: {exc}")
    """
)


def test_importing_the_client_without_websockets_says_which_extra_to_install() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_WEBSOCKETS],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == (
        "ImportError: channels_rpc.client needs websockets 14 or later: "
        'pip install "channels-rpc[client]"'
    )


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/ws/rpc/", "127.0.0.1:8000", "ws:///x"])
def test_a_url_that_is_not_a_websocket_url_is_refused_at_once(url: str) -> None:
    with pytest.raises(ValueError, match=r"is not a WebSocket URL: it starts with ws:// or wss://"):
        RpcClient(url)


def test_on_connect_must_be_callable() -> None:
    with pytest.raises(TypeError, match="on_connect must be callable"):
        RpcClient("ws://127.0.0.1:8000/", on_connect="subscribe")  # type: ignore[arg-type]


@pytest.fixture
def refusing_url() -> Iterator[str]:
    """A port held by this test and not listening: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"ws://127.0.0.1:{sock.getsockname()[1]}/ws/rpc/"


async def test_no_server_raises_connection_failed_naming_the_url(refusing_url: str) -> None:
    client = RpcClient(refusing_url)
    with pytest.raises(ConnectionFailed) as failed:
        await client.connect()
    assert str(failed.value) == (
        f"could not connect to {refusing_url}: "
        "connection refused: is the server running, on this host and port?"
    )
    assert isinstance(failed.value, ConnectionError)
    assert client.state == "closed"
    with pytest.raises(ConnectionLost, match="could not connect to"):
        await client.call("add", [1, 2])


async def test_a_call_before_connect_raises_instead_of_waiting_forever() -> None:
    client = RpcClient("ws://127.0.0.1:8000/ws/rpc/")
    assert client.state == "idle"
    with pytest.raises(RuntimeError, match=r"not connected: use `async with RpcClient\(url\)"):
        await asyncio.wait_for(client.call("add", [1, 2]), 5)  # it used to wait forever
    with pytest.raises(RuntimeError, match="not connected"):
        await asyncio.wait_for(client.notify("log", {"message": "hi"}), 5)
    with pytest.raises(TypeError, match="rpc_id must be a str or an int"):
        await client.call("add", [1, 2], rpc_id=1.5)  # type: ignore[arg-type]
