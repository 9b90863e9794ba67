from __future__ import annotations

import gc
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels_rpc.context import RpcContext
from channels_rpc.decorators import permission_required
from channels_rpc.exceptions import JsonRpcError, JsonRpcErrorCode
from channels_rpc.registry import (
    MethodSpec,
    RegistrationError,
    consumer_key,
    known_queues,
    register,
    resolve_consumer,
    table_of,
)


class PlainConsumer:
    """Module level and never registered on: found by importing its dotted path."""

    class Inner:
        pass


def not_a_class() -> None:
    pass


def fresh_class(name: str = "Consumer") -> type:
    return type(name, (), {})


def reg(func: Callable[..., Any], name: str | None = None, **options: Any) -> MethodSpec:
    return register(fresh_class(), func, name=name, notification=False, **options)


def ping() -> str:
    return "pong"


# --------------------------------------------------------------------------------------------
# Names


def test_register_uses_the_function_name_or_the_given_one() -> None:
    cls = fresh_class()
    spec = register(cls, ping, name=None, notification=False)
    assert spec.name == "ping"
    named = register(cls, ping, name="mymodule.rpc.ping", notification=False)
    assert named.name == "mymodule.rpc.ping"
    table = table_of(cls)
    assert table is not None
    assert table.lookup("ping", notification=False) is spec
    assert table.lookup("mymodule.rpc.ping", notification=False) is named
    assert table.lookup("ping", notification=True) is None


def test_duplicate_names_in_one_namespace_are_refused() -> None:
    cls = fresh_class()
    register(cls, ping, name="ping", notification=False)
    with pytest.raises(RegistrationError, match=r"method named 'ping' is already registered"):
        register(cls, ping, name="ping", notification=False)
    register(cls, ping, name="ping", notification=True)
    with pytest.raises(RegistrationError, match=r"notification named 'ping' is already registered"):
        register(cls, ping, name="ping", notification=True)
    table = table_of(cls)
    assert table is not None
    assert [spec.is_notification for spec in table.specs()] == [False, True]


def test_same_name_on_two_classes_is_fine() -> None:
    first, second = fresh_class(), fresh_class()
    register(first, ping, name="ping", notification=False)
    register(second, ping, name="ping", notification=False)
    assert table_of(first) is not table_of(second)


@pytest.mark.parametrize("name", ["rpc.discover", "rpc.", "rpc.x.y"])
def test_reserved_names_are_refused(name: str) -> None:
    with pytest.raises(RegistrationError, match=r"reserved by JSON-RPC 2\.0"):
        reg(ping, name=name)


def test_names_that_only_resemble_the_reserved_prefix_are_fine() -> None:
    assert reg(ping, name="rpcx").name == "rpcx"
    assert reg(ping, name="RPC.x").name == "RPC.x"
    assert reg(ping, name="my.rpc.x").name == "my.rpc.x"


def test_empty_names_are_refused() -> None:
    with pytest.raises(RegistrationError, match="non-empty strings"):
        reg(ping, name="")
    nameless = type("Nameless", (), {"__call__": lambda self: None})()
    with pytest.raises(RegistrationError, match="non-empty strings"):
        reg(nameless)


def test_non_callables_are_refused() -> None:
    with pytest.raises(RegistrationError, match="must be callable"):
        reg(42, name="x")  # type: ignore[arg-type]


def test_registration_errors_are_value_errors() -> None:
    assert issubclass(RegistrationError, ValueError)


def _sync_gen() -> Iterator[int]:
    yield 1


async def _async_gen() -> AsyncIterator[int]:
    yield 1


@pytest.mark.parametrize("func", [_sync_gen, _async_gen])
def test_generator_functions_are_refused(func: Callable[..., Any]) -> None:
    with pytest.raises(RegistrationError, match="is a generator function"):
        reg(func)


# --------------------------------------------------------------------------------------------
# Options


@pytest.mark.parametrize(
    ("timeout", "match"),
    [
        (True, "must be a number of seconds"),
        (False, "must be a number of seconds"),
        ("5", "must be a number of seconds"),
        (-1, "finite number >= 0"),
        (-0.001, "finite number >= 0"),
        (float("nan"), "finite number >= 0"),
        (float("inf"), "finite number >= 0"),
        (float("-inf"), "finite number >= 0"),
    ],
)
def test_bad_timeouts_are_refused(timeout: Any, match: str) -> None:
    with pytest.raises(RegistrationError, match=match):
        reg(ping, timeout=timeout)


@pytest.mark.parametrize(("timeout", "stored"), [(None, None), (0, 0.0), (2, 2.0), (0.5, 0.5)])
def test_good_timeouts_are_stored_as_floats(timeout: Any, stored: float | None) -> None:
    spec = reg(ping, timeout=timeout)
    assert spec.timeout == stored
    assert stored is None or type(spec.timeout) is float


@pytest.mark.parametrize(
    "queue", ["a!b", "", "q" * 100, "has space", " q", "é", "a/b", 5, b"bytes"]
)
def test_bad_queue_names_are_refused(queue: Any) -> None:
    with pytest.raises(RegistrationError, match="queue must be a channel name"):
        reg(ping, queue=queue)


@pytest.mark.parametrize("queue", [None, "rpc.default", "q" * 99, "A-b_c.9"])
def test_good_queue_names(queue: str | None) -> None:
    assert reg(ping, queue=queue).queue == queue


def test_a_failed_registration_leaves_no_trace() -> None:
    cls = fresh_class()
    with pytest.raises(RegistrationError):
        register(cls, ping, name="ping", notification=False, timeout=-1)
    register(cls, ping, name="ping", notification=False)
    table = table_of(cls)
    assert table is not None
    assert len(list(table.specs())) == 1


def test_websocket_option_and_async_detection() -> None:
    async def coro() -> int:
        return 1

    spec = reg(coro, websocket=False)
    assert spec.is_async
    assert spec.websocket is False
    assert not reg(ping).is_async


# --------------------------------------------------------------------------------------------
# Context detection


def ctx_by_class(ctx: RpcContext, a: int) -> int:
    return a


def ctx_by_string(ctx: RpcContext, a: int) -> int:  # annotations are strings in this module
    return a


def ctx_unannotated(ctx, a):  # type: ignore[no-untyped-def]
    return a


def ctx_other_name(context: RpcContext) -> None:
    pass


def ctx_not_first(a: int, ctx: RpcContext) -> int:
    return a


def ctx_keyword_only(*, ctx: RpcContext) -> None:
    pass


#: Another class that happens to be called RpcContext (a stub, a re-declaration).
_Named = type("RpcContext", (), {})


def test_string_annotations_are_in_use_here() -> None:
    assert inspect.signature(ctx_by_string).parameters["ctx"].annotation == "RpcContext"


def test_context_detected_by_annotation_class() -> None:
    def func(ctx: Any, a: int) -> int:
        return a

    func.__annotations__["ctx"] = RpcContext
    spec = reg(func)
    assert spec.accepts_context
    assert list(spec.signature.parameters) == ["a"]


@pytest.mark.parametrize(
    ("func", "accepts", "params"),
    [
        (ctx_by_class, True, ["a"]),
        (ctx_by_string, True, ["a"]),
        (ctx_other_name, True, []),
        (ctx_unannotated, False, ["ctx", "a"]),
        (ctx_not_first, False, ["a", "ctx"]),
        (ctx_keyword_only, False, ["ctx"]),
        (ping, False, []),
    ],
)
def test_context_detection(func: Callable[..., Any], accepts: bool, params: list[str]) -> None:
    spec = reg(func)
    assert spec.accepts_context is accepts
    assert list(spec.signature.parameters) == params


@pytest.mark.parametrize("annotation", ["channels_rpc.context.RpcContext", "ctx_mod.RpcContext"])
def test_context_detected_by_dotted_string(annotation: str) -> None:
    def func(ctx: Any) -> None:
        pass

    func.__annotations__["ctx"] = annotation
    assert reg(func).accepts_context


def test_context_detected_by_class_name() -> None:
    def func(ctx: Any) -> None:
        pass

    func.__annotations__["ctx"] = _Named
    assert reg(func).accepts_context
    func.__annotations__["ctx"] = "NotRpcContext"
    assert not reg(func).accepts_context


def test_method_info_keeps_the_full_signature() -> None:
    spec = reg(ctx_by_string, name="info")
    info = spec.info()
    assert info.name == "info"
    assert info.func is ctx_by_string
    assert info.signature == "(ctx: 'RpcContext', a: 'int') -> 'int'"
    assert info.docstring is None
    assert info.accepts_context
    assert info.transport_options == {"websocket": True}
    assert not info.is_notification


# --------------------------------------------------------------------------------------------
# Binding params


def two(a: int, b: int = 2, *, c: int = 3) -> None:
    pass


def variadic(*args: Any, **kwargs: Any) -> None:
    pass


@pytest.mark.parametrize(
    ("func", "params", "args", "kwargs"),
    [
        (two, [1], (1,), {}),
        (two, [1, 5], (1, 5), {}),
        (two, {"a": 1}, (1,), {}),
        (two, {"b": 5, "a": 1}, (1, 5), {}),
        (two, {"a": 1, "c": 9}, (1,), {"c": 9}),
        (variadic, [], (), {}),
        (variadic, [1, 2, 3], (1, 2, 3), {}),
        (variadic, {"x": 1, "y": 2}, (), {"x": 1, "y": 2}),
        (ping, {}, (), {}),
        (ping, [], (), {}),
    ],
)
def test_bind_accepts_matching_params(
    func: Callable[..., Any], params: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    assert reg(func).bind(params) == (args, kwargs)


def test_bind_skips_the_context_parameter() -> None:
    spec = reg(ctx_by_class)
    assert spec.bind([1]) == ((1,), {})
    assert spec.bind({"a": 1}) == ((1,), {})
    with pytest.raises(JsonRpcError):
        spec.bind([object(), 1])


@pytest.mark.parametrize(
    ("func", "params", "fragment"),
    [
        (two, [], "missing a required argument: 'a'"),
        (two, {}, "missing a required argument: 'a'"),
        (two, [1, 2, 3], "too many positional arguments"),
        (two, {"a": 1, "zzz": 2}, "unexpected keyword argument 'zzz'"),
        (ping, [1], "too many positional arguments"),
        (ping, {"x": 1}, "unexpected keyword argument 'x'"),
    ],
)
def test_bind_answers_invalid_params(func: Callable[..., Any], params: Any, fragment: str) -> None:
    with pytest.raises(JsonRpcError) as caught:
        reg(func).bind(params)
    assert caught.value.code == JsonRpcErrorCode.INVALID_PARAMS
    assert caught.value.rpc_id is None
    assert fragment in caught.value.data["error"]
    assert caught.value.error()["message"] == "Invalid Params"


def test_bind_refuses_named_params_for_positional_only() -> None:
    def positional(a: int, /) -> None:
        pass

    spec = reg(positional)
    assert spec.bind([1]) == ((1,), {})
    with pytest.raises(JsonRpcError):
        spec.bind({"a": 1})


def signature_of(kinds: list[tuple[inspect._ParameterKind, bool]]) -> inspect.Signature:
    """A signature with a parameter of each (kind, has a default), in a valid order."""
    order = sorted(kinds, key=lambda pair: (pair[0], not pair[1]))
    parameters, seen = [], set()
    for index, (kind, has_default) in enumerate(order):
        if kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            if kind in seen:
                continue
            has_default = False
        seen.add(kind)
        default = 0 if has_default else inspect.Parameter.empty
        parameters.append(inspect.Parameter(f"p{index}", kind, default=default))
    # A parameter without a default may not follow one with a default (positionally).
    positional = [p for p in parameters if p.kind <= inspect.Parameter.POSITIONAL_OR_KEYWORD]
    if any(a.default is not a.empty and b.default is b.empty for a, b in pairwise(positional)):
        parameters = [p.replace(default=inspect.Parameter.empty) for p in parameters]
    return inspect.Signature(parameters)


@settings(max_examples=300)
@given(
    st.lists(st.tuples(st.sampled_from(list(inspect._ParameterKind)), st.booleans()), max_size=4),
    st.one_of(
        st.lists(st.integers(), max_size=5),
        st.dictionaries(st.sampled_from(["p0", "p1", "p2", "x"]), st.integers(), max_size=3),
    ),
)
def test_bind_by_length_agrees_with_signature_bind(
    kinds: list[tuple[inspect._ParameterKind, bool]], params: Any
) -> None:
    spec = replace(reg(ping), signature=signature_of(kinds))
    expected: Any
    try:
        if isinstance(params, list):
            bound = spec.signature.bind(*params)
        else:
            bound = spec.signature.bind(**params)
        expected = (bound.args, bound.kwargs)
    except TypeError as exc:
        expected = {"error": str(exc)}
    if isinstance(expected, dict):
        with pytest.raises(JsonRpcError) as caught:
            spec.bind(params)
        assert caught.value.data == expected
    else:
        assert spec.bind(params) == expected


# --------------------------------------------------------------------------------------------
# Per-class tables and lookup by path


def test_registrations_belong_to_the_exact_class() -> None:
    parent = fresh_class("Parent")
    register(parent, ping, name="ping", notification=False)
    child = type("Child", (parent,), {})
    assert table_of(child) is None
    assert table_of(parent) is not None
    register(child, ping, name="other", notification=False)
    child_table = table_of(child)
    parent_table = table_of(parent)
    assert child_table is not None
    assert parent_table is not None
    assert child_table.lookup("ping", notification=False) is None
    assert parent_table.lookup("other", notification=False) is None


def test_table_of_without_create_does_not_create() -> None:
    cls = fresh_class()
    assert table_of(cls) is None
    assert table_of(cls) is None
    table = table_of(cls, create=True)
    assert table is not None
    assert table_of(cls) is table
    assert table.key == consumer_key(cls)


def test_consumer_key_is_the_dotted_path() -> None:
    assert consumer_key(PlainConsumer) == f"{__name__}.PlainConsumer"
    assert consumer_key(PlainConsumer.Inner) == f"{__name__}.PlainConsumer.Inner"


def test_resolve_finds_a_registered_class_even_when_not_importable() -> None:
    cls = fresh_class("LocalOnly")
    register(cls, ping, name="ping", notification=False)
    assert resolve_consumer(consumer_key(cls)) is cls


def test_resolve_imports_module_level_classes() -> None:
    assert table_of(PlainConsumer) is None
    assert resolve_consumer(f"{__name__}.PlainConsumer") is PlainConsumer
    assert resolve_consumer(f"{__name__}.PlainConsumer.Inner") is PlainConsumer.Inner
    assert resolve_consumer("collections.OrderedDict") is __import__("collections").OrderedDict


@pytest.mark.parametrize(
    "key",
    [
        "no_such_module_xyz.Consumer",
        f"{__name__}.Missing",
        f"{__name__}.PlainConsumer.Missing",
        f"{__name__}.not_a_class",
        "Consumer",
        "",
        "tests.unit.no_such_module.Consumer",
    ],
)
def test_resolve_returns_none_for_unknown_paths(key: str) -> None:
    assert resolve_consumer(key) is None


def test_known_queues_come_from_live_classes() -> None:
    cls = fresh_class()
    register(cls, ping, name="a", notification=False, queue="unit.q-one")
    register(cls, ping, name="b", notification=True)
    queues = known_queues("unit.default-queue")
    assert {"unit.q-one", "unit.default-queue"} <= queues


def test_known_queues_forget_collected_classes() -> None:
    def lonely() -> None:
        pass

    cls = fresh_class()
    register(cls, lonely, name="lonely", notification=False, queue="unit.gone-soon")
    assert "unit.gone-soon" in known_queues("d")
    del cls
    gc.collect()
    assert "unit.gone-soon" not in known_queues("d")


# --------------------------------------------------------------------------------------------
# Permissions


def test_permission_required_below_registration() -> None:
    def guarded() -> None:
        pass

    protected = permission_required("app.view_thing")(guarded)
    assert getattr(protected, "__wrapped__", None) is guarded  # it checks direct calls too
    spec = reg(guarded)
    assert spec.permissions == ("app.view_thing",)


def test_permission_required_above_registration_updates_the_table() -> None:
    def guarded() -> None:
        pass

    cls = fresh_class()
    spec = register(cls, guarded, name="g", notification=False)
    register(cls, guarded, name="g", notification=True)
    assert spec.permissions == ()
    permission_required("app.change_thing", "app.view_thing")(guarded)
    table = table_of(cls)
    assert table is not None
    for notification in (False, True):
        updated = table.lookup("g", notification=notification)
        assert updated is not None
        assert updated.permissions == ("app.change_thing", "app.view_thing")


def test_permissions_accumulate_without_duplicates() -> None:
    def guarded() -> None:
        pass

    cls = fresh_class()
    permission_required("app.a")(guarded)
    register(cls, guarded, name="g", notification=False)
    permission_required("app.b", "app.a")(guarded)
    table = table_of(cls)
    assert table is not None
    spec = table.lookup("g", notification=False)
    assert spec is not None
    assert spec.permissions == ("app.a", "app.b")
    assert reg(guarded, name="later").permissions == ("app.a", "app.b")


@pytest.mark.parametrize("perms", [(), ("",), ("app.x", 3)])
def test_permission_required_needs_names(perms: tuple[Any, ...]) -> None:
    with pytest.raises(ValueError, match="needs permission names"):
        permission_required(*perms)


def ctx_and_kwargs(ctx: RpcContext, **kwargs: Any) -> None:
    pass


def test_bind_refuses_a_named_param_that_collides_with_the_context() -> None:
    spec = reg(ctx_and_kwargs)
    assert spec.accepts_context
    assert spec.bind({"other": 1}) == ((), {"other": 1})
    with pytest.raises(JsonRpcError):
        spec.bind({"ctx": 1})
