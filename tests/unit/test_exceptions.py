from __future__ import annotations

import json
from typing import Any

import pytest

from channels_rpc.exceptions import (
    RPC_ERRORS,
    JsonRpcError,
    JsonRpcErrorCode,
    RequestTooLargeError,
    error_object,
    generate_error_response,
)

BASE_MESSAGES = [
    (JsonRpcErrorCode.PARSE_ERROR, -32700, "Parse Error"),
    (JsonRpcErrorCode.INVALID_REQUEST, -32600, "Invalid Request"),
    (JsonRpcErrorCode.METHOD_NOT_FOUND, -32601, "Method Not Found"),
    (JsonRpcErrorCode.INVALID_PARAMS, -32602, "Invalid Params"),
    (JsonRpcErrorCode.INTERNAL_ERROR, -32603, "Internal Error"),
    (JsonRpcErrorCode.GENERIC_APPLICATION_ERROR, -32000, "Application Error"),
    (JsonRpcErrorCode.REQUEST_TOO_LARGE, -32001, "Request Too Large"),
    (JsonRpcErrorCode.SERVER_BUSY, -32010, "Server Busy"),
    (JsonRpcErrorCode.SERVICE_UNAVAILABLE, -32011, "Service Unavailable"),
    (JsonRpcErrorCode.DEADLINE_EXCEEDED, -32012, "Deadline Exceeded"),
    (JsonRpcErrorCode.UNAUTHORIZED, -32013, "Unauthorized"),
    (JsonRpcErrorCode.RESPONSE_TOO_LARGE, -32014, "Response Too Large"),
    (JsonRpcErrorCode.SESSION_NOT_FOUND, -32015, "Session Not Found"),
    (JsonRpcErrorCode.PARSE_RESULT_ERROR, -32701, "Error while parsing result"),
    (JsonRpcErrorCode.REQUEST_CANCELLED, -32800, "Request Cancelled"),
]


@pytest.mark.parametrize(("member", "value", "message"), BASE_MESSAGES)
def test_every_code_has_its_value_and_base_message(
    member: JsonRpcErrorCode, value: int, message: str
) -> None:
    assert int(member) == value
    assert RPC_ERRORS[member] == message
    assert error_object(member) == {"code": value, "message": message}
    assert JsonRpcError(1, member).as_dict() == {
        "jsonrpc": "2.0",
        "id": 1,
        "error": {"code": value, "message": message},
    }


def test_the_code_table_is_complete() -> None:
    assert set(RPC_ERRORS) == set(JsonRpcErrorCode)
    assert len(BASE_MESSAGES) == len(JsonRpcErrorCode)


def test_error_object_code_is_a_plain_int() -> None:
    error = error_object(JsonRpcErrorCode.INVALID_PARAMS)
    assert type(error["code"]) is int
    assert json.dumps(error) == '{"code": -32602, "message": "Invalid Params"}'


@pytest.mark.parametrize(
    ("code", "data", "message"),
    [
        (-32601, {"method": "foo"}, "Method Not Found: 'foo'"),
        (-32601, {"method": ""}, "Method Not Found"),
        (-32601, {"other": 1}, "Method Not Found"),
        (
            -32600,
            {"version": "1.0"},
            "Invalid Request: Invalid JSON-RPC version '1.0', expected '2.0'",
        ),
        (
            -32600,
            {"version": None},
            "Invalid Request: Invalid JSON-RPC version 'None', expected '2.0'",
        ),
        (
            -32600,
            {"version": True, "field": "ignored"},
            "Invalid Request: Invalid JSON-RPC version 'True', expected '2.0'",
        ),
        (-32600, {"field": "Missing 'method'"}, "Invalid Request: Missing 'method'"),
        (-32600, {"other": 1}, "Invalid Request"),
        (-32602, {"expected": "int", "actual": "str"}, "Invalid Params: Expected int, got str"),
        (-32602, {"expected": "int"}, "Invalid Params"),
        (-32602, {"actual": "str"}, "Invalid Params"),
        (
            -32001,
            {"limit_type": "array_length", "limit": 10},
            "Request Too Large: array_length exceeds limit of 10",
        ),
        (-32001, {"x": 1}, "Request Too Large: unknown exceeds limit of unknown"),
        (
            -32603,
            {"timeout": 5},
            "Internal Error: Method execution timed out after 5.0 seconds",
        ),
        (
            -32603,
            {"timeout": 0.26},
            "Internal Error: Method execution timed out after 0.3 seconds",
        ),
        (
            -32603,
            {"timeout": 12.345},
            "Internal Error: Method execution timed out after 12.3 seconds",
        ),
        (-32603, {"other": 1}, "Internal Error"),
        (-32700, {"error": "x"}, "Parse Error"),
        (-32000, {"type": "ValueError"}, "Application Error"),
    ],
)
def test_message_enhancement_rules(code: int, data: dict[str, Any], message: str) -> None:
    assert error_object(code, data=data) == {"code": code, "message": message, "data": data}
    assert JsonRpcError(7, code, data).as_dict() == {
        "jsonrpc": "2.0",
        "id": 7,
        "error": {"code": code, "message": message, "data": data},
    }


@pytest.mark.parametrize("data", [{}, [], "text", 0, ["method", "x"]])
def test_only_non_empty_dicts_enhance_the_message(data: Any) -> None:
    assert error_object(-32601, data=data)["message"] == "Method Not Found"
    assert error_object(-32001, data=data)["message"] == "Request Too Large"


def test_falsy_data_other_than_none_is_still_included() -> None:
    assert error_object(-32602, data=0) == {"code": -32602, "message": "Invalid Params", "data": 0}
    assert error_object(-32602, data={}) == {
        "code": -32602,
        "message": "Invalid Params",
        "data": {},
    }
    assert "data" not in error_object(-32602, data=None)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (-32050, "Server Error"),
        (-32099, "Server Error"),
        (-31999, "Error"),
        (-32100, "Error"),
        (4000, "Error"),
    ],
)
def test_custom_codes_get_a_generic_message(code: int, message: str) -> None:
    error = JsonRpcError(None, code, {"why": "custom"})
    assert error.code == code
    assert error.error() == {"code": code, "message": message, "data": {"why": "custom"}}


def test_explicit_message_overrides_every_rule() -> None:
    error = JsonRpcError("a", -32601, {"method": "foo"}, message="Nope")
    assert error.as_dict() == {
        "jsonrpc": "2.0",
        "id": "a",
        "error": {"code": -32601, "message": "Nope", "data": {"method": "foo"}},
    }
    assert error_object(4000, "") == {"code": 4000, "message": ""}


def test_json_rpc_error_keeps_upstream_attributes() -> None:
    error = JsonRpcError(3, JsonRpcErrorCode.INVALID_PARAMS, {"a": 1})
    assert isinstance(error, Exception)
    assert error.rpc_id == 3
    assert error.code == -32602
    assert type(error.code) is int
    assert error.data == {"a": 1}
    assert error.message is None
    assert error.args == (3, JsonRpcErrorCode.INVALID_PARAMS, {"a": 1})


def test_str_is_the_json_of_as_dict() -> None:
    error = JsonRpcError(9, -32601, {"method": "m"})
    assert json.loads(str(error)) == error.as_dict()


def test_str_survives_non_json_data() -> None:
    error = JsonRpcError(1, 4000, {"obj": object()})
    decoded = json.loads(str(error))
    assert decoded["error"]["code"] == 4000
    assert decoded["error"]["data"]["obj"].startswith("<object object")


def test_request_too_large_error_fields() -> None:
    error = RequestTooLargeError(5, "string_length", 100)
    assert isinstance(error, JsonRpcError)
    assert error.rpc_id == 5
    assert error.limit_type == "string_length"
    assert error.limit_value == 100
    assert error.code == JsonRpcErrorCode.REQUEST_TOO_LARGE
    assert error.data == {"limit_type": "string_length", "limit": 100}
    assert error.as_dict() == {
        "jsonrpc": "2.0",
        "id": 5,
        "error": {
            "code": -32001,
            "message": "Request Too Large: string_length exceeds limit of 100",
            "data": {"limit_type": "string_length", "limit": 100},
        },
    }


def test_generate_error_response_uses_the_given_message() -> None:
    assert generate_error_response(1, -32601, "custom") == {
        "jsonrpc": "2.0",
        "id": 1,
        "error": {"code": -32601, "message": "custom"},
    }
    assert generate_error_response(None, -32602, "bad", {"x": 1}) == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32602, "message": "bad", "data": {"x": 1}},
    }


@pytest.mark.parametrize("timeout", ["soon", None, [1]])
def test_non_numeric_timeout_does_not_break_the_message(timeout: Any) -> None:
    error = JsonRpcError(1, JsonRpcErrorCode.INTERNAL_ERROR, {"timeout": timeout})
    assert error.error()["message"].startswith("Internal Error")
    assert json.loads(str(error))["error"]["code"] == -32603
