"""A raw-socket WebSocket client (RFC 6455) that sends exactly what it is told, valid or not.

Test clients such as ``websockets`` refuse to emit malformed traffic; protocol and abuse tests
need it: unmasked frames, reserved bits, unknown opcodes, fragmented or oversized control frames,
invalid UTF-8, hand-written HTTP upgrade requests with any header bytes, and frames that are never
finished. Everything here is asyncio streams and bytes; nothing is validated on the way out.

Also a tiny command-line client, run in a process of its own by tests that stop it with SIGSTOP::

    python -m tests.integration.reliability.rawws hold ws://127.0.0.1:PORT/ws/test/ \\
        METHOD 'PARAMS_JSON' COUNT

connects, sends COUNT calls, prints ``ready``, then answers pings and prints what it receives
until the server closes the connection.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import struct
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONTINUATION",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "Closed",
    "Frame",
    "HandshakeError",
    "HttpResponse",
    "RawWebSocket",
    "build_frame",
    "close_payload",
    "read_http_response",
    "upgrade",
    "upgrade_request",
]

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# ------------------------------------------------------------------------------------------------
# Frames


def _mask(data: bytes, key: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``key`` repeated (one big-integer XOR: fast for 1 KB frames)."""
    if not data:
        return data
    size = len(data)
    repeated = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(size, "big")


def build_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
    mask_key: bytes | None = None,
) -> bytes:
    """One frame, as given: ``rsv`` is the 3 reserved bits (0-7), ``mask=False`` sends it bare."""
    first = (0x80 if fin else 0) | ((rsv & 0x7) << 4) | (opcode & 0xF)
    size = len(payload)
    mask_bit = 0x80 if mask else 0
    if size < 126:
        header = struct.pack("!BB", first, mask_bit | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", first, mask_bit | 126, size)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, size)
    if not mask:
        return header + payload
    key = mask_key if mask_key is not None else os.urandom(4)
    return header + key + _mask(payload, key)


def close_payload(code: int | None = None, reason: str = "") -> bytes:
    if code is None:
        return b""
    return struct.pack("!H", code) + reason.encode("utf-8")


@dataclass(frozen=True)
class Frame:
    fin: bool
    rsv: int
    opcode: int
    masked: bool
    payload: bytes
    at: float  # time.monotonic() when it was read

    @property
    def close_code(self) -> int | None:
        if self.opcode != OP_CLOSE or len(self.payload) < 2:
            return None
        code: int = struct.unpack("!H", self.payload[:2])[0]
        return code

    @property
    def close_reason(self) -> str:
        return self.payload[2:].decode("utf-8", "replace") if self.opcode == OP_CLOSE else ""

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")


@dataclass
class Closed:
    """How a connection ended. ``code`` is None when no close frame came (the TCP dropped)."""

    close_frame: Frame | None
    eof_at: float | None  # when the server closed (or reset) the TCP connection
    frames: list[Frame] = field(default_factory=list)  # data/control frames before the end

    @property
    def code(self) -> int | None:
        return self.close_frame.close_code if self.close_frame is not None else None

    @property
    def dropped(self) -> bool:
        """The server closed the TCP connection without a close frame (the client sees 1006)."""
        return self.close_frame is None and self.eof_at is not None

    def describe(self) -> str:
        if self.close_frame is not None:
            code = self.code if self.code is not None else "no code"
            return f"close {code}" + (" then TCP closed" if self.eof_at is not None else "")
        if self.eof_at is not None:
            return "TCP dropped without a close frame (1006)"
        return "still open"


# ------------------------------------------------------------------------------------------------
# HTTP upgrade


@dataclass
class HttpResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    raw: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


class HandshakeError(Exception):
    def __init__(self, response: HttpResponse | None, message: str = "") -> None:
        self.response = response
        self.status = response.status if response is not None else 0
        super().__init__(message or f"handshake refused: HTTP {self.status}")


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_for(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest()).decode("ascii")


def upgrade_request(
    path: str,
    host: str,
    *,
    key: str | None = None,
    origin: bytes | str | None = None,
    subprotocols: Sequence[str] = (),
    headers: Iterable[tuple[str, str]] = (),
    raw_headers: bytes = b"",
) -> bytes:
    """The bytes of an HTTP/1.1 upgrade request; ``origin`` and ``raw_headers`` go out verbatim."""
    lines = [
        f"GET {path} HTTP/1.1".encode("ascii"),
        f"Host: {host}".encode("ascii"),
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        f"Sec-WebSocket-Key: {key or new_key()}".encode("ascii"),
        b"Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(
            b"Origin: " + (origin if isinstance(origin, bytes) else origin.encode("latin-1"))
        )
    if subprotocols:
        lines.append(f"Sec-WebSocket-Protocol: {', '.join(subprotocols)}".encode("latin-1"))
    lines.extend(f"{name}: {value}".encode("latin-1") for name, value in headers)
    return b"\r\n".join(lines) + b"\r\n" + raw_headers + b"\r\n"


async def read_http_response(reader: asyncio.StreamReader, timeout: float = 10.0) -> HttpResponse:
    """Read a response head (status line and headers); an empty head means the peer hung up."""
    try:
        raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    except asyncio.IncompleteReadError as exc:
        raw = exc.partial
    if not raw:
        return HttpResponse(0, "connection closed", [], b"")
    head = raw.decode("latin-1").split("\r\n")
    parts = head[0].split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    headers = []
    for line in head[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return HttpResponse(status, parts[2] if len(parts) > 2 else "", headers, raw)


async def upgrade(host: str, port: int, request: bytes, timeout: float = 10.0) -> HttpResponse:
    """Send one upgrade request, read the answer's head, hang up."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(request)
        await writer.drain()
        return await read_http_response(reader, timeout)
    finally:
        writer.transport.abort()


# ------------------------------------------------------------------------------------------------
# The client


class RawWebSocket:
    """An upgraded connection; every frame is built by :func:`build_frame` with the given flags."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, response: HttpResponse
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.response = response
        self.subprotocol = response.header("Sec-WebSocket-Protocol")

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        path: str = "/ws/test/",
        *,
        origin: bytes | str | None = None,
        subprotocols: Sequence[str] = (),
        headers: Iterable[tuple[str, str]] = (),
        raw_headers: bytes = b"",
        timeout: float = 10.0,
    ) -> RawWebSocket:
        """Upgrade; raises :class:`HandshakeError` unless the server answers 101 correctly."""
        key = new_key()
        request = upgrade_request(
            path,
            f"{host}:{port}",
            key=key,
            origin=origin,
            subprotocols=subprotocols,
            headers=headers,
            raw_headers=raw_headers,
        )
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        try:
            writer.write(request)
            await writer.drain()
            response = await read_http_response(reader, timeout)
        except BaseException:
            writer.transport.abort()
            raise
        if response.status != 101:
            writer.transport.abort()
            raise HandshakeError(response)
        if response.header("Sec-WebSocket-Accept") != accept_for(key):
            writer.transport.abort()
            raise HandshakeError(response, "wrong Sec-WebSocket-Accept")
        return cls(reader, writer, response)

    # Sending

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_frame(
        self,
        opcode: int,
        payload: bytes = b"",
        *,
        fin: bool = True,
        rsv: int = 0,
        mask: bool = True,
    ) -> None:
        await self.send_raw(build_frame(opcode, payload, fin=fin, rsv=rsv, mask=mask))

    async def send_text(self, text: str) -> None:
        await self.send_frame(OP_TEXT, text.encode("utf-8"))

    async def ping(self, payload: bytes = b"") -> None:
        await self.send_frame(OP_PING, payload)

    async def close(self, code: int | None = 1000, reason: str = "") -> None:
        await self.send_frame(OP_CLOSE, close_payload(code, reason))

    # Receiving

    async def read_frame(self, timeout: float = 10.0) -> Frame | None:
        """The next frame, or None when the server closed the TCP connection (EOF or reset)."""
        try:
            return await asyncio.wait_for(self._read_frame(), timeout)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    async def _read_frame(self) -> Frame:
        first, second = await self.reader.readexactly(2)
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        key = await self.reader.readexactly(4) if second & 0x80 else b""
        payload = await self.reader.readexactly(size)
        return Frame(
            fin=bool(first & 0x80),
            rsv=(first >> 4) & 0x7,
            opcode=first & 0xF,
            masked=bool(key),
            payload=_mask(payload, key) if key else payload,
            at=time.monotonic(),
        )

    async def recv_text(self, timeout: float = 10.0) -> str:
        """The next text message (unfragmented, as daphne sends them); pings are answered."""
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.read_frame(max(0.0, deadline - time.monotonic()))
            if frame is None:
                raise ConnectionError("the server closed the connection")
            if frame.opcode == OP_PING:
                await self.send_frame(OP_PONG, frame.payload)
            elif frame.opcode == OP_TEXT:
                return frame.text
            elif frame.opcode == OP_CLOSE:
                raise ConnectionError(f"the server closed the connection ({frame.close_code})")

    async def wait_closed(self, timeout: float = 10.0, *, answer_close: bool = False) -> Closed:
        """Read until the server ends the connection (close frame and/or TCP close) or timeout."""
        closed = Closed(close_frame=None, eof_at=None)
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                frame = await self.read_frame(remaining)
            except asyncio.TimeoutError:
                break
            if frame is None:
                closed.eof_at = time.monotonic()
                break
            if frame.opcode == OP_CLOSE and closed.close_frame is None:
                closed.close_frame = frame
                if answer_close:
                    with contextlib.suppress(ConnectionError):
                        await self.send_frame(OP_CLOSE, frame.payload[:2])
            else:
                closed.frames.append(frame)
        return closed

    def abort(self) -> None:
        self.writer.transport.abort()


# ------------------------------------------------------------------------------------------------
# Command line: a client that holds calls open (the dead-peer test SIGSTOPs it)


async def _hold(url: str, method: str, params: object, count: int) -> int:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    sock = await RawWebSocket.connect(parts.hostname, parts.port, parts.path or "/")
    for rpc_id in range(1, count + 1):
        request = {"jsonrpc": "2.0", "method": method, "params": params, "id": rpc_id}
        await sock.send_text(json.dumps(request))
    print("ready", flush=True)
    while True:
        frame = await sock.read_frame(timeout=3600)
        if frame is None:
            print("eof", flush=True)
            return 0
        if frame.opcode == OP_PING:
            await sock.send_frame(OP_PONG, frame.payload)
        elif frame.opcode == OP_CLOSE:
            print(f"close {frame.close_code}", flush=True)
            return 0
        else:
            print(f"frame {frame.opcode} {frame.payload[:200]!r}", flush=True)


def main(argv: Sequence[str]) -> int:
    if len(argv) != 5 or argv[0] != "hold":
        print(__doc__, file=sys.stderr)
        return 2
    _, url, method, params, count = argv
    return asyncio.run(_hold(url, method, json.loads(params), int(count)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
