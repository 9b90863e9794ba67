"""Annotated params checked and converted, results made JSON: one pydantic TypeAdapter each.

The annotations a method already carries say what its params must be; pydantic v2 reads them
the way FastAPI and django-ninja do (lax mode: ``"1.5"`` is a float, ``"a"`` is not) and
converts JSON's forms into the declared types (dataclasses, TypedDicts, models, enums,
``datetime``, ``UUID``, ``Decimal``...). The same adapters give the JSON Schemas
``rpc.discover`` publishes, so what is published is what is enforced.

Two deliberate departures from plain pydantic:

* an ``int`` given for a ``float`` stays an ``int`` (PEP 484's numeric tower: ``add(1, 2)``
  answers ``3``, as it did before the params were typed); inside dataclasses and models the
  field's own type rules;
* an annotation pydantic cannot describe (a Django model, any class without a schema) leaves
  its param unchecked, as every param was before, with a warning at registration.

Adapters are built at registration. An annotation naming something not defined yet (a class
further down the module, under ``from __future__ import annotations``) is built on first use.
"""

from __future__ import annotations

import inspect
import logging
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Final

from pydantic import PydanticSchemaGenerationError, PydanticUserError, TypeAdapter, ValidationError
from pydantic.functional_validators import WrapValidator
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import to_jsonable_python

from channels_rpc.exceptions import JsonRpcError, JsonRpcErrorCode

__all__ = [
    "Adapted",
    "MethodTypes",
    "json_schemas",
    "method_types",
    "or_pydantic",
    "schema_for",
]

logger = logging.getLogger("channels_rpc")

_UNCHECKED: Final = (inspect.Parameter.empty, Any, object)
# Results of these types (and containers of them only) are JSON as they are: no adapter runs.
#: The errors a -32602 answer lists (a list of 50,000 wrong items would make a 5 MB answer);
#: ``more_errors`` counts the rest.
MAX_ERRORS: Final = 20
_PLAIN_RESULTS: Final = (None, type(None), bool, int, float, str, list, dict, tuple)


def _keep_int(value: Any, handler: Callable[[Any], Any]) -> Any:
    converted = handler(value)  # the float's checks (bounds, strictness) hold for ints too
    return value if type(value) is int else converted


_FLOAT: Final = Annotated[float, WrapValidator(_keep_int)]
_EXACT: Final[dict[Any, tuple[type, ...]]] = {
    float: (int, float),
    int: (int,),
    str: (str,),
    bool: (bool,),
}


@dataclass(frozen=True, slots=True)
class Adapted:
    """One annotated param (or the result): its adapter, or None when left unchecked."""

    name: str
    annotation: Any
    adapter: TypeAdapter[Any] | None
    #: Types a value of which is already what the annotation asks for (``int`` for ``float``):
    #: such a value skips the adapter, the common case of scalar params.
    exact: tuple[type, ...] = ()


class MethodTypes:
    """What a method's annotations check and convert; built once, at registration."""

    def __init__(self, method: str, func: Callable[..., Any], signature: inspect.Signature) -> None:
        self._method, self._func, self._signature = method, func, signature
        self._resolved = False
        self._deferred = False  # the annotations named something not defined yet, once
        # Until the annotations resolve (_resolve), every param is unchecked.
        self.params = {
            name: Adapted(name, p.annotation, None) for name, p in signature.parameters.items()
        }
        self.result = Adapted("result", inspect.Parameter.empty, None)
        self._plain_result = True
        self._by_index: list[tuple[int, Adapted]] = []
        self._by_name: dict[str, Adapted] = {}
        self._star: tuple[int, Adapted] | None = None
        self._star_star: Adapted | None = None
        self._any_checked = False  # some param has an adapter (set once resolved)
        self._resolve()

    @property
    def checks(self) -> bool:
        """Whether a call's params may need checking (False: none is annotated)."""
        return not self._resolved or self._any_checked

    def _resolve(self) -> None:
        """Build the adapters, once the annotations resolve."""
        if self._resolved:
            return
        try:
            hints = typing.get_type_hints(inspect.unwrap(self._func), include_extras=True)
        except NameError as exc:
            if not self._deferred:  # a name defined further down the module: on first use
                self._deferred = True
                return
            # Still unknown once the module is imported: a TYPE_CHECKING import, or a typo.
            logger.warning(
                "RPC method %r: its params are left unchecked and undescribed: %s",
                self._method,
                exc,
            )
            hints = {}
        except Exception:  # an annotation that fails to evaluate: the params stay unchecked
            hints = {}
        self._resolved = True
        for index, parameter in enumerate(self._signature.parameters.values()):
            annotation = hints.get(parameter.name, inspect.Parameter.empty)
            adapter = self._adapter(parameter.name, annotation)
            adapted = Adapted(parameter.name, annotation, adapter, _EXACT.get(annotation, ()))
            self.params[parameter.name] = adapted
            if adapted.adapter is not None:
                self._place(index, parameter.kind, adapted)
                self._any_checked = True
        returns = hints.get("return", inspect.Parameter.empty)
        self.result = Adapted("result", returns, self._adapter("return", returns))
        self._plain_result = _plain(returns)

    def _place(self, index: int, kind: inspect._ParameterKind, adapted: Adapted) -> None:
        if kind is inspect.Parameter.VAR_POSITIONAL:
            self._star = (index, adapted)
        elif kind is inspect.Parameter.VAR_KEYWORD:
            self._star_star = adapted
        else:
            if kind is not inspect.Parameter.KEYWORD_ONLY:
                self._by_index.append((index, adapted))
            if kind is not inspect.Parameter.POSITIONAL_ONLY:
                self._by_name[adapted.name] = adapted

    def _adapter(self, name: str, annotation: Any) -> TypeAdapter[Any] | None:
        if annotation in _UNCHECKED:
            return None
        try:
            adapter: TypeAdapter[Any] = TypeAdapter(_ints_for_floats(annotation))
            adapter.json_schema()  # a type it could not complete (a name that never resolves)
        except (PydanticSchemaGenerationError, PydanticUserError, TypeError) as exc:
            where = "its result" if name == "return" else f"param {name!r}"
            logger.warning(
                "RPC method %r: %s is left unchecked and undescribed: pydantic cannot use "
                "its annotation %r (%s)",
                self._method,
                where,
                annotation,
                str(exc).splitlines()[0],
            )
            return None
        return adapter

    def described(self) -> tuple[dict[str, Adapted], Adapted]:
        """The params by name and the result, as far as their annotations resolve by now."""
        self._resolve()
        return self.params, self.result

    def convert(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The bound params validated and converted, or -32602 naming each one that is not."""
        self._resolve()
        errors = _Errors()
        converted = list(args)
        for index, adapted in self._by_index:
            if index < len(converted):
                converted[index] = _check(adapted, converted[index], (adapted.name,), errors)
        if self._star is not None:
            start, star = self._star
            for index in range(start, len(converted)):
                loc = (star.name, index - start)
                converted[index] = _check(star, converted[index], loc, errors)
        for key, value in kwargs.items():
            named = self._by_name.get(key, self._star_star)
            if named is not None:
                kwargs[key] = _check(named, value, (key,), errors)
        if errors.count:
            raise errors.refusal()
        return tuple(converted), kwargs

    def dump(self, result: Any) -> Any:
        """``result`` as JSON's types, by the declared return type (as it is when plain)."""
        self._resolve()
        adapter = self.result.adapter
        if adapter is None or self._plain_result:
            return result
        return adapter.dump_python(result, mode="json", warnings=False)


def method_types(
    method: str, func: Callable[..., Any], signature: inspect.Signature
) -> MethodTypes:
    """The checks and conversions of ``func``'s annotations (``signature`` without the context)."""
    return MethodTypes(method, func, signature)


def or_pydantic(default: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """An encoder's ``default`` that leaves to pydantic what ``default`` has no JSON form for.

    So a dataclass or a pydantic model returned without a return annotation saying so still
    becomes JSON (pydantic raises a ``ValueError`` for what it cannot write either).
    """

    def either(value: Any) -> Any:
        try:
            return default(value)
        except TypeError:
            return to_jsonable_python(value)

    return either


def schema_for(annotation: Any) -> dict[str, Any]:
    """The JSON Schema of values of ``annotation`` on their own ({} when it says nothing)."""
    if annotation in _UNCHECKED:
        return {}
    try:
        return TypeAdapter(_ints_for_floats(annotation)).json_schema()
    except (PydanticSchemaGenerationError, PydanticUserError, TypeError):
        return {}


def json_schemas(
    entries: Iterable[tuple[Any, str, Adapted]],
) -> tuple[dict[Any, dict[str, Any]], dict[str, Any]]:
    """JSON Schemas for ``(key, mode, adapted)`` entries, sharing one set of definitions.

    ``mode`` is ``"validation"`` for params (what a client may send) and ``"serialization"``
    for results (what it receives). Returns the schema by key ({} for an unchecked one) and the
    definitions they refer to as ``#/components/schemas/NAME``.
    """
    entries = list(entries)
    schemas, definitions = TypeAdapter.json_schemas(
        [(key, mode, a.adapter) for key, mode, a in entries if a.adapter is not None],  # type: ignore[misc]
        ref_template="#/components/schemas/{model}",
        schema_generator=_Published,
    )
    by_key: dict[Any, dict[str, Any]] = {key: {} for key, _, _ in entries}
    by_key.update({key: schema for (key, _), schema in schemas.items()})
    return by_key, definitions.get("$defs", {})


class _Published(GenerateJsonSchema):
    """A result's fields with defaults are required: a client always receives them.

    (pydantic's own JSON Schema of what it serializes leaves them optional, unless every
    model says ``json_schema_serialization_defaults_required``; a typed client would then have
    to check for a field that is always there.)
    """

    def field_is_required(self, field: Any, total: bool) -> bool:
        if self.mode == "serialization" and field["type"] != "typed-dict-field":
            return field.get("serialization_exclude_if") is None
        return super().field_is_required(field, total)


def _check(adapted: Adapted, value: Any, loc: tuple[Any, ...], errors: _Errors) -> Any:
    if type(value) in adapted.exact:
        return value
    assert adapted.adapter is not None
    try:
        return adapted.adapter.validate_python(value)
    except ValidationError as exc:
        errors.add(exc, loc)
        return value


class _Errors:
    """The errors of one call's params: the first :data:`MAX_ERRORS`, and how many in all."""

    __slots__ = ("count", "kept")

    def __init__(self) -> None:
        self.kept: list[dict[str, Any]] = []
        self.count = 0

    def add(self, exc: ValidationError, loc: tuple[Any, ...]) -> None:
        self.count += exc.error_count()
        room = MAX_ERRORS - len(self.kept)
        if room <= 0:  # (errors() turns every error into a dict: 25 ms for 18,000)
            return
        found = exc.errors(include_url=False, include_context=False, include_input=False)
        for error in found[:room]:
            where = [*loc, *error["loc"]]
            self.kept.append({"loc": where, "msg": error["msg"], "type": error["type"]})

    def refusal(self) -> JsonRpcError:
        first = self.kept[0]
        where = ".".join(str(part) for part in first["loc"])
        data: dict[str, Any] = {
            "error": f"{where}: {first['msg']}",
            "param": first["loc"][0],
            "errors": self.kept,
        }
        if self.count > len(self.kept):
            data["more_errors"] = self.count - len(self.kept)
        return JsonRpcError(None, JsonRpcErrorCode.INVALID_PARAMS, data)


def _ints_for_floats(annotation: Any) -> Any:
    """``annotation`` with each ``float`` it is built of taking an ``int`` as it is."""
    if annotation is float:
        return _FLOAT
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is None or not args or origin is typing.Literal:
        return annotation
    if origin is Annotated:
        parts = (_ints_for_floats(args[0]), *annotation.__metadata__)
        return typing.cast(Any, Annotated)[parts]
    rewritten = tuple(_ints_for_floats(arg) for arg in args)
    if rewritten == args:
        return annotation
    if origin in (typing.Union, types.UnionType):
        return typing.Union[rewritten]  # noqa: UP007 (built from a tuple)
    try:
        return annotation.copy_with(rewritten)
    except AttributeError:  # list[float], dict[str, float]: builtin generics
        return types.GenericAlias(origin, rewritten)


def _plain(annotation: Any) -> bool:
    """Whether results of this type are already JSON's types (no conversion to run)."""
    if annotation in _UNCHECKED or annotation in _PLAIN_RESULTS:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, dict, tuple):
        return all(arg is Ellipsis or _plain(arg) for arg in typing.get_args(annotation))
    return False
