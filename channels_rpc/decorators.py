"""``permission_required``: a method only users with Django permissions may call.

The permissions are checked three times over, each where the one before cannot see:

* the front-end, before it enqueues a call, with the connection's live user (an unknown, a
  disabled and a forbidden method are answered alike, so clients cannot discover methods);
* the worker, before it runs the method, with the user the request names: a request that never
  passed a front-end (written straight into Redis) must not run a protected method;
* the decorated function itself, when it is called directly, with the user of the
  ``RpcContext`` it is given (the behaviour of channels-rpc 1.0.1).

A worker that checked a call marks the permissions it checked (:func:`checked`), so the
function does not ask the database a second time.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from channels.db import database_sync_to_async

from channels_rpc.exceptions import JsonRpcError, JsonRpcErrorCode
from channels_rpc.registry import protect

__all__ = ["allowed", "checked", "permission_required"]

F = TypeVar("F", bound=Callable[..., Any])

#: Permissions already checked for the call running in this context.
_checked: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "channels_rpc_checked_permissions", default=frozenset()
)


def permission_required(*perms: str) -> Callable[[F], F]:
    """Allow a method only to authenticated users holding every one of ``perms``.

    Works written above or below ``@rpc_method()``. The decorated function, called directly
    with an ``RpcContext`` first, raises ``JsonRpcError`` -32601 (no data) for a user without
    the permissions, as in channels-rpc 1.0.1; an async function asks the database in a thread,
    never on the event loop. Called without a context, it cannot know the caller and refuses.
    """
    if not perms or not all(isinstance(perm, str) and perm for perm in perms):
        raise ValueError("permission_required() needs permission names such as 'app.change_thing'.")

    def decorator(func: F) -> F:
        protect(func, perms)  # its registrations so far, when written above @rpc_method()
        guarded = _guard(func, perms)
        protect(guarded, perms)  # the function registered, when written below it
        return guarded

    return decorator


def allowed(user: Any, perms: Iterable[str]) -> bool:
    """Whether ``user`` is authenticated and holds every one of ``perms`` (database work)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    return bool(user.has_perms(tuple(perms)))


@contextlib.contextmanager
def checked(perms: Iterable[str]) -> Iterator[None]:
    """Within this block (and the threads it starts), ``perms`` count as checked."""
    token = _checked.set(_checked.get() | frozenset(perms))
    try:
        yield
    finally:
        _checked.reset(token)


def _guard(func: F, perms: tuple[str, ...]) -> F:
    wanted = frozenset(perms)
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def guarded_async(*args: Any, **kwargs: Any) -> Any:
            if not wanted <= _checked.get():
                context = _context_of(args)
                if not await database_sync_to_async(_allows)(context, perms):
                    raise _denied(context)
            return await func(*args, **kwargs)

        return guarded_async  # type: ignore[return-value]

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if not wanted <= _checked.get():
            context = _context_of(args)
            if not _allows(context, perms):
                raise _denied(context)
        return func(*args, **kwargs)

    return guarded  # type: ignore[return-value]


def _context_of(args: tuple[Any, ...]) -> Any:
    """The ``RpcContext`` a direct call passed first, or None."""
    return args[0] if args and hasattr(args[0], "scope") else None


def _allows(context: Any, perms: tuple[str, ...]) -> bool:
    return context is not None and allowed(context.scope.get("user"), perms)


def _denied(context: Any) -> JsonRpcError:
    return JsonRpcError(getattr(context, "rpc_id", None), JsonRpcErrorCode.METHOD_NOT_FOUND)
