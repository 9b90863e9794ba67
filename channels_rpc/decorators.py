"""``permission_required``: a method only users with Django permissions may call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from channels_rpc.registry import protect

__all__ = ["permission_required"]

F = TypeVar("F", bound=Callable[..., Any])


def permission_required(*perms: str) -> Callable[[F], F]:
    """Allow a method only to authenticated users holding every one of ``perms``.

    The check runs in the front-end before the call is enqueued (the user's permissions are
    loaded in a thread, never on the event loop). A denied call is answered exactly like a call
    to a method that does not exist, so clients cannot discover methods they may not use. Works
    written above or below ``@rpc_method()``.
    """
    if not perms or not all(isinstance(perm, str) and perm for perm in perms):
        raise ValueError("permission_required() needs permission names such as 'app.change_thing'.")

    def decorator(func: F) -> F:
        protect(func, perms)
        return func

    return decorator
