"""Where methods come from: the modules each process imports so that its registrations exist.

A method exists in a process once the module that decorates it has been imported there, and a
call needs it twice: in the front-end (to check and enqueue it) and in the worker (to run it).
So every process imports the same modules, found the way Django's admin finds ``admin.py``:

1. the ``rpc`` submodule of every installed app that has one (``myapp/rpc.py``);
2. the modules listed in ``CHANNELS_RPC["METHOD_MODULES"]``;

both on startup, in ``ChannelsRpcConfig.ready()``. ``rpcworker`` also imports
``ASGI_APPLICATION``, as daphne does, so that methods registered by modules the ASGI
application imports exist in workers too.

What was searched is remembered, for the messages that say where a method was looked for.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from django.apps import apps
from django.conf import settings
from django.utils.module_loading import autodiscover_modules

from channels_rpc.registry import live_tables

__all__ = [
    "MODULE",
    "NOT_IN_THIS_WORKER",
    "autodiscover",
    "import_application",
    "missing_method",
    "not_here",
    "nothing_registered",
    "registered_count",
    "where",
]

#: The submodule of an installed app that is imported for its methods.
MODULE: Final = "rpc"
#: ``data.reason`` of the -32601 a worker answers for a method it does not have.
NOT_IN_THIS_WORKER: Final = (
    "the worker that took the call does not have this method: it runs other code than the "
    "front-end, or never imported the module that registers it"
)
_FIX: Final = (
    f'Register methods with @YourConsumer.rpc_method() in the "{MODULE}" module of an app in '
    f"INSTALLED_APPS (myapp/{MODULE}.py), or list the modules that register them in "
    'CHANNELS_RPC["METHOD_MODULES"].'
)


@dataclass
class _Searched:
    apps: list[str] | None = None  # labels of the apps searched; None: never searched
    app_modules: list[str] = field(default_factory=list)
    method_modules: list[str] = field(default_factory=list)


_searched = _Searched()


def autodiscover(method_modules: Iterable[str]) -> None:
    """Import every installed app's ``rpc`` module, then ``method_modules``.

    An app without the module is skipped; an error raised while importing one that exists
    (an ImportError inside it included) propagates, so startup fails on it.
    """
    autodiscover_modules(MODULE)
    configs = list(apps.get_app_configs())
    _searched.apps = [config.label for config in configs]
    _searched.app_modules = [
        f"{config.name}.{MODULE}" for config in configs if f"{config.name}.{MODULE}" in sys.modules
    ]
    _searched.method_modules = list(method_modules)
    for module in _searched.method_modules:
        importlib.import_module(module)


def import_application() -> None:
    """Import ``ASGI_APPLICATION``, if set, as daphne and ``runserver`` do."""
    if getattr(settings, "ASGI_APPLICATION", None):
        from channels.routing import get_default_application

        get_default_application()


def registered_count() -> int:
    """How many methods and notifications are registered in this process, on any consumer."""
    return sum(len(table.methods) + len(table.notifications) for table in live_tables())


def where() -> list[str]:
    """Where this process looked for methods, one line per source."""
    if _searched.apps is None:
        apps_line = 'not searched ("channels_rpc" is not in INSTALLED_APPS)'
    else:
        found = ", ".join(_searched.app_modules) or "none found"
        apps_line = f"{found} (searched {len(_searched.apps)} apps: {', '.join(_searched.apps)})"
    return [
        f'the "{MODULE}" module of each installed app: {apps_line}',
        f'CHANNELS_RPC["METHOD_MODULES"]: {", ".join(_searched.method_modules) or "none"}',
        f"ASGI_APPLICATION: {_application_line()}",
    ]


def _application_line() -> str:
    path = getattr(settings, "ASGI_APPLICATION", None)
    if not path:
        return "not set"
    imported = path.rpartition(".")[0] in sys.modules  # by rpcworker, daphne or runserver
    return f"{path} ({'imported' if imported else 'not imported by this process'})"


def nothing_registered() -> str:
    """Why a worker refuses to start with no method: where it looked, and what to do."""
    lines = "\n".join(f"  - {line}" for line in where())
    return (
        f"No RPC methods are registered, so there is nothing to serve. Looked in:\n{lines}\n{_FIX}"
    )


def missing_method(method: str, consumer: str, consumer_cls: type | None) -> str:
    """The log line of a worker asked for a method it does not have (one line)."""
    what = (
        f"no method {method!r} on {consumer}"
        if consumer_cls is not None
        else f"no method {method!r}: the consumer class {consumer} cannot be imported"
    )
    return (
        f"{what} in this worker (pid {os.getpid()}), though the front-end that sent the call "
        "has it: the two run different code (a deploy in progress?), or the module that "
        f"registers it is imported by the front-end only. This worker looked in: "
        f"{'; '.join(where())}. {_FIX}"
    )


def not_here(method: str) -> dict[str, str]:
    """``data`` of the -32601 answer to a call of a method this worker does not have."""
    return {"method": method, "reason": NOT_IN_THIS_WORKER}
