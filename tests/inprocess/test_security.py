"""StrictOriginValidator: exact origins, and same-origin pages when asked for."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from channels_rpc.security import StrictOriginValidator
from workers.consumers import RpcConsumer

pytestmark = pytest.mark.anyio

ALLOWED = "https://app.example.com"


async def admitted(validator: StrictOriginValidator, headers: list[tuple[bytes, bytes]]) -> bool:
    communicator = WebsocketCommunicator(validator, "/ws/rpc/", headers=headers)
    connected, _ = await communicator.connect()
    await communicator.disconnect()
    return bool(connected)


def validator(*, same_origin: bool) -> StrictOriginValidator:
    return StrictOriginValidator(RpcConsumer.as_asgi(), [ALLOWED], allow_same_origin=same_origin)


@pytest.mark.parametrize(
    ("origin", "host", "same_origin_admits"),
    [
        (b"http://127.0.0.1:8123", b"127.0.0.1:8123", True),
        (b"https://localhost", b"localhost", True),
        (b"http://127.0.0.1:8124", b"127.0.0.1:8123", False),  # another port is another origin
        (b"http://evil.test:8123", b"127.0.0.1:8123", False),
        # DNS rebinding: the page's host matches its origin but is not an allowed host.
        (b"http://rebound.test:8123", b"rebound.test:8123", False),
        (b"ftp://127.0.0.1:8123", b"127.0.0.1:8123", False),
        (b"http://127.0.0.1:8123/path", b"127.0.0.1:8123", False),
        (b"null", b"127.0.0.1:8123", False),
    ],
)
@override_settings(ALLOWED_HOSTS=["127.0.0.1", "localhost"])
async def test_same_origin_is_admitted_only_for_an_allowed_host(
    origin: bytes, host: bytes, same_origin_admits: bool
) -> None:
    headers = [(b"origin", origin), (b"host", host)]
    assert await admitted(validator(same_origin=True), headers) is same_origin_admits
    assert await admitted(validator(same_origin=False), headers) is False


@override_settings(ALLOWED_HOSTS=["127.0.0.1"])
async def test_configured_origins_and_missing_origin_still_work_with_same_origin_on() -> None:
    strict = validator(same_origin=True)
    assert await admitted(strict, [(b"origin", ALLOWED.encode()), (b"host", b"127.0.0.1")])
    assert await admitted(strict, [(b"host", b"127.0.0.1")])  # non-browser client
    assert not await admitted(strict, [(b"origin", b"https://evil.test"), (b"host", b"127.0.0.1")])


async def test_allow_missing_false_refuses_a_handshake_without_origin() -> None:
    strict = StrictOriginValidator(RpcConsumer.as_asgi(), [ALLOWED], allow_missing=False)
    assert not await admitted(strict, [(b"host", b"app.example.com")])
    assert await admitted(strict, [(b"origin", ALLOWED.encode()), (b"host", b"app.example.com")])
    assert not await admitted(strict, [(b"origin", b"https://evil.test")])


def test_an_origin_without_scheme_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="full origins"):
        StrictOriginValidator(RpcConsumer.as_asgi(), ["localhost"])
