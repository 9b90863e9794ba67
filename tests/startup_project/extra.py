"""A method registered by a module that only the ASGI application imports: daphne has it,
a worker (which finds the shop's ``rpc`` module, and has no ASGI_APPLICATION to import) does not."""

from __future__ import annotations

from tests.startup_project.shop.consumers import ShopConsumer


@ShopConsumer.rpc_method()
def only_in_daphne() -> str:
    return "daphne imported me"
