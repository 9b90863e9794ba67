from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from channels_rpc import check_size_limits as public_check_size_limits
from channels_rpc.exceptions import JsonRpcError, RequestTooLargeError
from channels_rpc.limits import check_size_limits


@pytest.fixture(autouse=True)
def _small_limits() -> Iterator[None]:
    limits = {
        "MAX_ARRAY_LENGTH": 3,
        "MAX_STRING_LENGTH": 4,
        "MAX_NESTING_DEPTH": 2,
        "MAX_METHOD_NAME_LENGTH": 5,
    }
    with override_settings(CHANNELS_RPC=limits):
        yield


def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def test_public_name() -> None:
    assert public_check_size_limits is check_size_limits


@pytest.mark.parametrize(
    "data",
    [
        {"method": "abcde"},
        {"method": "m", "params": [1, 2, 3]},
        {"method": "m", "params": ["abcd"]},
        {"method": "m", "params": nested(2)},
        {"method": "m", "params": {"k": [1]}},
        {"method": 123456},
        {},
        {"method": "m", "id": "x" * 100, "other": [1, 2, 3, 4, 5]},
    ],
)
def test_within_limits(data: dict[str, Any]) -> None:
    check_size_limits(data)


@pytest.mark.parametrize(
    ("data", "limit_type", "limit"),
    [
        ({"method": "abcdef"}, "method_name_length", 5),
        ({"method": "abcdef", "params": [1, 2, 3, 4]}, "method_name_length", 5),
        ({"method": "m", "params": [1, 2, 3, 4]}, "array_length", 3),
        ({"method": "m", "params": ["abcde"]}, "string_length", 4),
        ({"method": "m", "params": {"abcde": 1}}, "string_length", 4),
        ({"method": "m", "params": nested(3)}, "nesting_depth", 2),
        ({"method": "m", "params": {"k": [1], "j": [[1]]}}, "nesting_depth", 2),
    ],
)
def test_violations_raise_request_too_large(
    data: dict[str, Any], limit_type: str, limit: int
) -> None:
    with pytest.raises(RequestTooLargeError) as caught:
        check_size_limits(data, rpc_id=42)
    error = caught.value
    assert isinstance(error, JsonRpcError)
    assert (error.rpc_id, error.limit_type, error.limit_value) == (42, limit_type, limit)
    assert error.as_dict() == {
        "jsonrpc": "2.0",
        "id": 42,
        "error": {
            "code": -32001,
            "message": f"Request Too Large: {limit_type} exceeds limit of {limit}",
            "data": {"limit_type": limit_type, "limit": limit},
        },
    }


def test_rpc_id_defaults_to_none() -> None:
    with pytest.raises(RequestTooLargeError) as caught:
        check_size_limits({"method": "m", "params": [1, 2, 3, 4]})
    assert caught.value.rpc_id is None


def test_limits_follow_the_current_settings() -> None:
    data = {"method": "m", "params": [1, 2, 3, 4]}
    with pytest.raises(RequestTooLargeError):
        check_size_limits(data)
    with override_settings(CHANNELS_RPC={"MAX_ARRAY_LENGTH": 4}):
        check_size_limits(data)
