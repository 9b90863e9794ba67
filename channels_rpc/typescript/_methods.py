"""Methods and pushes: what a document's entries become, before any of it is written out.

:class:`_Entries` reads ``methods`` (but ``rpc.*`` and ``$/*``, client.js's own) and
``x-notifications``: for each method a :class:`_Method` (its place in the Api tree, its params
as TypeScript parameters, its result) and its ``<Name>Params`` / ``<Name>Result`` declarations;
for each push its ``<Name>Notification`` type. Types are claimed in document order, so the same
document always gets the same names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from channels_rpc.typescript._names import _INDENT, _doc_comment, _key, _Names, _pascal
from channels_rpc.typescript._schemas import (
    TypeScriptError,
    _element,
    _resolve,
    _schema_notes,
    _Types,
)

_ON: Final = "on"  # the Api's push registration; a method named so takes "on_"


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


def _is_internal(name: str) -> bool:
    return name.startswith(("rpc.", "$/"))


class _Entries:
    """A document's methods and pushes, with the declarations of their types, in order."""

    def __init__(self, document: Mapping[str, Any], names: _Names, types: _Types) -> None:
        self.document = document
        self.names = names
        self.types = types
        self.methods: list[_Method] = []
        self.method_types: list[list[str]] = []
        self.pushes: list[tuple[str, str, list[str]]] = []  # wire name, type, notes
        self.push_types: list[list[str]] = []

    def collect(self) -> None:
        for entry in self.document.get("methods", []):
            name = entry.get("name") if isinstance(entry, Mapping) else None
            if isinstance(name, str) and not _is_internal(name):
                self._add_method(entry)
        for entry in self.document.get("x-notifications", []):
            if isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
                self._add_push(entry)

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
