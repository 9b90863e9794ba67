"""The Django app: add ``"channels_rpc"`` to INSTALLED_APPS for the ``rpcworker`` command."""

from __future__ import annotations

from django.apps import AppConfig


class ChannelsRpcConfig(AppConfig):  # type: ignore[misc]
    name = "channels_rpc"
    verbose_name = "Channels RPC"

    def ready(self) -> None:
        from channels_rpc.config import get_config

        get_config()  # a broken CHANNELS_RPC setting fails at startup, not on the first call
