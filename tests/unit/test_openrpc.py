"""OpenRPC: JSON Schemas from annotations, and the document generated from method specs."""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import decimal
import enum
import inspect
import json
import typing
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Optional, Union

import pytest
from typing_extensions import TypedDict  # pydantic's, on every Python this package supports

from channels_rpc import RpcContext, registry
from channels_rpc.openrpc import OPENRPC_VERSION, document, schema_for
from channels_rpc.registry import MethodSpec
from tests.openrpc.validation import errors

if TYPE_CHECKING:
    # Known to type checkers only: at run time these annotations cannot be resolved.
    from decimal import Decimal as Money


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Point(TypedDict):
    x: int
    y: int


class Options(TypedDict, total=False):
    verbose: bool
    tags: list[str]


@dataclasses.dataclass
class Box:
    width: float
    height: float = 1.0
    labels: list[str] = dataclasses.field(default_factory=list)
    color: Color = Color.RED


@dataclasses.dataclass
class Node:
    """A self-referencing type: its schema must still be finite."""

    value: int
    next: Node | None = None


@dataclasses.dataclass
class Priced:
    amount: Money


class Opaque:
    """A class that is neither a dataclass nor a TypedDict."""


# ---------------------------------------------------------------------------------------------
# schema_for: pydantic's JSON Schema of an annotation (what validation enforces)


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        (bool, {"type": "boolean"}),
        (int, {"type": "integer"}),
        (float, {"type": "number"}),
        (str, {"type": "string"}),
        (type(None), {"type": "null"}),
        (datetime.datetime, {"type": "string", "format": "date-time"}),
        (datetime.date, {"type": "string", "format": "date"}),
        (datetime.time, {"type": "string", "format": "time"}),
        (uuid.UUID, {"type": "string", "format": "uuid"}),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_scalars_and_formats(annotation: Any, expected: dict[str, Any]) -> None:
    assert schema_for(annotation) == expected


def test_a_decimal_is_sent_as_a_number_or_a_string() -> None:
    schema = schema_for(decimal.Decimal)
    assert {"type": "number"} in schema["anyOf"]
    assert any(option.get("type") == "string" for option in schema["anyOf"])


def test_a_schema_is_a_fresh_dict_each_time() -> None:
    first = schema_for(int)
    first["minimum"] = 0
    assert schema_for(int) == {"type": "integer"}


@pytest.mark.parametrize("annotation", [Any, object, inspect.Parameter.empty, Opaque], ids=repr)
def test_what_says_nothing_useful_is_any(annotation: Any) -> None:
    assert schema_for(annotation) == {}


def test_literal_lists_its_values() -> None:
    assert schema_for(Literal["a", "b"]) == {"enum": ["a", "b"], "type": "string"}


def test_enum_lists_its_member_values() -> None:
    assert schema_for(Color)["enum"] == ["red", "blue"]
    assert schema_for(Level)["enum"] == [1, 2]
    assert schema_for(list[Color])["$defs"]["Color"]["enum"] == ["red", "blue"]


def test_union_is_any_of_its_members() -> None:
    assert schema_for(Union[int, str]) == {"anyOf": [{"type": "integer"}, {"type": "string"}]}  # noqa: UP007


@pytest.mark.parametrize(
    "annotation",
    [Optional[int], int | None, Union[int, None]],  # noqa: UP007, UP045
    ids=["typing.Optional", "pipe", "typing.Union"],
)
def test_optional_is_any_of_the_type_and_null(annotation: Any) -> None:
    assert schema_for(annotation) == {"anyOf": [{"type": "integer"}, {"type": "null"}]}


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        (list[str], {"type": "array", "items": {"type": "string"}}),
        (typing.List[int], {"type": "array", "items": {"type": "integer"}}),  # noqa: UP006
        (tuple[int, ...], {"type": "array", "items": {"type": "integer"}}),
        (set[int], {"type": "array", "items": {"type": "integer"}, "uniqueItems": True}),
        (collections.abc.Sequence[int], {"type": "array", "items": {"type": "integer"}}),
        (dict[str, int], {"type": "object", "additionalProperties": {"type": "integer"}}),
        (Mapping[str, float], {"type": "object", "additionalProperties": {"type": "number"}}),
    ],
    ids=lambda value: None if isinstance(value, dict) else repr(value),
)
def test_containers(annotation: Any, expected: dict[str, Any]) -> None:
    assert schema_for(annotation) == expected


def test_a_tuple_lists_its_items_in_order() -> None:
    schema = schema_for(tuple[int, str])
    assert schema["prefixItems"] == [{"type": "integer"}, {"type": "string"}]
    assert schema["minItems"] == schema["maxItems"] == 2


def test_typed_dict_is_an_object_with_required_keys() -> None:
    definition = schema_for(Point)
    assert definition["type"] == "object"
    assert definition["required"] == ["x", "y"]
    assert definition["properties"]["x"]["type"] == "integer"
    assert "required" not in schema_for(Options)


def test_dataclass_requires_the_fields_without_defaults() -> None:
    definition = schema_for(Box)
    assert definition["required"] == ["width"]
    assert definition["properties"]["color"]["$ref"].endswith("/Color")


def test_a_self_referencing_dataclass_refers_to_itself() -> None:
    schema = schema_for(Node)
    json.dumps(schema)  # finite, and plain JSON
    nxt = schema["$defs"]["Node"]["properties"]["next"]
    assert {"$ref": "#/$defs/Node"} in nxt["anyOf"]


def test_a_dataclass_with_an_unresolvable_annotation_describes_nothing() -> None:
    assert schema_for(Priced) == {}


# ---------------------------------------------------------------------------------------------
# document()


def specs(
    *funcs: Callable[..., Any], notification: bool = False, **options: Any
) -> list[MethodSpec]:
    """Register ``funcs`` on a fresh class and return their specs, in order."""
    holder = type("Holder", (), {})
    return [
        registry.register(holder, func, name=None, notification=notification, **options)
        for func in funcs
    ]


def build(*method_specs: MethodSpec, **notifications: str | Mapping[str, Any]) -> dict[str, Any]:
    return document(
        method_specs, info={"title": "T", "version": "0.1.0"}, server_notifications=notifications
    )


def only_method(doc: dict[str, Any]) -> dict[str, Any]:
    [method] = doc["methods"]
    assert isinstance(method, dict)
    return method


async def scale(ctx: RpcContext, factor: int, labels: list[str], note: str | None = None) -> float:
    """Scale every label.

    The factor applies to each one.
    """
    return 0.0


def variadic(*args: int, **kwargs: str) -> None:
    pass


def positional_only(a: int, b: int = 0, /) -> int:
    return a + b


def star_args(*values: float) -> float:
    return sum(values)


def keyword_only(*, name: str, loud: bool = False) -> str:
    return name


def star_kwargs(**fields: int) -> int:
    return len(fields)


def normal(a: int, b: int = 2) -> int:
    return a + b


def undocumented(value):  # type: ignore[no-untyped-def]
    return value


def unresolvable(price: Money) -> Money:
    return price


def test_the_document_has_the_openrpc_version_info_errors_and_cancellation() -> None:
    doc = build(*specs(normal))
    assert doc["openrpc"] == OPENRPC_VERSION
    assert doc["info"] == {"title": "T", "version": "0.1.0"}
    errors_by_name = doc["components"]["errors"]
    assert errors_by_name["REQUEST_CANCELLED"] == {"code": -32800, "message": "Request Cancelled"}
    # Any answer may be too large for the transport (issue 10): documented for every method.
    assert errors_by_name["RESPONSE_TOO_LARGE"] == {"code": -32014, "message": "Response Too Large"}
    assert errors_by_name["INVALID_PARAMS"]["code"] == -32602
    assert doc["x-cancellation"] == {
        "notifications": ["rpc.cancel", "$/cancelRequest"],
        "params": ["id"],
    }
    assert errors(doc) == []


def test_a_method_is_described_from_its_signature_and_docstring() -> None:
    method = only_method(build(*specs(scale, timeout=12)))
    assert method["name"] == "scale"
    assert method["summary"] == "Scale every label."
    assert method["description"] == "The factor applies to each one."
    assert method["params"] == [  # the context parameter is not a param
        {"name": "factor", "schema": {"type": "integer"}, "required": True},
        {
            "name": "labels",
            "schema": {"type": "array", "items": {"type": "string"}},
            "required": True,
        },
        {
            "name": "note",
            "schema": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "required": False,
        },
    ]
    assert method["result"] == {"name": "result", "schema": {"type": "number"}}
    assert {"$ref": "#/components/errors/REQUEST_CANCELLED"} in method["errors"]
    assert "paramStructure" not in method  # "either", the default
    assert (method["x-timeout"], method["x-sync"]) == (12.0, False)


def test_an_undocumented_unannotated_method_describes_anything() -> None:
    method = only_method(build(*specs(undocumented)))
    assert "summary" not in method
    assert "description" not in method
    assert method["params"] == [{"name": "value", "schema": {}, "required": True}]
    assert method["result"] == {"name": "result", "schema": {}}
    assert (method["x-timeout"], method["x-sync"]) == (None, True)


def test_each_method_names_its_queue() -> None:
    [default] = specs(undocumented)
    [routed] = specs(scale, queue="rpc.reports")
    doc = document(
        [routed, default],
        info={"title": "T", "version": "0.1.0"},
        server_notifications={},
        default_queue="rpc.main",
    )
    assert [method["x-queue"] for method in doc["methods"]] == ["rpc.reports", "rpc.main"]


def test_annotations_that_do_not_resolve_describe_nothing() -> None:
    doc = build(*specs(unresolvable))
    method = only_method(doc)
    assert method["params"] == [{"name": "price", "schema": {}, "required": True}]
    assert method["result"]["schema"] == {}
    assert errors(doc) == []


def test_a_notification_has_no_result_and_is_marked() -> None:
    method = only_method(build(*specs(normal, notification=True)))
    assert method["x-notification"] is True
    assert "result" not in method
    assert "errors" not in method


def test_variadic_parameters_are_marked_and_never_required() -> None:
    method = only_method(build(*specs(variadic)))
    assert method["params"] == [
        {"name": "args", "schema": {"type": "integer"}, "x-variadic": "positional"},
        {"name": "kwargs", "schema": {"type": "string"}, "x-variadic": "named"},
    ]
    assert "paramStructure" not in method


@pytest.mark.parametrize(
    ("func", "structure"),
    [
        (positional_only, "by-position"),
        (star_args, "by-position"),
        (keyword_only, "by-name"),
        (star_kwargs, "by-name"),
        (normal, None),
    ],
    ids=lambda value: getattr(value, "__name__", value),
)
def test_param_structure_follows_the_parameter_kinds(
    func: Callable[..., Any], structure: str | None
) -> None:
    method = only_method(build(*specs(func)))
    assert method.get("paramStructure") == structure


def test_keyword_only_and_positional_only_params_keep_their_required_flags() -> None:
    keyword = only_method(build(*specs(keyword_only)))
    assert [(p["name"], p["required"]) for p in keyword["params"]] == [
        ("name", True),
        ("loud", False),
    ]
    positional = only_method(build(*specs(positional_only)))
    assert [(p["name"], p["required"]) for p in positional["params"]] == [
        ("a", True),
        ("b", False),
    ]


def mixed_keyword(a: int, *, b: int) -> int:
    return a + b


def mixed_positional(a: int, /, b: int = 0) -> int:
    return a + b


@pytest.mark.parametrize(
    ("func", "structure"),
    [(mixed_keyword, "by-name"), (mixed_positional, "by-position")],
    ids=["required-keyword-only", "required-positional-only"],
)
def test_a_required_parameter_of_one_kind_fixes_the_param_structure(
    func: Callable[..., Any], structure: str
) -> None:
    method = only_method(build(*specs(func)))
    assert method.get("paramStructure") == structure


def test_server_notifications_are_listed_under_x_notifications() -> None:
    described = {
        "description": "A tick.",
        "params": [{"name": "n", "required": True, "schema": {"type": "integer"}}],
    }
    doc = build(*specs(normal), news="A news item.", tick=described)
    assert doc["x-notifications"] == [
        {"name": "news", "description": "A news item."},
        {"name": "tick", **described},
    ]
    assert errors(doc) == []


def test_a_document_of_every_kind_of_method_is_valid_openrpc() -> None:
    method_specs = [
        *specs(scale, variadic, positional_only, keyword_only, undocumented),
        *specs(normal, notification=True),
    ]
    doc = build(*method_specs)
    assert [m["name"] for m in doc["methods"]] == [
        "scale",
        "variadic",
        "positional_only",
        "keyword_only",
        "undocumented",
        "normal",
    ]
    assert errors(doc) == []
    assert json.loads(json.dumps(doc)) == doc


@dataclasses.dataclass
class Shape:
    sides: int
    label: str = "shape"


def test_a_result_s_fields_with_defaults_are_required_a_param_s_are_not() -> None:
    def grow(shape: Shape) -> Shape:
        return shape

    doc = build(*specs(grow))
    assert errors(doc) == []
    method = doc["methods"][0]
    schemas = doc["components"]["schemas"]
    taken = schemas[method["params"][0]["schema"]["$ref"].rsplit("/", 1)[1]]
    given = schemas[method["result"]["schema"]["$ref"].rsplit("/", 1)[1]]
    assert taken["required"] == ["sides"]  # a client may leave the label out
    assert given["required"] == ["sides", "label"]  # and always receives it
