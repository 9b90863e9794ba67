from __future__ import annotations

import datetime
import decimal
import json
import time
from collections import OrderedDict
from http import HTTPStatus
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels_rpc.protocol import (
    MAX_ID_LENGTH,
    Message,
    Rejection,
    Request,
    RpcLimits,
    dumps,
    encode_error,
    encode_id,
    error_frame,
    params_violation,
    parse,
    result_frame,
    utf8_size,
    validate,
)

LIMITS = RpcLimits()


def frame(**members: Any) -> str:
    return json.dumps({"jsonrpc": "2.0", **members}, ensure_ascii=False)


def rejection(message: Message) -> Rejection:
    assert isinstance(message, Rejection), message
    return message


def request(message: Message) -> Request:
    assert isinstance(message, Request), message
    return message


def nested_lists(levels: int, inner: Any = 1) -> Any:
    value: Any = inner
    for _ in range(levels):
        value = [value]
    return value


# --------------------------------------------------------------------------------------------
# Valid requests


def test_a_call_is_parsed() -> None:
    req = request(parse(frame(method="sum", params=[1, 2], id=1), LIMITS))
    assert req.method == "sum"
    assert req.params == [1, 2]
    assert req.id == 1
    assert not req.is_notification
    assert req.data == {"jsonrpc": "2.0", "method": "sum", "params": [1, 2], "id": 1}


def test_a_notification_has_no_id_member() -> None:
    req = request(parse(frame(method="ping"), LIMITS))
    assert req.is_notification
    assert req.id is None
    assert req.params == {}


def test_a_null_id_is_a_call_not_a_notification() -> None:
    req = request(parse(frame(method="ping", id=None), LIMITS))
    assert not req.is_notification
    assert req.id is None


@pytest.mark.parametrize("rpc_id", ["abc", "", 0, -5, 1.5, 2**64, "x" * MAX_ID_LENGTH])
def test_string_and_number_ids_are_kept(rpc_id: Any) -> None:
    assert request(parse(frame(method="m", id=rpc_id), LIMITS)).id == rpc_id


def test_unknown_members_are_ignored() -> None:
    req = request(parse(frame(method="m", id=1, foo={"bar": 1}), LIMITS))
    assert req.data["foo"] == {"bar": 1}


# --------------------------------------------------------------------------------------------
# Frame size


def test_message_size_counts_utf8_bytes() -> None:
    text = frame(method="m", params=["é" * 10], id=1)
    size = len(text.encode("utf-8"))
    assert size > len(text)
    assert isinstance(parse(text, RpcLimits(max_message_size=size)), Request)
    error = rejection(parse(text, RpcLimits(max_message_size=size - 1))).error
    assert error["code"] == -32001
    assert error["data"] == {"limit_type": "message_size", "limit": size - 1}
    assert error["message"] == f"Message size {size} exceeds limit of {size - 1} bytes"


@pytest.mark.parametrize("char", ["a", "é", "€", "😀"])
def test_exactly_at_the_byte_limit_passes(char: str) -> None:
    text = json.dumps({"jsonrpc": "2.0", "method": "m", "params": [char * 50]}, ensure_ascii=False)
    size = len(text.encode("utf-8"))
    assert isinstance(parse(text, RpcLimits(max_message_size=size)), Request)
    too_big = rejection(parse(text, RpcLimits(max_message_size=size - 1)))
    assert too_big.error["code"] == -32001
    assert too_big.id is None
    assert too_big.answer


# --------------------------------------------------------------------------------------------
# Nesting depth before decoding


@pytest.mark.parametrize("opener", ["[", "{", '{"a":'])
def test_very_deep_input_is_refused_without_an_exception(opener: str) -> None:
    text = opener * 100_000
    error = rejection(parse(text, LIMITS)).error
    assert error["code"] == -32001
    assert error["data"] == {"limit_type": "nesting_depth", "limit": 20}


def test_deep_but_balanced_input_is_refused() -> None:
    text = "[" * 100_000 + "]" * 100_000
    error = rejection(parse(text, LIMITS)).error
    assert error["data"]["limit_type"] == "nesting_depth"


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    params = ["[" * 500, "{" * 500, 'a"[[[' + "[" * 100]
    assert request(parse(frame(method="m", params=params, id=1), LIMITS)).params == params


def test_escaped_quotes_do_not_end_the_string_for_the_depth_scan() -> None:
    text = frame(method="m", params=['\\"' + "[" * 100 + '\\"'], id=1)
    assert isinstance(parse(text, LIMITS), Request)


def test_depth_scan_is_linear_on_unterminated_strings() -> None:
    # 20,000 escaped quotes: a linear scan takes about 2 ms here, a scan that rereads the rest
    # of the string from each quote about 5 s. The bound sits far from both, so a busy machine
    # cannot fail the one and no machine can pass the other.
    text = '"' + '\\"' * 20_000 + "[" * 30
    started = time.perf_counter()
    result = parse(text, LIMITS)
    elapsed = time.perf_counter() - started
    assert isinstance(result, Rejection)
    assert elapsed < 0.5


# --------------------------------------------------------------------------------------------
# Decoding


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "not json",
        '{"jsonrpc": "2.0", "method": "m", "id": 1} trailing',
        '{"jsonrpc": "2.0", "method": "m", "id": 1}{}',
        "\ufeff" + '{"jsonrpc": "2.0", "method": "m", "id": 1}',
        '{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]',
        '[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"}, {"jsonrpc": "2.0"',
        '{"jsonrpc": "2.0", "method": "m", "params": [NaN], "id": 1}',
        '{"jsonrpc": "2.0", "method": "m", "params": [Infinity], "id": 1}',
        '{"jsonrpc": "2.0", "method": "m", "params": [-Infinity], "id": 1}',
        '{"jsonrpc": "2.0", "method": "m", "params": [1e400], "id": 1}',
        '{"jsonrpc": "2.0", "method": "m", "params": [-1e400], "id": 1}',
        '{"jsonrpc": "2.0", "method": "m", "params": [' + "9" * 5000 + '], "id": 1}',
        "NaN",
    ],
)
def test_parse_errors(text: str) -> None:
    result = rejection(parse(text, LIMITS))
    assert result.error["code"] == -32700
    assert result.error["message"] == "Parse Error"
    assert isinstance(result.error["data"]["error"], str)
    assert result.id is None
    assert result.answer


def test_large_but_finite_numbers_are_fine() -> None:
    text = '{"jsonrpc": "2.0", "method": "m", "params": [1e300, ' + "9" * 4000 + "], " + '"id": 1}'
    params = request(parse(text, LIMITS)).params
    assert params == [1e300, int("9" * 4000)]


@pytest.mark.parametrize(
    "text",
    [
        '{"jsonrpc": "2.0", "method": "x", "method": "subtract", "id": 1}',
        '{"jsonrpc": "2.0", "method": "m", "params": {"a": 1, "a": 2}, "id": 1}',
        '[{"jsonrpc": "2.0", "method": "m", "id": 1, "id": 2}]',
    ],
)
def test_duplicate_keys_are_an_invalid_request(text: str) -> None:
    result = rejection(parse(text, LIMITS))
    assert result.error["code"] == -32600
    assert "Duplicate key" in result.error["data"]["field"]
    assert result.id is None


# --------------------------------------------------------------------------------------------
# Batches


def test_empty_batch_is_one_invalid_request() -> None:
    result = rejection(parse("[]", LIMITS))
    assert result.error == {
        "code": -32600,
        "message": "Invalid Request: Empty batch",
        "data": {"field": "Empty batch"},
    }
    assert result.id is None


def test_batch_over_max_batch_size() -> None:
    item = {"jsonrpc": "2.0", "method": "m", "id": 1}
    limits = RpcLimits(max_batch_size=3)
    assert isinstance(parse(json.dumps([item] * 3), limits), list)
    result = rejection(parse(json.dumps([item] * 4), limits))
    assert result.error["code"] == -32001
    assert result.error["data"] == {"limit_type": "batch_size", "limit": 3}


def test_batch_elements_are_validated_individually() -> None:
    text = json.dumps(
        [
            {"jsonrpc": "2.0", "method": "sum", "params": [1, 2, 4], "id": "1"},
            {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
            {"foo": "boo"},
            1,
            {"jsonrpc": "1.0", "method": "m", "id": 5},
            {"jsonrpc": "2.0", "method": "m" * 300, "id": 6},
        ]
    )
    result = parse(text, LIMITS)
    assert isinstance(result, list)
    assert len(result) == 6
    first, second, third, fourth, fifth, sixth = result
    assert isinstance(first, Request)
    assert first.id == "1"
    assert isinstance(second, Request)
    assert second.is_notification
    assert isinstance(third, Rejection)
    assert (third.error["code"], third.id) == (-32600, None)
    assert isinstance(fourth, Rejection)
    assert (fourth.error["code"], fourth.id) == (-32600, None)
    assert isinstance(fifth, Rejection)
    assert (fifth.error["code"], fifth.id) == (-32600, 5)
    assert isinstance(sixth, Rejection)
    assert (sixth.error["code"], sixth.id) == (-32001, 6)


def test_batch_of_one_invalid_element_is_a_list() -> None:
    result = parse("[1]", LIMITS)
    assert isinstance(result, list)
    assert len(result) == 1
    assert rejection(result[0]).error["code"] == -32600


# --------------------------------------------------------------------------------------------
# Request objects


@pytest.mark.parametrize(
    ("text", "json_type"),
    [("1", "number"), ("null", "null"), ('"x"', "string"), ("true", "boolean"), ("[[]]", "array")],
)
def test_non_objects_are_invalid_requests(text: str, json_type: str) -> None:
    result = parse(text, LIMITS)
    element = result[0] if isinstance(result, list) else result
    error = rejection(element).error
    assert error["code"] == -32600
    assert error["data"] == {"field": f"Request must be an object, got {json_type}"}
    assert rejection(element).id is None


def test_empty_object_is_an_invalid_request() -> None:
    result = rejection(parse("{}", LIMITS))
    assert result.error["code"] == -32600
    assert result.id is None


@pytest.mark.parametrize(
    ("rpc_id", "json_type"),
    [(True, "boolean"), (False, "boolean"), ([], "array"), ([1], "array"), ({}, "object")],
)
def test_bad_id_types_are_answered_with_a_null_id(rpc_id: Any, json_type: str) -> None:
    result = rejection(parse(frame(method="subtract", params=[1, 2], id=rpc_id), LIMITS))
    assert result.error["code"] == -32600
    assert result.error["data"] == {
        "field": f"'id' must be a string, number or null, got {json_type}"
    }
    assert result.id is None
    assert result.answer


def test_id_longer_than_256_characters_is_refused_with_a_null_id() -> None:
    result = rejection(parse(frame(method="m", id="x" * (MAX_ID_LENGTH + 1)), LIMITS))
    assert result.error == {
        "code": -32600,
        "message": "Request ID too long (max: 256 chars)",
    }
    assert result.id is None


@pytest.mark.parametrize(
    ("members", "version"),
    [
        ({"method": "m", "id": 1}, None),
        ({"jsonrpc": "1.0", "method": "m", "id": 1}, "1.0"),
        ({"jsonrpc": 2.0, "method": "m", "id": 1}, 2.0),
        ({"jsonrpc": 2, "method": "m", "id": "a"}, 2),
        ({"jsonrpc": ["2.0"], "method": "m", "id": 1}, "array"),
        ({"jsonrpc": "2.0.0" * 10, "method": "m", "id": 1}, ("2.0.0" * 10)[:32] + "..."),
    ],
)
def test_wrong_or_missing_version(members: dict[str, Any], version: Any) -> None:
    result = rejection(parse(json.dumps(members), LIMITS))
    assert result.error["code"] == -32600
    assert result.error["data"] == {"version": version}
    assert result.error["message"] == (
        f"Invalid Request: Invalid JSON-RPC version '{version}', expected '2.0'"
    )
    assert result.id == members["id"]


def test_missing_method_echoes_the_id() -> None:
    result = rejection(parse(frame(id=1), LIMITS))
    assert result.error == {
        "code": -32600,
        "message": "Invalid Request: Missing required 'method' field",
        "data": {"field": "Missing required 'method' field"},
    }
    assert result.id == 1


@pytest.mark.parametrize(
    ("method", "type_name"), [(1, "int"), (None, "NoneType"), (["m"], "list"), (True, "bool")]
)
def test_non_string_method(method: Any, type_name: str) -> None:
    result = rejection(parse(frame(method=method, id="q"), LIMITS))
    assert result.error["code"] == -32600
    assert result.error["data"] == {"field": f"'method' must be a string, got {type_name}"}
    assert result.id == "q"


def test_spec_vector_invalid_request_object() -> None:
    result = rejection(parse('{"jsonrpc": "2.0", "method": 1, "params": "bar"}', LIMITS))
    assert result.error["code"] == -32600
    assert result.id is None


@pytest.mark.parametrize(
    ("params", "json_type"), [("bar", "string"), (3, "number"), (None, "null"), (True, "boolean")]
)
def test_params_must_be_structured(params: Any, json_type: str) -> None:
    result = rejection(parse(frame(method="m", params=params, id=2), LIMITS))
    assert result.error["code"] == -32600
    assert result.error["data"] == {
        "field": f"'params' must be an array or an object, got {json_type}"
    }
    assert result.id == 2


# --------------------------------------------------------------------------------------------
# Size limits on request members


def test_method_name_length_limit() -> None:
    limits = RpcLimits(max_method_name_length=5)
    assert isinstance(parse(frame(method="a" * 5, id=1), limits), Request)
    result = rejection(parse(frame(method="a" * 6, id=1), limits))
    assert result.error == {
        "code": -32001,
        "message": "Request Too Large: method_name_length exceeds limit of 5",
        "data": {"limit_type": "method_name_length", "limit": 5},
    }
    assert result.id == 1
    assert result.answer


def test_positional_params_at_depth_zero_allow_twenty_nested_lists() -> None:
    assert isinstance(parse(frame(method="m", params=nested_lists(20), id=1), LIMITS), Request)
    result = rejection(parse(frame(method="m", params=nested_lists(21), id=1), LIMITS))
    assert result.error["data"] == {"limit_type": "nesting_depth", "limit": 20}
    assert result.id == 1


def test_an_object_level_counts_towards_depth() -> None:
    assert isinstance(
        parse(frame(method="m", params={"x": nested_lists(19)}, id=1), LIMITS), Request
    )
    result = rejection(parse(frame(method="m", params={"x": nested_lists(20)}, id=1), LIMITS))
    assert result.error["data"] == {"limit_type": "nesting_depth", "limit": 20}


def test_innermost_empty_list_sits_at_its_own_depth() -> None:
    assert isinstance(
        parse(frame(method="m", params=nested_lists(20, inner=[]), id=1), LIMITS), Request
    )


@pytest.mark.parametrize(
    ("params", "limit_type"),
    [
        ([1, 2, 3, 4], "array_length"),
        ({"a": [1, 2, 3, 4]}, "array_length"),
        (["abcde"], "string_length"),
        ({"abcde": 1}, "string_length"),
        ({"k": "abcde"}, "string_length"),
        ([[[[[[1]]]]]], "nesting_depth"),
    ],
)
def test_params_limits(params: Any, limit_type: str) -> None:
    limits = RpcLimits(max_array_length=3, max_string_length=4, max_nesting_depth=5)
    result = rejection(parse(frame(method="m", params=params, id="z"), limits))
    assert result.error["code"] == -32001
    assert result.error["data"]["limit_type"] == limit_type
    assert result.id == "z"


def test_params_exactly_at_limits_pass() -> None:
    limits = RpcLimits(max_array_length=3, max_string_length=4, max_nesting_depth=5)
    params = [[1, 2, "abcd"], {"abcd": [[[1]]]}, [[[[1]]]]]
    assert isinstance(parse(frame(method="m", params=params, id=1), limits), Request)


def test_limits_apply_only_to_params() -> None:
    limits = RpcLimits(max_string_length=3, max_array_length=1)
    text = frame(method="m", params=[], id="long id", extra=[1, 2, 3])
    assert isinstance(parse(text, limits), Request)


@pytest.mark.parametrize(
    "members",
    [
        {"method": "a" * 300},
        {"method": "m", "params": ["x" * 10]},
        {"method": "m", "params": nested_lists(21)},
    ],
)
def test_notification_over_a_size_limit_is_not_answered(members: dict[str, Any]) -> None:
    limits = RpcLimits(max_string_length=5)
    result = rejection(parse(frame(**members), limits))
    assert result.error["code"] == -32001
    assert not result.answer
    assert result.id is None


def test_params_violation_reports_the_broken_limit() -> None:
    limits = RpcLimits(max_array_length=2)
    assert params_violation([1, 2], limits) is None
    assert params_violation([1, 2, 3], limits) == ("array_length", 2)
    assert params_violation({}, limits) is None


# --------------------------------------------------------------------------------------------
# The check_params shortcut never lets a violating request through


def _structural_depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_structural_depth(item) for item in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_structural_depth(item) for item in value.values()), default=0)
    return 0


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text('ab[{"\\é', max_size=6))
_json = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.text("abc", max_size=4), children, max_size=4),
    ),
    max_leaves=25,
)
_request = st.fixed_dictionaries(
    {"jsonrpc": st.just("2.0"), "method": st.text("mn", min_size=0, max_size=5)},
    optional={
        "id": st.one_of(st.integers(0, 9), st.text("i", max_size=3), st.none()),
        "params": st.one_of(st.lists(_json, max_size=5), st.dictionaries(st.text("k"), _json)),
    },
)
_small_limits = st.builds(
    RpcLimits,
    max_array_length=st.integers(1, 6),
    max_string_length=st.integers(1, 6),
    max_nesting_depth=st.integers(1, 6),
    max_method_name_length=st.integers(1, 6),
    max_batch_size=st.just(1_000),
)


@settings(
    database=None,
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    document=st.one_of(_request, st.lists(_request, min_size=1, max_size=4)),
    limits=_small_limits,
    ascii_only=st.booleans(),
)
def test_parse_agrees_with_full_validation(
    document: Any, limits: RpcLimits, ascii_only: bool
) -> None:
    text = json.dumps(document, ensure_ascii=ascii_only)
    result = parse(text, limits)
    if _structural_depth(document) > limits.max_nesting_depth + 3:
        assert rejection(result).error["data"]["limit_type"] == "nesting_depth"
        return
    if isinstance(document, list):
        assert result == [validate(item, limits, check_params=True) for item in document]
    else:
        assert result == validate(document, limits, check_params=True)


@pytest.mark.parametrize(
    "params",
    [
        ["abcde"],
        [1, 2, 3, 4],
        nested_lists(6),
        {"abcde": 1},
        [""] * 4,
        ["😀😀😀😀😀"],
        ["\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9"],
    ],
)
def test_shortest_violating_frames_are_caught(params: Any) -> None:
    limits = RpcLimits(max_array_length=3, max_string_length=4, max_nesting_depth=5)
    text = json.dumps({"jsonrpc": "2.0", "method": "m", "params": params}, separators=(",", ":"))
    text = text.replace("\\\\u", "\\u")
    result = rejection(parse(text, limits))
    assert result.error["code"] == -32001


@pytest.mark.parametrize(
    ("params", "limit_type"),
    [
        ([0] * 1001, "array_length"),
        (["x" * 1001], "string_length"),
        ({"k" * 1001: 0}, "string_length"),
        (nested_lists(21, inner=0), "nesting_depth"),
        ({"a": nested_lists(20, inner=0)}, "nesting_depth"),
    ],
)
def test_shortcut_is_tight_for_minimal_frames_with_large_limits(
    params: Any, limit_type: str
) -> None:
    # The frame overhead is small next to these limits, so only the shortcut's own margins
    # decide whether the params walk runs.
    limits = RpcLimits(max_array_length=1000, max_string_length=1000, max_nesting_depth=20)
    text = json.dumps({"method": "m", "params": params, "jsonrpc": "2.0"}, separators=(",", ":"))
    result = rejection(parse(text, limits))
    assert result.error["data"] == {
        "limit_type": limit_type,
        "limit": getattr(limits, f"max_{limit_type}"),
    }
    assert not result.answer


# --------------------------------------------------------------------------------------------
# Responses


@pytest.mark.parametrize(
    ("rpc_id", "expected"),
    [
        (1, "1"),
        (1.5, "1.5"),
        (None, "null"),
        ("a", '"a"'),
        ("\ud800", '"\\ud800"'),
        ("é😀", '"\\u00e9\\ud83d\\ude00"'),
        (2**64, "18446744073709551616"),
    ],
)
def test_encode_id(rpc_id: Any, expected: str) -> None:
    encoded = encode_id(rpc_id)
    assert encoded == expected
    assert encoded.isascii()
    assert json.loads(encoded) == rpc_id


def test_lone_surrogate_id_survives_utf8_transport() -> None:
    encoded = encode_id("a\udcff")
    frame_text = result_frame(encoded, "1")
    assert json.loads(frame_text.encode("utf-8").decode("utf-8"))["id"] == "a\udcff"


def test_encode_error_is_compact_json() -> None:
    error = {"code": -32601, "message": "Method Not Found", "data": {"method": "x"}}
    assert (
        encode_error(error) == '{"code":-32601,"message":"Method Not Found","data":{"method":"x"}}'
    )


@pytest.mark.parametrize(
    "data", [{"obj": object()}, {1, 2}, float("nan"), {"x": float("inf")}, b"bytes"]
)
def test_encode_error_drops_data_that_is_not_json(data: Any) -> None:
    text = encode_error({"code": 4000, "message": "Custom", "data": data})
    assert json.loads(text) == {"code": 4000, "message": "Custom"}


def test_encode_error_drops_circular_data() -> None:
    data: dict[str, Any] = {}
    data["self"] = data
    assert json.loads(encode_error({"code": 1, "message": "m", "data": data})) == {
        "code": 1,
        "message": "m",
    }


def test_encode_error_drops_deeply_nested_data() -> None:
    data: Any = nested_lists(50_000)
    text = encode_error({"code": 4000, "message": "Custom", "data": data})
    assert json.loads(text) == {"code": 4000, "message": "Custom"}


def test_result_and_error_frames_are_valid_json() -> None:
    result = result_frame(encode_id("id\ud800"), json.dumps({"a": [1, "é"]}))
    assert json.loads(result) == {"jsonrpc": "2.0", "id": "id\ud800", "result": {"a": [1, "é"]}}
    error = error_frame(encode_id(None), encode_error({"code": -32700, "message": "Parse Error"}))
    assert json.loads(error) == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32700, "message": "Parse Error"},
    }


def test_rejections_encode_to_a_full_error_frame() -> None:
    result = rejection(parse(frame(method="m", params="bad", id=[1]), LIMITS))
    text = error_frame(encode_id(result.id), encode_error(result.error))
    decoded = json.loads(text)
    assert decoded["id"] is None
    assert decoded["error"]["code"] == -32600


# --------------------------------------------------------------------------------------------
# dumps: orjson where it means what json.dumps means, json.dumps elsewhere


def stdlib(value: Any, default: Any = None) -> str:
    return json.dumps(
        value, default=default, allow_nan=False, ensure_ascii=False, separators=(",", ":")
    )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits too: orjson refuses those
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),  # lone surrogates too: orjson refuses those
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_dumps_means_what_json_dumps_means(value: Any) -> None:
    text = dumps(value)
    assert json.loads(text) == json.loads(
        json.dumps(value, allow_nan=False)
    )  # the same value, whichever encoder wrote it
    utf8_size(text)  # encodable as the socket needs it (a lone surrogate is escaped)


@pytest.mark.parametrize("value", [float("nan"), [1, float("inf")], {"x": -float("inf")}])
def test_dumps_refuses_nan_and_infinities_which_orjson_would_write_as_null(value: Any) -> None:
    with pytest.raises(ValueError, match="JSON compliant"):
        dumps(value)


@pytest.mark.parametrize(
    "value",
    [
        2**64,  # past orjson's integers
        -(2**63) - 1,
        {1: "int key", None: "null key", False: "bool key"},  # keys json.dumps converts
        "lone \ud800 surrogate",
        [None, "null", {"a": None}],  # text holding null: json.dumps writes it
        OrderedDict(b=1, a=2),  # a dict subclass: json.dumps takes it as a dict
        HTTPStatus.OK,  # an int subclass: json.dumps writes int.__repr__
    ],
)
def test_dumps_writes_what_json_dumps_writes_where_orjson_differs(value: Any) -> None:
    expected = stdlib(value) if value != "lone \ud800 surrogate" else json.dumps(value)
    assert dumps(value) == expected


def test_dumps_gives_default_what_json_lacks_and_a_class_keeps_the_standard_library() -> None:
    when = datetime.datetime(2026, 11, 30, 12, 0, 0, 123456)

    def default(value: Any) -> Any:
        if isinstance(value, (datetime.datetime, decimal.Decimal)):
            return f"<{value}>"
        raise TypeError(type(value).__name__)

    value = {"when": when, "price": decimal.Decimal("1.10"), "n": [1]}
    assert dumps(value, default=default) == stdlib(value, default)
    with pytest.raises(TypeError):
        dumps({1, 2}, default=default)

    class Sorted(json.JSONEncoder):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**{**kwargs, "sort_keys": True})

    assert dumps({"b": 1, "a": 2}, Sorted) == '{"a":2,"b":1}'


def test_dumps_with_a_class_keeps_the_class_default_over_a_given_one() -> None:
    class Sets(json.JSONEncoder):
        def default(self, o: Any) -> Any:
            return sorted(o) if isinstance(o, set) else super().default(o)

    assert dumps({3, 1}, Sets, default=lambda o: "not this") == "[1,3]"
