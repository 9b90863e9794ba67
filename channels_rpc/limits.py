"""``check_size_limits``: the size checks of channels-rpc 1.0.1, for code that calls them."""

from __future__ import annotations

from typing import Any

from channels_rpc.config import get_config
from channels_rpc.exceptions import RequestTooLargeError
from channels_rpc.protocol import params_violation

__all__ = ["check_size_limits"]


def check_size_limits(data: dict[str, Any], rpc_id: Any = None) -> None:
    """Raise :class:`RequestTooLargeError` if a request object breaks a configured limit.

    Checks the method name's length, then ``params``: nesting depth, string and array lengths.
    Every frame the consumer receives is already checked this way.
    """
    limits = get_config().limits
    method = data.get("method")
    if isinstance(method, str) and len(method) > limits.max_method_name_length:
        raise RequestTooLargeError(rpc_id, "method_name_length", limits.max_method_name_length)
    violation = params_violation(data.get("params", {}), limits)
    if violation is not None:
        raise RequestTooLargeError(rpc_id, *violation)
