"""What the commands that send JSON-RPC (rpccall, rpcnotify) read from their command line."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError

__all__ = ["json_params"]


def json_params(text: str | None, returncode: int) -> Any:
    """PARAMS as given: None, or a JSON array or object (JSON-RPC's structured params)."""
    if text is None:
        return None
    try:
        params = json.loads(text)
    except ValueError as exc:
        raise CommandError(f"PARAMS is not JSON: {exc}", returncode=returncode) from None
    if not isinstance(params, (list, dict)):
        raise CommandError(
            f"PARAMS must be a JSON array or object, not {text!r}.", returncode=returncode
        )
    return params
