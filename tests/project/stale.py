"""A method only some processes register (``METHOD_MODULES``): a worker of an older or newer
deploy than its front-ends, which ``rpcstatus`` must point out."""

from __future__ import annotations

from tests.project.consumers import ProbeConsumer


@ProbeConsumer.rpc_method()
async def stale_only() -> str:
    return "registered by this process only"
