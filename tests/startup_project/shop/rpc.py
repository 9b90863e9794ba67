"""The shop's methods: found by every process because an installed app's ``rpc`` module is."""

from __future__ import annotations

import os

from tests.startup_project.shop.consumers import ShopConsumer


@ShopConsumer.rpc_method()
def add(a: int, b: int) -> int:
    return a + b


@ShopConsumer.rpc_method()
def pid() -> int:
    return os.getpid()


@ShopConsumer.rpc_method(queue="rpc.slow")
def report() -> str:
    return "a slow report"
