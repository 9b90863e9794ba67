"""Typed params (channels_rpc.validation): checked and converted by their annotations, results
made JSON by theirs, through MethodSpec.bind as both sides of the hop call it."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import logging
import uuid
from typing import Annotated, Any, Literal, Optional

import pytest
from pydantic import BaseModel, Field, StrictFloat
from typing_extensions import NotRequired, TypedDict

from channels_rpc import JsonRpcError, RpcContext, registry
from channels_rpc._json import dumps
from channels_rpc.registry import MethodSpec
from channels_rpc.validation import or_pydantic


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Point:
    x: float
    y: float


class Options(TypedDict):
    verbose: bool
    tags: NotRequired[list[str]]


class User(BaseModel):
    name: str
    born: datetime.date


class Opaque:
    """Nothing pydantic can describe."""


def spec_of(func: Any) -> MethodSpec:
    return registry.register(type("Holder", (), {}), func, name=None, notification=False)


def refused(spec: MethodSpec, params: Any) -> dict[str, Any]:
    with pytest.raises(JsonRpcError) as caught:
        spec.bind(params)
    error = caught.value.error()
    assert error["code"] == -32602
    data: dict[str, Any] = error["data"]
    return data


# ---------------------------------------------------------------------------------------------
# Conversion: what the method receives


def test_each_kind_of_annotation_arrives_converted() -> None:
    def method(
        point: Point,
        options: Options,
        user: User,
        color: Color,
        when: datetime.datetime,
        day: datetime.date,
        key: uuid.UUID,
        price: decimal.Decimal,
        mode: Literal["fast", "slow"],
        maybe: Optional[int],  # noqa: UP045
        either: int | str,
        points: list[Point],
        by_name: dict[str, Color],
    ) -> None: ...

    key = uuid.uuid4()
    args, kwargs = spec_of(method).bind(
        [
            {"x": 1, "y": "2.5"},
            {"verbose": True},
            {"name": "ada", "born": "1815-12-10"},
            "blue",
            "2026-11-30T12:00:00Z",
            "2026-11-30",
            str(key),
            "1.10",
            "slow",
            None,
            "text",
            [{"x": 0, "y": 0}],
            {"a": "red"},
        ]
    )
    assert kwargs == {}
    assert args == (
        Point(1, 2.5),
        {"verbose": True},
        User(name="ada", born=datetime.date(1815, 12, 10)),
        Color.BLUE,
        datetime.datetime(2026, 11, 30, 12, tzinfo=datetime.timezone.utc),
        datetime.date(2026, 11, 30),
        key,
        decimal.Decimal("1.10"),
        "slow",
        None,
        "text",
        [Point(0, 0)],
        {"a": Color.RED},
    )


def test_params_by_name_and_keyword_only_and_variadic_ones_are_converted() -> None:
    def method(a: int, *rest: float, flag: bool = False, **extra: datetime.date) -> None: ...

    spec = spec_of(method)
    assert spec.bind([1, 2, "3.5"]) == ((1, 2, 3.5), {})
    assert spec.bind({"a": "7", "flag": "yes", "day": "2026-01-02"}) == (
        (7,),
        {"flag": True, "day": datetime.date(2026, 1, 2)},
    )


def test_a_method_whose_only_annotated_param_is_its_var_keyword_one_is_checked() -> None:
    def method(**options: int) -> None: ...

    spec = spec_of(method)
    assert spec.bind({"a": "1"}) == ((), {"a": 1})
    assert refused(spec, {"a": "one"})["errors"][0]["loc"] == ["a"]


def test_an_int_given_for_a_float_stays_an_int_and_the_float_s_checks_still_hold() -> None:
    def method(
        a: float, many: list[float], positive: Annotated[float, Field(gt=0)], strict: StrictFloat
    ) -> None: ...

    spec = spec_of(method)
    args, _ = spec.bind([1, [2, 2.5, "3"], 4, 5])
    assert args == (1, [2, 2.5, 3.0], 4, 5)
    assert [type(value) for value in (args[0], *args[1], args[2], args[3])] == [
        int, int, float, float, int, int
    ]  # fmt: skip
    assert refused(spec, [1, [], 0, 1])["errors"][0]["loc"] == ["positive"]
    assert refused(spec, [1, [], 1, "1"])["errors"][0]["loc"] == ["strict"]


def test_unannotated_params_and_any_stay_unchecked() -> None:
    def method(a, b: Any, c: object) -> None:  # type: ignore[no-untyped-def]
        ...

    spec = spec_of(method)
    value = object()
    assert spec.bind([value, value, value]) == ((value, value, value), {})
    assert spec.types is not None
    assert not spec.types.checks


def test_the_context_is_never_validated() -> None:
    async def method(ctx: RpcContext, n: int) -> int:
        return n

    assert spec_of(method).bind(["3"]) == ((3,), {})


# ---------------------------------------------------------------------------------------------
# Refusal: -32602 naming each param and why


def test_a_wrong_type_is_refused_naming_every_param_and_the_reason() -> None:
    def add(a: float, b: float) -> float:
        return a + b

    data = refused(spec_of(add), ["a", "b"])
    assert data == {
        "error": "a: Input should be a valid number, unable to parse string as a number",
        "param": "a",
        "errors": [
            {
                "loc": ["a"],
                "msg": "Input should be a valid number, unable to parse string as a number",
                "type": "float_parsing",
            },
            {
                "loc": ["b"],
                "msg": "Input should be a valid number, unable to parse string as a number",
                "type": "float_parsing",
            },
        ],
    }


def test_the_location_reaches_into_the_value_and_into_variadic_params() -> None:
    def method(points: list[Point], *rest: int) -> None: ...

    data = refused(spec_of(method), [[{"x": 1, "y": 1}, {"x": "?", "y": 1}], 1, "two"])
    assert [e["loc"] for e in data["errors"]] == [["points", 1, "x"], ["rest", 1]]
    assert data["error"].startswith("points.1.x: ")


def test_the_refusal_does_not_echo_the_client_s_input() -> None:
    def method(n: int) -> None: ...

    secret = "x" * 10_000
    assert secret not in dumps(refused(spec_of(method), [secret]))


def test_a_binding_problem_is_reported_before_types() -> None:
    def add(a: float, b: float) -> float:
        return a + b

    assert refused(spec_of(add), ["a"]) == {"error": "missing a required argument: 'b'"}


# ---------------------------------------------------------------------------------------------
# Registration: what cannot be checked is said once


def test_an_annotation_pydantic_cannot_use_is_left_unchecked_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def method(thing: Opaque, n: int) -> None: ...

    with caplog.at_level(logging.WARNING, logger="channels_rpc"):
        spec = spec_of(method)
    assert "param 'thing' is left unchecked" in caplog.text
    thing = {"not": "an Opaque"}
    assert spec.bind([thing, "1"]) == ((thing, 1), {})


def test_a_name_defined_after_the_method_is_resolved_on_first_use() -> None:
    def method(later: Later) -> None: ...

    spec = spec_of(method)  # `Later` is not defined yet: nothing to check with
    assert spec.bind([{"n": "2"}]) == ((Later(2),), {})


@dataclasses.dataclass
class Later:
    n: int


# ---------------------------------------------------------------------------------------------
# Results: JSON by their annotation


def test_results_become_json_by_their_annotation() -> None:
    def points() -> list[Point]:
        return [Point(1, 2)]

    def user() -> User:
        return User(name="ada", born=datetime.date(1815, 12, 10))

    def tags() -> set[Color]:
        return {Color.RED}

    def plain() -> dict[str, float]:
        return {"a": 1}

    for func, expected in [
        (points, [{"x": 1.0, "y": 2.0}]),
        (user, {"name": "ada", "born": "1815-12-10"}),
        (tags, ["red"]),
    ]:
        types = spec_of(func).types
        assert types is not None
        assert types.dump(func()) == expected
    types = spec_of(plain).types
    result = plain()
    assert types is not None
    assert types.dump(result) is result


def test_unannotated_dataclass_and_model_results_become_json_through_the_default() -> None:
    def default(value: Any) -> Any:
        raise TypeError(value)

    either = or_pydantic(default)
    text = dumps(
        {"p": Point(1, 2), "u": User(name="a", born=datetime.date(2000, 1, 2))}, default=either
    )
    assert text == '{"p":{"x":1,"y":2},"u":{"name":"a","born":"2000-01-02"}}'
    with pytest.raises(ValueError, match="Unable to serialize unknown type"):
        dumps(Opaque(), default=either)


def test_a_refusal_lists_at_most_twenty_errors_and_counts_the_rest() -> None:
    def method(numbers: list[int]) -> None: ...

    data = refused(spec_of(method), [["x"] * 50_000])
    assert len(data["errors"]) == 20
    assert data["errors"][-1]["loc"] == ["numbers", 19]
    assert data["more_errors"] == 49_980
    assert len(dumps(data)) < 4_000


def test_a_name_that_never_resolves_is_said_once_and_left_unchecked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def method(thing: Missing, n: int) -> None:  # type: ignore[name-defined]  # noqa: F821
        ...

    spec = spec_of(method)
    with caplog.at_level(logging.WARNING, logger="channels_rpc"):
        assert spec.bind([{"any": "thing"}, "1"]) == (({"any": "thing"}, "1"), {})
        assert spec.bind([1, 2]) == ((1, 2), {})
    assert caplog.text.count("left unchecked and undescribed: name 'Missing'") == 1
    assert spec.types is not None
    assert not spec.types.checks  # no resolving again on every call
