"""Token authentication for non-browser clients, checked before the socket is accepted.

Browsers use the session cookie (``AuthMiddlewareStack``), protected by the origin check in
``workers.asgi``. Services send ``Authorization: Bearer <token>``, or, from a browser page that
cannot set headers, offer the subprotocol ``bearer.<token>`` next to ``jsonrpc``. A token is a
signed ``{"uid", "exp"}`` (``manage.py rpctoken``); its expiry goes on the scope, so the consumer
stops answering and closes with 4001 once it passes.

Tokens use only characters a subprotocol may contain (RFC 6455: no ``:``): Django's signer
separates its parts with ``:``, written ``~`` here (not in the base64url alphabet it uses).
"""

from __future__ import annotations

import time
from typing import Any

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.core import signing

from channels_rpc.security import AUTH_EXPIRES_AT

SALT = "workers.auth.token"
SUBPROTOCOL_PREFIX = "bearer."


def issue_token(user_pk: Any, ttl: float | None = None) -> str:
    """A token for the user with primary key ``user_pk``, valid ``ttl`` seconds."""
    ttl = settings.RPC_TOKEN_TTL if ttl is None else ttl
    token: str = signing.dumps({"uid": str(user_pk), "exp": time.time() + ttl}, salt=SALT)
    return token.replace(":", "~")


def _token(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            return bytes(value[7:]).decode("latin-1").strip()
    for subprotocol in scope.get("subprotocols", ()):
        if subprotocol.startswith(SUBPROTOCOL_PREFIX):
            return str(subprotocol[len(SUBPROTOCOL_PREFIX) :])
    return None


@database_sync_to_async
def _user(pk: str) -> Any:
    model = get_user_model()
    try:
        return model._default_manager.get(pk=pk, is_active=True)
    except model.DoesNotExist:
        return AnonymousUser()


class TokenAuthMiddleware(BaseMiddleware):
    """Sets ``scope["user"]`` and ``scope["auth_expires_at"]`` from a bearer token, if any."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        token = _token(scope)
        if token is not None:
            scope = dict(scope)
            try:
                claims = signing.loads(token.replace("~", ":"), salt=SALT)
            except signing.BadSignature:
                claims = None
            if claims is None or claims["exp"] <= time.time():
                scope["user"] = AnonymousUser()
            else:
                scope["user"] = await _user(claims["uid"])
                scope[AUTH_EXPIRES_AT] = claims["exp"]
        return await super().__call__(scope, receive, send)
