from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from channels_rpc import embedded

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
async def _stop_embedded_worker(anyio_backend: str) -> AsyncIterator[None]:
    """Stop the embedded worker the test's connections started, inside the test's event loop."""
    yield
    await embedded.shutdown()
