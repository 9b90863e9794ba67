"""Test suites written for channels-rpc 1.0.1 run here unchanged in style.

Their shape: pytest-asyncio's ``@pytest.mark.asyncio`` (a fresh event loop for every test),
``channels.testing.WebsocketCommunicator`` on the in-memory channel layer, consumers and methods
defined inside the test functions. Such a suite does not reset Channels' layer registry between
tests, so neither does this directory: the one in-memory layer instance is used from one event
loop after another, as it is in a user's suite. Its settings are the ones the README's
"Differences from channels-rpc 1.0.1" gives to restore 1.0.1's unlimited calls per connection.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import override_settings

from channels_rpc.config import reset_config

#: What a 1.0.1 suite sets after reading the README (no limit on calls per connection).
SETTINGS_OF_1_0_1 = {"MAX_IN_FLIGHT": 0, "RATE_LIMIT": 0}


@pytest.fixture(autouse=True)
def _fresh_channel_layers() -> Iterator[None]:
    # Replaces the fixture of tests/conftest.py: a 1.0.1 suite keeps the layer registry, and
    # with it the same in-memory layer, from one test's event loop to the next.
    reset_config()
    with override_settings(CHANNELS_RPC=SETTINGS_OF_1_0_1):
        yield
    reset_config()
