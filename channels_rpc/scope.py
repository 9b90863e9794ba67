"""The connection's scope on its trip to the worker, both ways, and what the front-end reads of it.

:func:`portable_scope` is what of a connection's ASGI scope travels with each of its calls: JSON
values only, no cookies, headers or objects, the user as a primary key. :func:`worker_scope`
turns it back into the ``ctx.scope`` a method sees in the worker, the user loaded from the
database when first touched (:func:`load_user`). The two live together, as
:mod:`~channels_rpc.envelope` holds both directions of the message.

The front-end also reads the scope for itself: :func:`expires_at` / :func:`credentials_expired`
read :data:`~channels_rpc.security.AUTH_EXPIRES_AT` (epoch seconds), which an authentication
middleware may put there, and :func:`validate_scope` keeps channels-rpc 1.0.1's sanity checks.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping
from typing import Any

from django.apps import apps

from channels_rpc.logsafe import protect
from channels_rpc.security import AUTH_EXPIRES_AT

__all__ = [
    "credentials_expired",
    "expires_at",
    "load_user",
    "portable_scope",
    "validate_scope",
    "worker_scope",
]

# The front-end's records, under the front-end's logger name.
logger = protect(logging.getLogger("channels_rpc"))


# ------------------------------------------------------------------------------------------------
# The front-end's side


def portable_scope(scope: Mapping[str, Any], *, subprotocol: str | None = None) -> dict[str, Any]:
    """What of a connection's scope travels with its calls: no cookies, headers or objects.

    Of the subprotocols the client offered, only ``subprotocol`` (the one accepted) travels:
    clients that cannot set headers (browsers) offer credentials as subprotocols
    (``bearer.<token>``), and credentials never leave the front-end.
    """
    route = scope.get("url_route") or {}
    portable: dict[str, Any] = {
        "type": scope.get("type"),
        "path": scope.get("path"),
        "query_string": bytes(scope.get("query_string", b"")).decode("latin-1"),
        "client": list(scope["client"]) if scope.get("client") else None,
        "server": list(scope["server"]) if scope.get("server") else None,
        "subprotocols": [subprotocol] if subprotocol else [],
        "url_route": {
            "args": [str(arg) for arg in route.get("args", ())],
            "kwargs": {str(k): str(v) for k, v in route.get("kwargs", {}).items()},
        },
        "user": _portable_user(scope.get("user")),
    }
    session = scope.get("session")
    if session is not None:
        portable["session_key"] = getattr(session, "session_key", None)
    return portable


def _portable_user(user: Any) -> dict[str, Any] | None:
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return {"pk": str(user.pk)}


def validate_scope(scope: Any) -> None:
    """channels-rpc 1.0.1's sanity checks: raises if ``scope`` is not a dict, warns if odd."""
    if not isinstance(scope, dict):
        raise ValueError("Scope must be a dict")
    if scope.get("type") not in ("websocket", "websocket.receive", "websocket.disconnect"):
        logger.warning("unexpected scope type %r", scope.get("type"))
    client = scope.get("client")
    if client is not None and not (isinstance(client, (list, tuple)) and len(client) == 2):
        logger.warning("malformed client in scope: %r", client)


def expires_at(scope: Mapping[str, Any]) -> float | None:
    """When the credentials the connection was opened with expire (epoch seconds), if they do."""
    value: float | None = scope.get(AUTH_EXPIRES_AT)
    return value


def credentials_expired(scope: Mapping[str, Any]) -> bool:
    expiry = expires_at(scope)
    return expiry is not None and time.time() >= expiry


# ------------------------------------------------------------------------------------------------
# The worker's side


def worker_scope(portable: Mapping[str, Any]) -> dict[str, Any]:
    """``ctx.scope`` in a worker: the portable scope, its user loaded when first touched."""
    scope = dict(portable)
    user = scope.get("user")
    if apps.is_installed("django.contrib.auth"):
        from django.utils.functional import SimpleLazyObject

        scope["user"] = SimpleLazyObject(functools.partial(load_user, user))
    return scope


def load_user(user: Mapping[str, Any] | None) -> Any:
    """The user a portable scope names, or an anonymous user (sync: touches the database)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import AnonymousUser

    if not user or user.get("pk") is None:
        return AnonymousUser()
    model = get_user_model()
    try:
        return model._default_manager.get(pk=user["pk"])
    except model.DoesNotExist:
        return AnonymousUser()
