"""TypeScript from an OpenRPC document: a type per schema, and a typed client over client.js.

:func:`generate` turns the document ``rpc.discover`` answers (or ``manage.py rpcschema``
writes) into one TypeScript module (docs/guides/typescript.md):

- every ``components.schemas`` entry becomes an ``interface`` (an object with properties) or a
  ``type``; an inline object schema with a ``title`` (a dataclass or TypedDict described in
  place) becomes a named interface too, so that ``reports.build`` returns ``Promise<Report>``;
- every method gets ``<Name>Params`` and ``<Name>Result`` types, and a function in the ``Api``
  tree that ``createApi(client)`` builds over a ``RpcClient`` of client.js: names split on "."
  nest (``api.reports.build(...)``). Params go as one object by name (``api.add({a: 1, b: 2})``)
  unless the method's ``paramStructure`` is ``by-position`` (``api.add(1, 2)``): a call by name
  reads the same whatever the order, and survives a parameter added with a default. A method
  without params takes only the call options. The last argument is client.js's call options
  (``signal``, ``timeout``, ``onProgress``);
- client notifications (``"x-notification": true``) return ``Promise<void>``, as
  ``client.notify`` does;
- what the server pushes (``x-notifications``, ``rpc.progress`` among them) is the
  ``ServerNotifications`` map, and ``api.on(method, handler)`` registers a handler typed by it,
  as ``client.on`` does untyped.

Methods named ``rpc.*`` (reserved by JSON-RPC 2.0: sessions, discovery) and ``$/*`` (LSP's) are
client.js's own business and get no function. The output depends only on the document, so the
same document always gives the same text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["TypeScriptError", "generate"]


class TypeScriptError(ValueError):
    """The document cannot be turned into TypeScript (a ``$ref`` that points nowhere, say)."""


_IDENTIFIER: Final = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words that cannot name a type, a parameter or a tuple label (property names may be any word).
_RESERVED: Final = _words(
    "break case catch class const continue debugger default delete do else enum export extends "
    "false finally for function if import in instanceof new null return super switch this "
    "throw true try typeof var void while with as implements interface let package private "
    "protected public static yield await any boolean never number object string symbol bigint "
    "undefined unknown type of keyof infer is asserts readonly declare module namespace"
)
# The names the generated module declares or uses itself: a schema cannot take them.
_OWN_NAMES: Final = _words(
    "Api ServerNotifications createApi positional CallOptions NotificationMessage Unsubscribe "
    "RpcClient Array Promise Record Object Function Date Error JSON"
)
_COMPONENT_REF: Final = "#/components/schemas/"
_MAX_DEPTH: Final = 32  # deeper inline schemas are "unknown": a document is not a proof
_SHORT: Final = 60  # a result type this short is written out in the Api, else its alias
_INDENT: Final = "  "
_ON: Final = "on"  # the Api's push registration; a method named so takes "on_"


def generate(
    document: Mapping[str, Any], *, client_import: str = "./client.js", source: str = ""
) -> str:
    """The TypeScript module for ``document``, importing client.js's types from
    ``client_import``; ``source`` says in the header where the document came from."""
    if not isinstance(document.get("methods", []), list):
        raise TypeScriptError("the document's 'methods' is not a list")
    return _Module(document, client_import, source).render()


# ----------------------------------------------------------------------------------------------
# Names


def _sanitized(name: str, fallback: str = "T") -> str:
    """A TypeScript identifier for ``name``: other characters become "_", a reserved word
    takes a trailing "_"."""
    text = re.sub(r"[^A-Za-z0-9_$]", "_", name) or fallback
    if text[0].isdigit():
        text = f"_{text}"
    return f"{text}_" if text in _RESERVED else text


def _pascal(name: str) -> str:
    """``reports.build`` -> ``ReportsBuild``: a type name made from a method's name."""
    parts = [part for part in re.split(r"[^A-Za-z0-9]+", name) if part]
    return _sanitized("".join(part[0].upper() + part[1:] for part in parts) or "Method")


def _key(name: str) -> str:
    """A property key: bare when it is an identifier (reserved words are fine there), else
    quoted."""
    return name if _IDENTIFIER.fullmatch(name) else json.dumps(name)


class _Names:
    """Hands out type names, each once: a name taken gets a number."""

    def __init__(self, taken: Iterable[str] = _OWN_NAMES) -> None:
        self._taken: set[str] = set(taken)

    def claim(self, wanted: str) -> str:
        base = _sanitized(wanted)
        name, number = base, 2
        while name in self._taken:
            name, number = f"{base}{number}", number + 1
        self._taken.add(name)
        return name


def _doc_comment(lines: Iterable[str], indent: str) -> list[str]:
    # "*/" would end the comment early.
    text = [line.rstrip().replace("*/", "*\\/") for line in lines]
    while text and not text[-1]:
        text.pop()
    while text and not text[0]:
        text.pop(0)
    if not text:
        return []
    if len(text) == 1:
        return [f"{indent}/** {text[0]} */"]
    return [f"{indent}/**", *(f"{indent} * {line}".rstrip() for line in text), f"{indent} */"]


def _schema_notes(schema: Any, *, title: bool = True) -> list[str]:
    """What a schema says that its type does not: description, format, default."""
    if not isinstance(schema, Mapping):
        return []
    notes: list[str] = []
    if title and isinstance(schema.get("title"), str):
        notes.append(schema["title"])
    if isinstance(schema.get("description"), str):
        notes.extend(schema["description"].splitlines())
    if isinstance(schema.get("format"), str):
        notes.append(f"@format {schema['format']}")
    if "default" in schema:
        notes.append(f"@default {json.dumps(schema['default'], sort_keys=True)}")
    if schema.get("deprecated") is True:
        notes.append("@deprecated")
    return notes


def _literal(value: Any) -> str:
    if value is None or isinstance(value, (bool, int, float, str)):
        return json.dumps(value)
    return "unknown"  # an object or array constant: TypeScript has no literal for it


def _union(parts: Iterable[str]) -> str:
    unique = list(dict.fromkeys(parts))
    if "unknown" in unique or not unique:
        return "unknown"
    if len(unique) > 1:
        unique = [part for part in unique if part != "never"] or ["never"]
    return " | ".join(unique)


def _element(text: str) -> str:
    """``text`` as an array's element type: ``T[]`` for a plain name, else ``Array<T>``."""
    simple = re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_$]*(\[\])*", text)
    return f"{text}[]" if simple else f"Array<{text}>"


# ----------------------------------------------------------------------------------------------
# Schemas


@dataclass
class _Declaration:
    name: str
    schema: Any


@dataclass
class _Types:
    """JSON Schema to TypeScript types, with the named types the schemas refer to."""

    document: Mapping[str, Any]
    names: _Names
    components: dict[str, str] = field(default_factory=dict)  # schema name -> type name
    declarations: list[_Declaration] = field(default_factory=list)  # named, in order
    _by_shape: dict[str, str] = field(default_factory=dict)  # canonical JSON -> type name
    _by_pointer: dict[str, str] = field(default_factory=dict)

    def declare_components(self) -> None:
        schemas = (self.document.get("components") or {}).get("schemas") or {}
        if not isinstance(schemas, Mapping):
            raise TypeScriptError("the document's components.schemas is not an object")
        for key, schema in schemas.items():
            name = self.names.claim(key)
            self.components[key] = name
            self._by_shape.setdefault(_canonical(schema), name)
            self.declarations.append(_Declaration(name, schema))

    def render(self, schema: Any, indent: str = "", depth: int = 0) -> str:
        """The TypeScript type of values of ``schema``."""
        if depth > _MAX_DEPTH or schema is True or not isinstance(schema, Mapping):
            return "never" if schema is False else "unknown"
        if "$ref" in schema:
            return self._reference(str(schema["$ref"]))
        if "const" in schema:
            return _literal(schema["const"])
        if isinstance(schema.get("enum"), list):
            return _union(_literal(value) for value in schema["enum"])
        for combinator in ("anyOf", "oneOf"):
            if isinstance(schema.get(combinator), list):
                return _union(self.render(s, indent, depth + 1) for s in schema[combinator])
        if isinstance(schema.get("allOf"), list) and schema["allOf"]:
            parts = [self._operand(s, indent, depth + 1) for s in schema["allOf"]]
            return " & ".join(dict.fromkeys(parts))
        kinds = schema.get("type", _implied_type(schema))
        if isinstance(kinds, list):
            return _union(self._typed(schema, str(kind), indent, depth) for kind in kinds)
        return self._typed(schema, str(kinds), indent, depth) if kinds else "unknown"

    def _operand(self, schema: Any, indent: str, depth: int) -> str:
        text = self.render(schema, indent, depth)
        return f"({text})" if " | " in text and not text.startswith("{") else text

    def _typed(self, schema: Mapping[str, Any], kind: str, indent: str, depth: int) -> str:
        if kind == "string":
            return "string"
        if kind in ("integer", "number"):
            return "number"
        if kind in ("boolean", "null"):
            return kind
        if kind == "array":
            return self._array(schema, indent, depth)
        if kind == "object":
            if depth > 0 and isinstance(schema.get("title"), str) and "properties" in schema:
                return self._named_inline(schema)
            return self.object_type(schema, indent, depth)
        return "unknown"

    def _named_inline(self, schema: Mapping[str, Any]) -> str:
        """An object described in place with a title (a dataclass, a TypedDict): declared once
        under its title, or under the component it equals."""
        shape = _canonical(schema)
        if shape not in self._by_shape:
            name = self.names.claim(str(schema["title"]))
            self._by_shape[shape] = name
            self.declarations.append(_Declaration(name, schema))
        return self._by_shape[shape]

    def _array(self, schema: Mapping[str, Any], indent: str, depth: int) -> str:
        items = schema.get("items")
        prefix = schema.get("prefixItems", items if isinstance(items, list) else None)
        if isinstance(prefix, list):
            return self._tuple(schema, prefix, indent, depth)
        return _element(self.render(items if items is not None else {}, indent, depth + 1))

    def _tuple(self, schema: Mapping[str, Any], prefix: list[Any], indent: str, depth: int) -> str:
        required = schema.get("minItems", len(prefix))
        elements = [
            self.render(item, indent, depth + 1) + ("" if i < required else "?")
            for i, item in enumerate(prefix)
        ]
        rest = schema.get("items") if "prefixItems" in schema else schema.get("additionalItems")
        closed = rest is False or schema.get("maxItems") == len(prefix)
        if not closed:
            elements.append(f"...{_element(self.render(rest or {}, indent, depth + 1))}")
        return f"[{', '.join(elements)}]"

    def object_type(self, schema: Mapping[str, Any], indent: str = "", depth: int = 0) -> str:
        """An object type literal: its properties, one a line, then an index signature for the
        properties it does not list, if it allows them."""
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties", not properties)
        if not properties:
            if extra is False:
                return "Record<string, never>"
            return f"Record<string, {self.render(extra, indent, depth + 1)}>"
        inner = indent + _INDENT
        required = set(schema.get("required", ()))
        lines = ["{"]
        for name, sub in properties.items():
            lines += _doc_comment(_schema_notes(sub, title=False), inner)
            mark = "" if name in required else "?"
            lines.append(f"{inner}{_key(name)}{mark}: {self.render(sub, inner, depth + 1)};")
        if extra is not False:
            # unknown, not the extra schema's type: a listed property's type must fit in it.
            lines.append(f"{inner}[key: string]: unknown;")
        lines.append(f"{indent}}}")
        return "\n".join(lines)

    def _reference(self, pointer: str) -> str:
        """The type a ``$ref`` names: a component's, or one declared for the pointer."""
        if pointer.startswith(_COMPONENT_REF):
            key = _unescape(pointer[len(_COMPONENT_REF) :])
            if key in self.components:
                return self.components[key]
        if pointer in self._by_pointer:
            return self._by_pointer[pointer]
        target = _resolve(self.document, pointer)
        if target is not None:
            name = self.names.claim(_unescape(pointer.rsplit("/", 1)[-1]))
            self._by_pointer[pointer] = name
            self.declarations.append(_Declaration(name, target))
            return name
        # pydantic's own "#/$defs/Name", when the definitions were moved to the components.
        last = _unescape(pointer.rsplit("/", 1)[-1])
        if pointer.startswith("#/") and last in self.components:
            return self.components[last]
        raise TypeScriptError(f"$ref {pointer!r} points to nothing in the document")

    def declaration(self, declared: _Declaration) -> list[str]:
        """``export interface`` for an object with properties, else ``export type``."""
        schema = declared.schema
        lines = _doc_comment(_schema_notes(schema, title=False), "")
        is_object = (
            isinstance(schema, Mapping)
            and schema.get("type", _implied_type(schema)) == "object"
            and bool(schema.get("properties"))
        )
        if is_object:
            return [*lines, f"export interface {declared.name} {self.object_type(schema)}"]
        return [*lines, f"export type {declared.name} = {self.render(schema)};"]


def _implied_type(schema: Mapping[str, Any]) -> str | None:
    """The type a schema without "type" describes by its keywords, if any."""
    if "properties" in schema or "additionalProperties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return None


def _canonical(schema: Any) -> str:
    return json.dumps(schema, sort_keys=True, default=str)


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _resolve(document: Mapping[str, Any], pointer: str) -> Any:
    """What a local JSON pointer (``#/a/b``) designates in ``document``, or None."""
    if not pointer.startswith("#/"):
        return None
    target: Any = document
    for token in pointer[2:].split("/"):
        if not isinstance(target, Mapping) or _unescape(token) not in target:
            return None
        target = target[_unescape(token)]
    return target


# ----------------------------------------------------------------------------------------------
# Methods and pushes


@dataclass
class _Param:
    name: str  # on the wire
    label: str  # as a TypeScript parameter
    type: str
    required: bool
    variadic: str | None  # "positional", "named" or None
    notes: list[str]


@dataclass
class _Method:
    name: str
    path: list[str]  # the keys in the Api tree
    positional: bool
    params: list[_Param]
    params_type: str
    result: str | None  # None: a client notification
    result_type: str | None
    notes: list[str]


def _descriptors(document: Mapping[str, Any], entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """An entry's params, each a content descriptor (``$ref``s to descriptors followed)."""
    found = []
    for descriptor in entry.get("params") or []:
        if isinstance(descriptor, Mapping) and "$ref" in descriptor:
            descriptor = _resolve(document, str(descriptor["$ref"]))
            if not isinstance(descriptor, Mapping):
                raise TypeScriptError(f"{entry.get('name')!r}: a param's $ref points to nothing")
        if isinstance(descriptor, Mapping) and isinstance(descriptor.get("name"), str):
            found.append(dict(descriptor))
    return found


def _entry_notes(entry: Mapping[str, Any]) -> list[str]:
    """A method's or a notification's doc comment: summary, a blank line, description."""
    notes = str(entry.get("summary") or "").splitlines()
    if entry.get("description"):
        notes += ["", *str(entry["description"]).splitlines()]
    if entry.get("deprecated") is True:
        notes.append("@deprecated")
    return notes


def _api_path(name: str) -> list[str]:
    """Where a method sits in the Api tree: its name split on ".", or the whole name when a
    part would be empty ("a..b")."""
    parts = name.split(".")
    path = parts if all(parts) else [name]
    if re.fullmatch(f"{_ON}_*", path[0]):  # "on" is the push API: "on" -> "on_" -> "on__"
        path = [f"{path[0]}_", *path[1:]]
    return path


def _one_line(text: str) -> str:
    """``text`` fit for a // comment: a line break would end it."""
    return " ".join(text.split())


def _is_internal(name: str) -> bool:
    return name.startswith(("rpc.", "$/"))


class _Module:
    """One generated module: collects the declarations, then writes them out in order."""

    def __init__(self, document: Mapping[str, Any], client_import: str, source: str) -> None:
        self.document = document
        self.client_import = client_import
        self.source = source
        self.names = _Names()
        self.types = _Types(document, self.names)
        self.types.declare_components()
        self.methods: list[_Method] = []
        self.method_types: list[list[str]] = []
        self.pushes: list[tuple[str, str, list[str]]] = []  # wire name, type, notes
        self.push_types: list[list[str]] = []

    def render(self) -> str:
        for entry in self.document.get("methods", []):
            name = entry.get("name") if isinstance(entry, Mapping) else None
            if isinstance(name, str) and not _is_internal(name):
                self._add_method(entry)
        for entry in self.document.get("x-notifications", []):
            if isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
                self._add_push(entry)
        # Declarations found while rendering the methods' types are written with the others.
        schemas: list[list[str]] = []
        done = 0
        while done < len(self.types.declarations):
            schemas.append(self.types.declaration(self.types.declarations[done]))
            done += 1
        sections = [
            self._header(),
            *schemas,
            *self.method_types,
            *self.push_types,
            self._notifications_map(),
            self._api_interface(),
            *self._helpers(),
            self._create_api(),
        ]
        return "\n\n".join("\n".join(section) for section in sections if section) + "\n"

    # -- collecting ---------------------------------------------------------------------------

    def _add_method(self, entry: Mapping[str, Any]) -> None:
        name = str(entry["name"])
        base = _pascal(name)
        positional = entry.get("paramStructure") == "by-position"
        params = self._params(_descriptors(self.document, entry), positional)
        params_type = self.names.claim(f"{base}Params")
        lines = _doc_comment([f"The params of {name}."], "")
        lines.append(f"export type {params_type} = {self._params_shape(params, positional)};")
        result = result_type = None
        if not entry.get("x-notification"):
            result_type = self.names.claim(f"{base}Result")
            result = self.types.render(_result_schema(self.document, entry), "", 1)
            lines += _doc_comment([f"The result of {name}."], "")
            lines.append(f"export type {result_type} = {result};")
        self.method_types.append(lines)
        notes = _entry_notes(entry)
        path = _api_path(name)
        method = _Method(name, path, positional, params, params_type, result, result_type, notes)
        self.methods.append(method)

    def _params(self, descriptors: list[dict[str, Any]], positional: bool) -> list[_Param]:
        params = []
        # Labels name the function's parameters: none may hide what its body uses.
        labels = _Names(taken=("client", "options", "params", "positional"))
        for descriptor in descriptors:
            schema = descriptor.get("schema", {})
            variadic = descriptor.get("x-variadic")
            if variadic == "positional" and not positional:
                continue  # nothing can be passed to it by name
            notes = [
                *(str(descriptor[k]) for k in ("summary", "description") if descriptor.get(k)),
                *_schema_notes(schema, title=False),
            ]
            params.append(
                _Param(
                    name=descriptor["name"],
                    label=labels.claim(descriptor["name"]),
                    type=self.types.render(schema, _INDENT, 1),
                    required=bool(descriptor.get("required", False)),
                    variadic=variadic if isinstance(variadic, str) else None,
                    notes=notes,
                )
            )
        if positional:
            # An optional param before a required one must still be passed: undefined, then.
            last = max((i for i, p in enumerate(params) if p.required), default=-1)
            for param in params[:last]:
                if not param.required:
                    param.required, param.type = True, f"{param.type} | undefined"
        return params

    def _params_shape(self, params: list[_Param], positional: bool) -> str:
        if positional:
            return "[" + ", ".join(_tuple_element(p) for p in params) + "]"
        if not params:
            return "Record<string, never>"
        lines = ["{"]
        for param in params:
            lines += _doc_comment(param.notes, _INDENT)
            if param.variadic == "named":
                lines.append(f"{_INDENT}[key: string]: {param.type};")
            else:
                mark = "" if param.required else "?"
                lines.append(f"{_INDENT}{_key(param.name)}{mark}: {param.type};")
        lines.append("}")
        return "\n".join(lines)

    def _add_push(self, entry: Mapping[str, Any]) -> None:
        name = str(entry["name"])
        type_name = self.names.claim(f"{_pascal(name)}Notification")
        descriptors = _descriptors(self.document, entry)
        if "params" not in entry:
            shape = "unknown"  # the document does not say
        else:
            positional = entry.get("paramStructure") == "by-position"
            shape = self._params_shape(self._params(descriptors, positional), positional)
        notes = _entry_notes(entry)
        lines = _doc_comment(notes or [f"The params of the {name} notification."], "")
        lines.append(f"export type {type_name} = {shape};")
        self.push_types.append(lines)
        self.pushes.append((name, type_name, notes))

    # -- writing ------------------------------------------------------------------------------

    def _header(self) -> list[str]:
        info = self.document.get("info", {})
        title = _one_line(f"{info.get('title', 'an OpenRPC API')} {info.get('version', '')}")
        origin = f" ({_one_line(self.source)})" if self.source else ""
        needed = sorted(self._imports())
        return [
            "// Generated by channels-rpc (manage.py rpcschema --typescript) from the OpenRPC",
            f"// document of {title}{origin}.",
            "// Do not edit: regenerate it. How to use it: docs/guides/typescript.md.",
            "",
            "/* eslint-disable */",
            f"import type {{ {', '.join(needed)} }} from {json.dumps(self.client_import)};",
        ]

    def _imports(self) -> set[str]:
        needed = {"RpcClient", "NotificationMessage", "Unsubscribe"}
        if any(m.result is not None and not _variadic(m) for m in self.methods):
            needed.add("CallOptions")
        return needed

    def _notifications_map(self) -> list[str]:
        lines = [
            *_doc_comment(["What the server pushes: method -> params (api.on)."], ""),
            "export interface ServerNotifications {",
        ]
        for name, type_name, notes in self.pushes:
            lines += _doc_comment(notes, _INDENT)
            lines.append(f"{_INDENT}{_key(name)}: {type_name};")
        return [*lines, "}"]

    def _api_interface(self) -> list[str]:
        tree = _tree(self.methods)
        lines = [
            *_doc_comment(["The API's methods, typed: what createApi(client) returns."], ""),
            "export interface Api {",
        ]
        lines += self._members(tree, _INDENT)
        lines += _doc_comment(
            [
                'Call handler(params, message) for each notification method pushed ("*": all);',
                "returns the function that stops it.",
            ],
            _INDENT,
        )
        lines += [
            f"{_INDENT}on<K extends keyof ServerNotifications>(",
            f"{_INDENT * 2}method: K,",
            f"{_INDENT * 2}handler: (params: ServerNotifications[K], "
            "message: NotificationMessage) => void,",
            f"{_INDENT}): Unsubscribe;",
            f'{_INDENT}on(method: "*", handler: (params: unknown, message: NotificationMessage)'
            " => void): Unsubscribe;",
            "}",
        ]
        return lines

    def _members(self, tree: _Node, indent: str) -> list[str]:
        lines: list[str] = []
        for key, child in tree.children.items():
            if child.method is not None and not child.children:
                lines += _doc_comment(child.method.notes, indent)
                lines.append(f"{indent}{_key(key)}{self._signature(child.method)};")
                continue
            lines.append(f"{indent}{_key(key)}: {{")
            if child.method is not None:  # both a method and the namespace of others
                lines += _doc_comment(child.method.notes, indent + _INDENT)
                lines.append(f"{indent}{_INDENT}{self._signature(child.method)};")
            lines += self._members(child, indent + _INDENT)
            lines.append(f"{indent}}};")
        return lines

    def _signature(self, method: _Method) -> str:
        returns = "Promise<void>"
        if method.result is not None and method.result_type is not None:
            short = "\n" not in method.result and len(method.result) <= _SHORT
            returns = f"Promise<{method.result if short else method.result_type}>"
        return f"({', '.join(self._arguments(method))}): {returns}"

    def _arguments(self, method: _Method) -> list[str]:
        """The TypeScript parameters of a method's function."""
        if method.positional:
            arguments = [
                _positional_argument(p, method.params_type, i) for i, p in enumerate(method.params)
            ]
        elif method.params:
            optional = "" if any(p.required for p in method.params) else "?"
            arguments = [f"params{optional}: {method.params_type}"]
        else:
            arguments = []
        if method.result is not None and not _variadic(method):
            arguments.append("options?: CallOptions")
        return arguments

    def _helpers(self) -> list[list[str]]:
        if not any(m.positional for m in self.methods):
            return []
        return [
            [
                *_doc_comment(
                    ["Positional params without the trailing ones left out (not sent as null)."],
                    "",
                ),
                "function positional(args: unknown[]): unknown[] {",
                f"{_INDENT}let end = args.length;",
                f"{_INDENT}while (end > 0 && args[end - 1] === undefined) end -= 1;",
                f"{_INDENT}return args.slice(0, end);",
                "}",
            ]
        ]

    def _create_api(self) -> list[str]:
        lines = [
            *_doc_comment(["The typed API over a client.js RpcClient (connected or not)."], ""),
            "export function createApi(client: RpcClient): Api {",
            f"{_INDENT}return {{",
        ]
        lines += self._implementations(_tree(self.methods), _INDENT * 2)
        lines += [
            # `never`: each overload's handler, whatever its params, fits in.
            f"{_INDENT * 2}on: (",
            f"{_INDENT * 3}method: string,",
            f"{_INDENT * 3}handler: (params: never, message: NotificationMessage) => void,",
            f"{_INDENT * 2}): Unsubscribe => client.on(method, handler),",
            f"{_INDENT}}};",
            "}",
        ]
        return lines

    def _implementations(self, tree: _Node, indent: str) -> list[str]:
        lines: list[str] = []
        for key, child in tree.children.items():
            if child.method is not None and not child.children:
                head, body = self._function(child.method)
                lines += [f"{indent}{_key(key)}: {head}", f"{indent}{_INDENT}{body},"]
                continue
            if child.method is None:
                lines.append(f"{indent}{_key(key)}: {{")
                lines += self._implementations(child, indent + _INDENT)
                lines.append(f"{indent}}},")
            else:  # a function that carries the namespace's functions as properties
                head, body = self._function(child.method)
                lines += [
                    f"{indent}{_key(key)}: Object.assign(",
                    f"{indent}{_INDENT}{head}",
                    f"{indent}{_INDENT * 2}{body},",
                    f"{indent}{_INDENT}{{",
                ]
                lines += self._implementations(child, indent + _INDENT * 2)
                lines.append(f"{indent}{_INDENT}}},")
                lines.append(f"{indent}),")
        return lines

    def _function(self, method: _Method) -> tuple[str, str]:
        """An arrow function that sends ``method`` through the client: its head and body."""
        arguments = self._arguments(method)
        wire = json.dumps(method.name)
        if method.positional:
            labels = [p.label for p in method.params]
            rest = labels.pop() if method.params and method.params[-1].variadic else None
            items = ", ".join([*labels, *([f"...{rest}"] if rest else [])])
            params = f"positional([{items}])"
        else:
            params = "params" if method.params else "undefined"
        if method.result_type is None:
            body = f"client.notify({wire}, {params})"
        else:
            options = ", options" if not _variadic(method) else ""
            body = f"client.call<{method.result_type}>({wire}, {params}{options})"
        return f"({', '.join(arguments)}) =>", body


def _result_schema(document: Mapping[str, Any], entry: Mapping[str, Any]) -> Any:
    result = entry.get("result")
    if isinstance(result, Mapping) and "$ref" in result and "schema" not in result:
        result = _resolve(document, str(result["$ref"]))  # a content descriptor's $ref
    return result.get("schema", {}) if isinstance(result, Mapping) else {}


def _variadic(method: _Method) -> bool:
    """True when a positional method's last param takes any number of arguments: nothing can
    follow it, so it takes no call options."""
    return method.positional and bool(method.params) and method.params[-1].variadic is not None


def _tuple_element(param: _Param) -> str:
    if param.variadic:
        return f"...{param.label}: {_element(param.type)}"
    return f"{param.label}{'' if param.required else '?'}: {param.type}"


def _positional_argument(param: _Param, params_type: str, index: int) -> str:
    """A function parameter: its type written out if short, else taken from the tuple."""
    if param.variadic:
        return f"...{param.label}: {_element(param.type)}"
    short = "\n" not in param.type and len(param.type) <= _SHORT
    kind = param.type if short else f"{params_type}[{index}]"
    return f"{param.label}{'' if param.required else '?'}: {kind}"


@dataclass
class _Node:
    method: _Method | None = None
    children: dict[str, _Node] = field(default_factory=dict)


def _tree(methods: Sequence[_Method]) -> _Node:
    root = _Node()
    for method in methods:
        node = root
        for part in method.path:
            node = node.children.setdefault(part, _Node())
        node.method = method
    return root
