"""``dumps`` keeps orjson's text of values holding ``None`` and still refuses NaN.

The rest of ``dumps``'s contract (where orjson and ``json.dumps`` differ) is pinned in
``test_protocol.py``.
"""

from __future__ import annotations

import decimal
import enum
import json
import math
from types import SimpleNamespace
from typing import Any, NoReturn

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels_rpc import _json
from channels_rpc._json import dumps


@pytest.fixture
def no_stdlib_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the standard library's encoder fail inside ``_json``, so a fallback shows."""

    def refuse(*args: Any, **kwargs: Any) -> NoReturn:
        raise AssertionError("encoded a second time with json.dumps")

    monkeypatch.setattr(_json, "json", SimpleNamespace(dumps=refuse))


@pytest.mark.parametrize(
    "value",
    [
        None,
        {"id": 7, "email": None, "score": 1.5, "tags": ["a", None], "ok": True},
        [None, "null", {"nested": (None, 2.5, -0.0)}],
    ],
)
@pytest.mark.usefixtures("no_stdlib_fallback")
def test_a_value_holding_none_is_encoded_once(value: Any) -> None:
    assert dumps(value) == orjson.dumps(value).decode()


@pytest.mark.parametrize(
    "value",
    [
        {"a": None, "b": float("nan")},
        [None, [{"x": float("inf")}]],
        (None, -float("inf")),
    ],
)
def test_nan_beside_none_is_still_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="JSON compliant"):
        dumps(value)


def test_a_nan_from_default_beside_none_is_still_refused() -> None:
    with pytest.raises(ValueError, match="JSON compliant"):
        dumps({"a": None, "d": decimal.Decimal(1)}, default=lambda o: float("nan"))


def test_an_enum_whose_value_is_nan_goes_to_the_standard_library_as_before() -> None:
    weird = enum.Enum("weird", {"NAN": float("nan")})
    with pytest.raises(TypeError):  # json.dumps has no form for an Enum member
        dumps({"a": None, "e": weird.NAN})


values_with_non_finite_floats = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=5)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(values_with_non_finite_floats)
def test_dumps_refuses_exactly_what_json_dumps_refuses(value: Any) -> None:
    try:
        expected = json.loads(json.dumps(value, allow_nan=False))
    except ValueError:
        with pytest.raises(ValueError, match="JSON compliant"):
            dumps(value)
    else:
        assert _same(json.loads(dumps(value)), expected)


def _same(a: Any, b: Any) -> bool:
    """Equality where -0.0 and 0.0 differ, as the texts do."""
    if isinstance(a, float) and isinstance(b, float):
        return math.copysign(1.0, a) == math.copysign(1.0, b) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b
