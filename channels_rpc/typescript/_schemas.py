"""JSON Schema to TypeScript: the type of a schema's values, and the named types it needs.

:class:`_Types` writes a schema as a type expression: ``$ref`` to a component is that
component's name; a ``$ref`` elsewhere in the document, and an inline object schema with a
``title``, are declared once under a name of their own (in :attr:`_Types.declarations`, in the
order they were found). Whatever TypeScript cannot say, or the schema does not, is ``unknown``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from channels_rpc.typescript._names import _INDENT, _doc_comment, _key, _Names


class TypeScriptError(ValueError):
    """The document cannot be turned into TypeScript (a ``$ref`` that points nowhere, say)."""


_COMPONENT_REF: Final = "#/components/schemas/"
_MAX_DEPTH: Final = 32  # deeper inline schemas are "unknown": a document is not a proof


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
