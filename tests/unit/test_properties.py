"""Properties of the wire layer under hypothesis (reliability plan T03 and T04).

T03: ``validate()`` is total over JSON values and accepts every valid request with its id intact;
error frames are always strict JSON with exactly one of ``result``/``error``.
T04: ``parse()`` never raises, whatever text it is given.

The JSON strategies are our own (hypothesis-jsonschema is broken with this hypothesis). Each test
counts the examples it ran and records them in the reliability table before asserting.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels_rpc.exceptions import JsonRpcErrorCode, error_object
from channels_rpc.protocol import (
    MAX_ID_LENGTH,
    Message,
    Rejection,
    Request,
    RpcLimits,
    encode_error,
    encode_id,
    error_frame,
    parse,
    result_frame,
    validate,
)
from tests.integration.reliability.report import Figures

DEFAULT = RpcLimits()
# Small limits, so that generated values reach every size check.
SMALL = RpcLimits(
    max_message_size=2048,
    max_array_length=4,
    max_string_length=16,
    max_nesting_depth=3,
    max_method_name_length=8,
    max_batch_size=3,
)
LIMITS = (DEFAULT, SMALL)
# Per property: 800 in `make reliability` (its T03/T04 rows), 250 in `make test`, where the
# whole file would otherwise take half a minute of a suite that must stay short.
EXAMPLES = 800 if os.environ.get("RELIABILITY_RESULTS") else 250
VALIDATE_CODES = {JsonRpcErrorCode.INVALID_REQUEST, JsonRpcErrorCode.REQUEST_TOO_LARGE}
PARSE_CODES = VALIDATE_CODES | {JsonRpcErrorCode.PARSE_ERROR}


def run(examples: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# ------------------------------------------------------------------------------------------------
# Strategies: JSON values as Python's json module decodes them


# Strings with what JSON must escape, lone surrogates (JSON can carry them as \ud800), BOMs and
# line separators, next to anything else.
characters = st.one_of(
    st.characters(),
    st.characters(categories=["Cs"]),
    st.sampled_from(['"', "\\", "/", "\x00", "\x1f", "\n", "\u2028", "\ufeff", "\U0001f600"]),
)
strings = st.text(characters, max_size=24)
# Integers of every size Python's json can decode (up to 4,300 digits): beyond 2**64 included.
integers = st.one_of(
    st.integers(),
    st.integers(min_value=2**63, max_value=2**200),
    st.integers(min_value=-(2**200), max_value=-(2**63)),
    st.integers(min_value=-(10**4299) + 1, max_value=10**4299 - 1),
)
floats = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.one_of(st.none(), st.booleans(), integers, floats, strings)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(strings, children, max_size=4)
    ),
    max_leaves=8,
)
# What a valid id may be: a string, a number (no bool) or null, at most MAX_ID_LENGTH as text.
valid_ids = st.one_of(
    st.none(),
    st.integers(
        min_value=-(10 ** (MAX_ID_LENGTH - 1)) + 1, max_value=10 ** (MAX_ID_LENGTH - 1) - 1
    ),
    st.integers(min_value=2**64 - 2, max_value=2**64 + 2),
    floats,
    st.text(characters, max_size=MAX_ID_LENGTH),
)
params = st.one_of(
    st.lists(json_values, max_size=4), st.dictionaries(strings, json_values, max_size=4)
)


@st.composite
def valid_requests(draw: st.DrawFn, with_id: bool | None = None) -> dict[str, Any]:
    """A valid request object (or notification), members in any order, maybe extra members."""
    members: dict[str, Any] = {
        "jsonrpc": "2.0",
        "method": draw(st.text(characters, max_size=DEFAULT.max_method_name_length)),
    }
    if draw(st.booleans()):
        members["params"] = draw(params)
    if with_id if with_id is not None else draw(st.booleans()):
        members["id"] = draw(valid_ids)
    for name in draw(st.lists(st.sampled_from(["foo", "extra", "_meta"]), unique=True)):
        members[name] = draw(json_values)
    order = draw(st.permutations(list(members)))
    return {name: members[name] for name in order}


@st.composite
def request_like(draw: st.DrawFn) -> dict[str, Any]:
    """Objects with some of the request members, each valid or not: near misses of a request."""
    near = {
        "jsonrpc": st.one_of(st.sampled_from(["2.0", "1.0", "2", 2.0, 2, None]), json_values),
        "method": st.one_of(strings, st.text(max_size=300), json_values),
        "params": st.one_of(params, json_values),
        "id": st.one_of(valid_ids, st.booleans(), json_values, st.text(min_size=257, max_size=300)),
        "result": json_values,
        "error": json_values,
    }
    chosen = draw(st.lists(st.sampled_from(list(near)), unique=True))
    return {name: draw(near[name]) for name in chosen}


# Text built from JSON-ish tokens: near-JSON, the inputs most likely to upset a decoder.
TOKENS = [
    "[", "]", "{", "}", ",", ":", '"', "\\", "\\u", "\\ud800", "\\udc00", "d800", "0", "1", "-",
    "9" * 30, ".", "e", "E", "+", "1e400", "-1e400", "NaN", "Infinity", "-Infinity", "true",
    "false", "null", "tru", '"jsonrpc"', '"2.0"', '"method"', '"params"', '"id"', '"x"', " ",
    "\n", "\t", "\ufeff", "\x00", "\u2028", "\ud800", "[" * 30, "]" * 30,
]  # fmt: skip
token_text = st.lists(st.sampled_from(TOKENS), max_size=40).map("".join)


@st.composite
def truncated_requests(draw: st.DrawFn) -> str:
    text = json.dumps(draw(valid_requests()), ensure_ascii=draw(st.booleans()))
    return text[: draw(st.integers(min_value=0, max_value=len(text)))]


# ------------------------------------------------------------------------------------------------
# Checks


def strict_loads(text: str) -> Any:
    """json.loads that refuses NaN and Infinity, as a strict JSON client would."""

    def refuse(name: str) -> Any:
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def same(a: Any, b: Any) -> bool:
    """Equal values of the same type; floats compared by repr (so -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return repr(a) == repr(b) or (math.isnan(a) and math.isnan(b))
    return bool(a == b)


def check_error_frame(rejection: Rejection) -> None:
    frame = strict_loads(error_frame(encode_id(rejection.id), encode_error(rejection.error)))
    assert frame["jsonrpc"] == "2.0"
    assert ("result" in frame) != ("error" in frame)
    assert "error" in frame
    assert same(frame["id"], rejection.id)
    assert frame["error"]["code"] == rejection.error["code"]


def check_message(message: Message, codes: set[JsonRpcErrorCode], limits: RpcLimits) -> None:
    items = message if isinstance(message, list) else [message]
    if isinstance(message, list):
        assert 1 <= len(message) <= limits.max_batch_size
    for item in items:
        assert isinstance(item, (Request, Rejection)), item
        if isinstance(item, Rejection):
            assert item.error["code"] in codes, item
            assert item.id is None or isinstance(item.id, (str, int, float))
            assert not isinstance(item.id, bool)
            check_error_frame(item)


def measure(
    figures: Figures, plan_id: str, name: str, check: Callable[[], None], count: list[int]
) -> None:
    """Run a hypothesis check; record what ran before letting a failure through."""
    failure: BaseException | None = None
    try:
        check()
    except BaseException as exc:
        failure = exc
    verdict = "0 failures" if failure is None else f"FAILED: {type(failure).__name__}"
    figures.record(plan_id, f"{name}: {count[0]} examples, {verdict}", failure is None)
    print(f"\n{plan_id} {name}: {count[0]} examples, {verdict}")
    if failure is not None:
        raise failure


# ------------------------------------------------------------------------------------------------
# T03: validate()


def test_t03_validate_is_total_over_json_values(figures: Figures) -> None:
    count = [0]

    @run(EXAMPLES)
    @given(st.one_of(json_values, request_like()))
    def check(value: Any) -> None:
        count[0] += 1
        for limits in LIMITS:
            result = validate(value, limits)
            assert isinstance(result, (Request, Rejection))
            check_message(result, VALIDATE_CODES, limits)
            if isinstance(result, Request):
                assert isinstance(value, dict)
                assert value.get("jsonrpc") == "2.0"
                assert isinstance(result.method, str)
                assert isinstance(result.params, (list, dict))

    measure(figures, "T03", "validate() total over JSON values", check, count)


def test_t03_valid_requests_are_accepted_with_their_id_unchanged(figures: Figures) -> None:
    count = [0]

    @run(EXAMPLES)
    @given(valid_requests(), st.booleans())
    def check(request: dict[str, Any], ascii_only: bool) -> None:
        count[0] += 1
        text = json.dumps(request, ensure_ascii=ascii_only)
        for message in (validate(request, DEFAULT), parse(text, DEFAULT)):
            assert isinstance(message, Request), message
            assert message.method == request["method"]
            assert message.is_notification == ("id" not in request)
            assert message.params == request.get("params", {})
            if "id" in request:
                assert same(message.id, request["id"])
                for frame in (
                    result_frame(encode_id(message.id), "null"),
                    error_frame(encode_id(message.id), encode_error(error_object(-32000))),
                ):
                    assert same(strict_loads(frame)["id"], request["id"])
                    assert frame.isascii()

    measure(figures, "T03", "valid requests accepted, id echoed", check, count)


def test_t03_bool_ids_are_never_accepted(figures: Figures) -> None:
    count = [0]

    @run(EXAMPLES // 3)
    @given(valid_requests(with_id=True), st.booleans())
    def check(request: dict[str, Any], flag: bool) -> None:
        count[0] += 1
        request["id"] = flag
        for message in (validate(request, DEFAULT), parse(json.dumps(request), DEFAULT)):
            assert isinstance(message, Rejection), message
            assert message.error["code"] == JsonRpcErrorCode.INVALID_REQUEST
            assert message.id is None

    measure(figures, "T03", "bool ids refused", check, count)


def _deep(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


# Error data a method or middleware might put in an error: anything, JSON or not.
hostile_data = st.one_of(
    json_values,
    st.just(float("nan")),
    st.just(float("inf")),
    st.just(10**5000),
    st.builds(object),
    st.sets(st.integers(), max_size=3),
    st.just(_deep(3000)),
)


def test_t03_error_frames_are_strict_json_with_exactly_one_of_result_or_error(
    figures: Figures,
) -> None:
    count = [0]

    @run(EXAMPLES // 2)
    @given(
        st.sampled_from([int(code) for code in JsonRpcErrorCode] + [-1, 0, 42]),
        hostile_data,
        st.one_of(valid_ids, st.none()),
    )
    def check(code: int, data: Any, rpc_id: Any) -> None:
        count[0] += 1
        frame = strict_loads(
            error_frame(encode_id(rpc_id), encode_error(error_object(code, data=data)))
        )
        assert set(frame) == {"jsonrpc", "id", "error"}
        assert frame["error"]["code"] == code
        assert isinstance(frame["error"]["message"], str)
        assert same(frame["id"], rpc_id)

    measure(figures, "T03", "error frames strict JSON, one of result/error", check, count)


def test_t03_validate_is_total_for_integer_ids_beyond_the_str_conversion_limit() -> None:
    result = validate({"jsonrpc": "2.0", "method": "x", "id": 10**4300}, DEFAULT)
    assert isinstance(result, Rejection)
    assert result.error["code"] == JsonRpcErrorCode.INVALID_REQUEST


# ------------------------------------------------------------------------------------------------
# T04: parse() on arbitrary text


def test_t04_parse_never_raises_on_arbitrary_text(figures: Figures) -> None:
    count = [0]

    @run(EXAMPLES * 3 // 2)
    @given(st.one_of(st.text(), st.text(characters), token_text, truncated_requests()))
    def check(text: str) -> None:
        count[0] += 1
        for limits in LIMITS:
            message = parse(text, limits)
            check_message(message, PARSE_CODES, limits)
            assert parse(text, limits) == message  # pure: the same text, the same answer

    measure(figures, "T04", "parse() on arbitrary and JSON-ish text", check, count)


def test_t04_parse_never_raises_on_json_documents(figures: Figures) -> None:
    count = [0]

    @run(EXAMPLES * 4 // 5)
    @given(
        st.one_of(
            json_values,
            request_like(),
            valid_requests(),
            st.lists(st.one_of(valid_requests(), request_like(), json_values), max_size=6),
        ),
        st.booleans(),
    )
    def check(document: Any, ascii_only: bool) -> None:
        count[0] += 1
        text = json.dumps(document, ensure_ascii=ascii_only)
        for limits in LIMITS:
            check_message(parse(text, limits), PARSE_CODES, limits)

    measure(figures, "T04", "parse() on JSON documents and batches", check, count)
