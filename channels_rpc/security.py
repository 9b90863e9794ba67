"""Connection-level security helpers: strict origin checks and credential expiry.

``StrictOriginValidator`` is Channels' ``OriginValidator`` with two changes. Every allowed origin
must be a full ``scheme://host[:port]`` (a host-only pattern accepts any scheme and port, so
``localhost`` would admit a page served from any port of that machine). And a handshake without
an ``Origin`` header may be let through (``allow_missing=True``, the default): browsers always
send one on WebSocket handshakes, so cross-site WebSocket hijacking is still refused, while
non-browser clients, which can forge the header anyway, must authenticate like everyone else.
With ``allow_same_origin=True`` a page served by the same site is admitted too: its ``Origin``
names the very host and port of the handshake's ``Host`` header, and that host must pass
Django's ``ALLOWED_HOSTS`` (which is what stops a DNS-rebinding page, whose host matches its
own origin, from getting in). That lets one deployment serve its page on any port.

Credential expiry: an authentication middleware that puts ``scope["auth_expires_at"]`` (epoch
seconds) on the scope makes the consumer refuse calls from then on and close the connection
with 4001 (see ``AsyncJsonRpcWebsocketConsumer``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import ParseResult, urlparse

from channels.security.websocket import OriginValidator
from django.conf import settings
from django.http.request import split_domain_port, validate_host

__all__ = ["AUTH_EXPIRES_AT", "StrictOriginValidator"]

#: The scope key an authentication middleware sets to the expiry (epoch seconds) of credentials.
AUTH_EXPIRES_AT = "auth_expires_at"


class StrictOriginValidator(OriginValidator):  # type: ignore[misc]
    """Admit only handshakes whose ``Origin`` is exactly one of ``allowed_origins``."""

    def __init__(
        self,
        application: Any,
        allowed_origins: Iterable[str],
        *,
        allow_missing: bool = True,
        allow_same_origin: bool = False,
    ) -> None:
        origins = list(allowed_origins)
        for origin in origins:
            parsed = urlparse(origin)
            if origin != "*" and not (parsed.scheme and parsed.hostname and not parsed.path):
                raise ValueError(
                    f"{origin!r}: allowed origins must be full origins such as "
                    "'https://app.example.com' or 'http://localhost:8000' (or '*')."
                )
        super().__init__(application, origins)
        self.allow_missing = allow_missing
        self.allow_same_origin = allow_same_origin

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        if self.allow_same_origin and _same_origin(scope):
            return await self.application(scope, receive, send)
        return await super().__call__(scope, receive, send)

    def valid_origin(self, parsed_origin: ParseResult | None) -> bool:
        if parsed_origin is None:
            return self.allow_missing
        valid: bool = self.validate_origin(parsed_origin)
        return valid


def _same_origin(scope: Any) -> bool:
    """The handshake's ``Origin`` names its own ``Host`` (an allowed host), with a web scheme."""
    headers = dict(scope.get("headers", ()))
    try:
        origin = urlparse(headers[b"origin"].decode("latin1"))
        host = headers[b"host"].decode("latin1")
    except (KeyError, UnicodeDecodeError, ValueError):
        return False
    if origin.scheme not in ("http", "https") or origin.path or not origin.netloc:
        return False
    domain, _port = split_domain_port(host)
    allowed_host = bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)
    return allowed_host and origin.netloc.lower() == host.lower()
