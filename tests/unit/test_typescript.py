"""channels_rpc.typescript on hand-written OpenRPC documents, and ``manage.py rpcschema``.

The documents are written in the shapes both generators of schemas give: today's inline ones
(channels_rpc.openrpc) and pydantic v2's (``$ref`` to ``components.schemas``, ``anyOf`` with
null, ``prefixItems``, ``allOf`` around one ``$ref``). Assertions are on meaningful fragments;
tests/integration/test_typescript_client.py compiles :data:`EVERY_SHAPE`'s module with tsc.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
from pathlib import Path
from typing import Any, Literal, Optional

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from channels_rpc.management.commands import rpcschema
from channels_rpc.registry import MethodTable
from channels_rpc.typescript import TypeScriptError, generate

POINT = {
    "type": "object",
    "title": "Point",
    "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
    "required": ["x", "y"],
}


def method(
    name: str,
    params: list[dict[str, Any]] | None = None,
    *,
    notification: bool = False,
    **more: Any,
) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "params": params or []}
    if notification:
        entry["x-notification"] = True
    else:
        entry["result"] = {"name": "result", "schema": more.pop("result", {})}
    return {**entry, **more}


def param(
    name: str, schema: Any, required: bool = True, variadic: str | None = None
) -> dict[str, Any]:
    descriptor = {"name": name, "schema": schema, "required": required}
    if variadic:
        descriptor["x-variadic"] = variadic
    return descriptor


#: Every schema shape the generator must handle, in pydantic's spelling and in today's.
EVERY_SHAPE: dict[str, Any] = {
    "openrpc": "1.3.2",
    "info": {"title": "Shapes", "version": "2.0.0"},
    "components": {
        "schemas": {
            "Report": {
                "type": "object",
                "title": "Report",
                "description": "A built report.",
                "properties": {
                    "title": {"type": "string", "title": "Title"},
                    "format": {
                        "enum": ["text", "html"],
                        "type": "string",
                        "default": "text",
                        "title": "Format",
                    },
                    "created": {"type": "string", "format": "date-time"},
                    "owner": {"anyOf": [{"$ref": "#/components/schemas/User"}, {"type": "null"}]},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "scores": {"type": "object", "additionalProperties": {"type": "integer"}},
                    "pair": {
                        "type": "array",
                        "prefixItems": [{"type": "integer"}, {"type": "string"}],
                        "minItems": 2,
                        "maxItems": 2,
                    },
                    "rest": {
                        "type": "array",
                        "prefixItems": [{"type": "integer"}],
                        "items": {"type": "boolean"},
                    },
                    "kind": {"const": "report"},
                    "size": {"type": ["integer", "null"]},
                    "extra": {},
                    "parent": {"allOf": [{"$ref": "#/components/schemas/Report"}]},
                    "mixed": {
                        "type": "array",
                        "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                    },
                    "my-key": {"type": "boolean"},
                    "class": {"type": "boolean", "description": "A reserved word as a key."},
                    "closed": {"type": "object", "additionalProperties": False},
                },
                "required": ["title", "created"],
            },
            "User": {
                "type": "object",
                "properties": {"id": {"type": "integer"}, "name": {"type": "string"}},
                "required": ["id"],
                "additionalProperties": True,
            },
            "Level": {"enum": [1, 2, 3], "type": "integer", "title": "Level"},
            "Model-Input": {"type": "object", "properties": {"a": {"type": "string"}}},
            "default": {"type": "string"},
            "Api": {"type": "boolean"},
            "Old": {"type": "array", "items": [{"type": "integer"}, {"type": "string"}]},
        }
    },
    "methods": [
        method(
            "add",
            [param("a", {"type": "number"}), param("b", {"type": "number"})],
            result={"type": "number"},
            summary="Add two numbers.",
        ),
        method(
            "sub",
            [param("x", {"type": "number"}), param("y", {"type": "number"}, required=False)],
            paramStructure="by-position",
            result={"type": "number"},
        ),
        method(
            "reports.build",
            [
                param("steps", {"type": "integer", "default": 3}, required=False),
                param("format", {"enum": ["text", "html"]}, required=False),
            ],
            result={"$ref": "#/components/schemas/Report"},
            summary="Build a report.",
            description="Streams progress.\nReturns a Report.",
        ),
        method("reports", result={"type": "integer"}, summary="How many reports."),
        method(
            "geometry.distance",
            [param("a", POINT), param("b", POINT)],
            result={"type": "number"},
            paramStructure="by-name",
        ),
        method("geometry.origin", result=POINT),
        method("whoami", result={"type": "object", "additionalProperties": True}),
        method("log", [param("message", {"type": "string"})], notification=True),
        method("ping", notification=True),
        method("delete", [param("id", {"type": "integer"})], result={"type": "boolean"}),
        method("my-method.do it", result={"type": "null"}),
        method("on", result={"type": "string"}),
        method("on_", result={"type": "boolean"}),
        method(
            "rest",
            [
                param("default", {"type": "string"}),
                param("client", {"type": "string"}),
                param("more", {"type": "integer"}, variadic="positional"),
            ],
            paramStructure="by-position",
            result={"type": "array", "items": {"type": "integer"}},
        ),
        method(
            "options",
            [param("name", {"type": "string"}), param("kw", {}, variadic="named")],
            result={"$ref": "#/components/schemas/Level"},
        ),
        method("levels", result={"$ref": "#/components/schemas/Model-Input"}),
        method("rpc.session", result={"type": "object"}),
        method("$/cancelRequest", [param("id", {"type": "integer"})], notification=True),
    ],
    "x-notifications": [
        {
            "name": "topic.message",
            "description": "A message published to a topic.",
            "params": [
                {"name": "topic", "required": True, "schema": {"type": "string"}},
                {"name": "message", "required": True, "schema": {}},
                {"name": "worker_pid", "required": False, "schema": {"type": "integer"}},
            ],
        },
        {"name": "logged", "description": "Sent back to the caller of `log`."},
        {
            "name": "rpc.progress",
            "params": [
                {"name": "id", "required": True, "schema": {"type": ["string", "number", "null"]}},
                {"name": "progress", "required": True, "schema": {"type": "number"}},
            ],
        },
    ],
}


@pytest.fixture(scope="module")
def shapes() -> str:
    return generate(EVERY_SHAPE, source="tests.Shapes")


def block(text: str, start: str) -> str:
    """The lines of ``text`` from the one starting with ``start`` to the first "}"."""
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(start))
    last = next(i for i in range(first, len(lines)) if lines[i] == "}")
    return "\n".join(lines[first : last + 1])


# ----------------------------------------------------------------------------------------------
# Schemas


def test_an_object_component_is_an_interface_with_its_properties(shapes: str) -> None:
    report = block(shapes, "export interface Report ")
    assert "/** A built report. */\nexport interface Report {" in shapes
    assert "  title: string;" in report  # required
    assert '  format?: "text" | "html";' in report  # enum with type, not required
    assert "  /** @format date-time */\n  created: string;" in report
    assert '  /** @default "text" */' in report
    assert "  owner?: User | null;" in report  # Optional[User], pydantic's anyOf with null
    assert "  tags?: string[];" in report
    assert "  scores?: Record<string, number>;" in report
    assert "  pair?: [number, string];" in report  # a closed tuple
    assert "  rest?: [number, ...boolean[]];" in report  # prefixItems then items
    assert '  kind?: "report";' in report
    assert "  size?: number | null;" in report  # "type" as a list
    assert "  extra?: unknown;" in report  # {} is any
    assert "  parent?: Report;" in report  # allOf around one $ref
    assert "  mixed?: Array<string | number>;" in report
    assert '  "my-key"?: boolean;' in report
    assert "  /** A reserved word as a key. */\n  class?: boolean;" in report
    assert "  closed?: Record<string, never>;" in report
    assert "[key: string]" not in report  # no additionalProperties: nothing else


def test_other_components_are_type_aliases_and_names_are_made_valid(shapes: str) -> None:
    user = block(shapes, "export interface User ")
    assert "  id: number;\n  name?: string;\n  [key: string]: unknown;\n}" in user
    assert "export type Level = 1 | 2 | 3;" in shapes
    assert "export interface Model_Input {" in shapes
    assert "export type LevelsResult = Model_Input;" in shapes
    assert "export type default_ = string;" in shapes  # a reserved word
    assert "export type Api2 = boolean;" in shapes  # the module's own name is taken
    assert "export type Old = [number, string, ...unknown[]];" in shapes  # items as a list


def test_an_inline_object_with_a_title_is_declared_once_by_name(shapes: str) -> None:
    assert shapes.count("export interface Point {") == 1
    assert "export type GeometryDistanceParams = {\n  a: Point;\n  b: Point;\n};" in shapes
    assert "origin(options?: CallOptions): Promise<Point>;" in shapes
    # The same title on another shape is another type.
    other = {**POINT, "properties": {"lat": {"type": "number"}}}
    text = generate({"methods": [method("a", result=POINT), method("b", result=other)]})
    assert "export interface Point {" in text
    assert "export interface Point2 {\n  lat?: number;\n}" in text


# ----------------------------------------------------------------------------------------------
# Methods


def test_methods_take_their_params_by_name_and_nest_on_dots(shapes: str) -> None:
    assert "export type AddParams = {\n  a: number;\n  b: number;\n};" in shapes
    assert "export type AddResult = number;" in shapes
    assert (
        "  /** Add two numbers. */\n  add(params: AddParams, options?: CallOptions): "
        "Promise<number>;" in shapes
    )
    assert (
        "add: (params: AddParams, options?: CallOptions) =>\n      client.call<AddResult>("
        '"add", params, options),' in shapes
    )
    # Every param optional: so is the object.
    assert "build(params?: ReportsBuildParams, options?: CallOptions): Promise<Report>;" in shapes
    assert "  /** @default 3 */\n  steps?: number;" in shapes


def test_a_method_that_is_also_a_namespace_is_a_function_with_properties(shapes: str) -> None:
    api = block(shapes, "export interface Api ")
    assert (
        "  reports: {\n    /** How many reports. */\n    (options?: CallOptions): "
        "Promise<number>;\n    /**\n     * Build a report.\n     *\n     * Streams progress." in api
    )
    assert "reports: Object.assign(" in shapes
    assert '.call<ReportsResult>("reports", undefined, options),' in shapes


def test_by_position_params_are_arguments_and_trailing_ones_may_be_left_out(shapes: str) -> None:
    assert "export type SubParams = [x: number, y?: number];" in shapes
    assert "sub(x: number, y?: number, options?: CallOptions): Promise<number>;" in shapes
    assert 'client.call<SubResult>("sub", positional([x, y]), options),' in shapes
    assert "function positional(args: unknown[]): unknown[] {" in shapes


def test_parameter_names_never_hide_the_module_s_own(shapes: str) -> None:
    # A reserved word and the name of the client the body uses; a variadic one takes no options.
    assert (
        "export type RestParams = [default_: string, client2: string, ...more: number[]];" in shapes
    )
    assert (
        "rest(default_: string, client2: string, ...more: number[]): Promise<number[]>;" in shapes
    )
    assert '"rest", positional([default_, client2, ...more]))' in shapes


def test_named_variadic_params_are_an_index_signature(shapes: str) -> None:
    assert "export type OptionsParams = {\n  name: string;\n  [key: string]: unknown;\n};" in shapes
    assert "options(params: OptionsParams, options?: CallOptions): Promise<Level>;" in shapes


def test_odd_method_names_are_quoted_or_renamed(shapes: str) -> None:
    api = block(shapes, "export interface Api ")
    assert "  delete(params: DeleteParams, options?: CallOptions): Promise<boolean>;" in api
    assert '  "my-method": {\n    "do it"(options?: CallOptions): Promise<null>;' in api
    assert "  on_(options?: CallOptions): Promise<string>;" in api  # "on" is the push API
    assert 'on_: (options?: CallOptions) =>\n      client.call<OnResult>("on", undefined' in shapes
    assert "  on__(options?: CallOptions): Promise<boolean>;" in api


def test_client_notifications_resolve_once_sent(shapes: str) -> None:
    assert "  log(params: LogParams): Promise<void>;" in shapes
    assert "  ping(): Promise<void>;" in shapes
    assert 'log: (params: LogParams) =>\n      client.notify("log", params),' in shapes
    assert "LogResult" not in shapes


def test_the_protocol_s_own_methods_get_no_function(shapes: str) -> None:
    assert "rpc.session" not in shapes
    assert "cancelRequest" not in shapes.lower()


# ----------------------------------------------------------------------------------------------
# Pushes


def test_pushes_are_a_typed_map_that_api_on_registers_handlers_for(shapes: str) -> None:
    assert (
        "export type TopicMessageNotification = {\n  topic: string;\n  message: unknown;\n"
        "  worker_pid?: number;\n};"
    ) in shapes
    assert "export type LoggedNotification = unknown;" in shapes  # no params in the document
    assert "export type RpcProgressNotification = {\n  id: string | number | null;" in shapes
    notifications = block(shapes, "export interface ServerNotifications ")
    assert (
        '  /** A message published to a topic. */\n  "topic.message": TopicMessageNotification;'
        in notifications
    )
    assert '  "rpc.progress": RpcProgressNotification;' in notifications
    assert "on<K extends keyof ServerNotifications>(" in shapes
    assert (
        "handler: (params: ServerNotifications[K], message: NotificationMessage) => void" in shapes
    )
    assert "): Unsubscribe => client.on(method, handler)," in shapes


# ----------------------------------------------------------------------------------------------
# The module


def test_the_header_says_what_it_was_generated_from_and_imports_only_types(shapes: str) -> None:
    assert shapes.startswith("// Generated by channels-rpc")
    assert "document of Shapes 2.0.0 (tests.Shapes)." in shapes
    assert (
        "import type { CallOptions, NotificationMessage, RpcClient, Unsubscribe } from "
        '"./client.js";' in shapes
    )
    custom = generate(EVERY_SHAPE, client_import="/static/channels_rpc/client.js")
    assert 'from "/static/channels_rpc/client.js";' in custom


def test_the_output_is_deterministic(shapes: str) -> None:
    assert generate(json.loads(json.dumps(EVERY_SHAPE)), source="tests.Shapes") == shapes


def test_references_by_pointer_and_to_descriptors_are_followed() -> None:
    document = {
        "methods": [
            method(
                "a",
                [{"$ref": "#/components/contentDescriptors/Item"}],
                result={"$ref": "#/$defs/Thing"},
            ),
            method("b", result={"$ref": "#/$defs/Gone"}),
        ],
        "components": {
            "contentDescriptors": {"Item": param("item", {"type": "string"})},
            "schemas": {"Gone": {"type": "integer"}},
        },
        "$defs": {"Thing": {"type": "object", "properties": {"n": {"type": "integer"}}}},
    }
    text = generate(document)
    assert "export type AParams = {\n  item: string;\n};" in text
    assert "export interface Thing {\n  n?: number;\n}" in text
    assert "export type AResult = Thing;" in text
    # pydantic's "#/$defs/Gone", once its definitions moved to the components.
    assert "export type BResult = Gone;" in text


@dataclasses.dataclass
class Owner:
    id: int
    name: str | None = None


@dataclasses.dataclass
class Built:
    """A report, described by pydantic."""

    title: str
    owner: Owner | None
    pair: tuple[int, str]
    format: Literal["text", "html"] = "text"
    when: datetime.datetime | None = None
    scores: dict[str, int] = dataclasses.field(default_factory=dict)


def test_a_document_of_pydantic_s_own_schemas() -> None:
    """What pydantic v2 writes, definitions moved to the components as rpc.discover will."""
    pydantic = pytest.importorskip("pydantic")
    components: dict[str, Any] = {}

    def schema(annotation: Any) -> dict[str, Any]:
        found: dict[str, Any] = pydantic.TypeAdapter(annotation).json_schema(
            ref_template="#/components/schemas/{model}"
        )
        components.update(found.pop("$defs", {}))
        if found.get("type") == "object" and "title" in found:
            components[found["title"]] = found
            return {"$ref": f"#/components/schemas/{found['title']}"}
        return found

    document = {
        "methods": [
            method(
                "build",
                [param("owner", schema(Optional[Owner]), required=False)],  # noqa: UP045
                result=schema(Built),
            )
        ],
        "components": {"schemas": components},
    }
    text = generate(document)
    built = block(text, "export interface Built ")
    assert "/** A report, described by pydantic. */\nexport interface Built {" in text
    assert "  owner: Owner | null;" in built
    assert "  pair: [number, string];" in built
    assert '  /** @default "text" */\n  format?: "text" | "html";' in built
    assert "  when?: string | null;" in built
    assert "  scores?: Record<string, number>;" in built
    assert (
        "export interface Owner {\n  id: number;\n  /** @default null */\n  name?: string | null;"
        in text
    )
    assert "owner?: Owner | null;" in block(text, "export type BuildParams ")
    assert "build(params?: BuildParams, options?: CallOptions): Promise<Built>;" in text


def test_a_reference_to_nothing_is_an_error() -> None:
    with pytest.raises(TypeScriptError, match="'#/components/schemas/Nope' points to nothing"):
        generate({"methods": [method("a", result={"$ref": "#/components/schemas/Nope"})]})


def test_the_header_stays_a_comment() -> None:
    text = generate({"info": {"title": "Two\nlines", "version": "1"}}, source="a\nb")
    assert "// document of Two lines 1 (a b).\n" in text


def test_an_empty_document_still_gives_a_module() -> None:
    text = generate({})
    assert "export interface Api {" in text
    assert "export interface ServerNotifications {\n}" in text
    assert "positional" not in text


# ----------------------------------------------------------------------------------------------
# manage.py rpcschema (in this process: the reference project is installed by tests/settings.py)

REFERENCE = "workers.consumers.RpcConsumer"


def test_the_command_prints_the_document_of_a_consumer() -> None:
    out = io.StringIO()
    call_command("rpcschema", "--consumer", REFERENCE, stdout=out)
    document = json.loads(out.getvalue())
    assert document["info"]["title"] == "channels-rpc reference project"
    assert {"add", "reports.build", "geometry.distance"} <= {m["name"] for m in document["methods"]}


def test_the_command_writes_the_document_and_the_typescript(tmp_path: Path) -> None:
    out = io.StringIO()
    call_command(
        "rpcschema",
        "--consumer",
        REFERENCE,
        "--output",
        str(tmp_path / "openrpc.json"),
        "--typescript",
        str(tmp_path / "api.ts"),
        "--client-import",
        "../static/client.js",
        stdout=out,
    )
    assert out.getvalue() == ""
    assert json.loads((tmp_path / "openrpc.json").read_text())["openrpc"].startswith("1.3")
    source = (tmp_path / "api.ts").read_text()
    assert f"document of channels-rpc reference project 1.0.0 ({REFERENCE})." in source
    assert 'from "../static/client.js";' in source
    assert "build(params?: ReportsBuildParams, options?: CallOptions): Promise<Report>;" in source


def test_the_command_needs_consumer_only_when_several_are_registered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tables = [MethodTable(REFERENCE), MethodTable("app.consumers.Other")]
    for table in tables:
        table.methods["x"] = object()  # type: ignore[assignment]
    monkeypatch.setattr(rpcschema, "live_tables", lambda: tables)
    with pytest.raises(CommandError, match="pick one with --consumer") as raised:
        call_command("rpcschema")
    assert "app.consumers.Other, workers.consumers.RpcConsumer" in str(raised.value)
    out = io.StringIO()
    call_command("rpcschema", "--consumer", REFERENCE, stdout=out)
    assert json.loads(out.getvalue())["info"]["version"] == "1.0.0"


def test_the_command_s_errors_are_clear(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=r"no consumer class 'nope\.Nope'; consumer classes"):
        call_command("rpcschema", "--consumer", "nope.Nope")
    with pytest.raises(CommandError, match="cannot write"):
        call_command(
            "rpcschema", "--consumer", REFERENCE, "--output", str(tmp_path / "no" / "x.json")
        )
    monkeypatch.setattr(rpcschema, "live_tables", list)
    with pytest.raises(CommandError, match="No RPC methods are registered"):
        call_command("rpcschema")
