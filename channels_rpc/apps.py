"""The Django app: add ``"channels_rpc"`` to INSTALLED_APPS.

It gives the management commands (``rpcworker``, ``rpcnotify``, ``rpchealth``), finds the
methods on startup (:mod:`channels_rpc.discovery`), and registers the system checks
(:mod:`channels_rpc.checks`).
"""

from __future__ import annotations

from django.apps import AppConfig


class ChannelsRpcConfig(AppConfig):  # type: ignore[misc]
    name = "channels_rpc"
    verbose_name = "Channels RPC"

    def ready(self) -> None:
        from channels_rpc import checks, discovery
        from channels_rpc.config import RpcConfig

        # A broken CHANNELS_RPC setting fails at startup, not on the first call.
        config = RpcConfig.from_settings()
        checks.register()
        discovery.autodiscover(config.method_modules)
