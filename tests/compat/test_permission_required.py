"""``permission_required`` called directly, the way channels-rpc 1.0.1's unit tests call it.

The decorated function gets an ``RpcContext`` whose consumer carries the scope, and raises
``JsonRpcError`` -32601 (no data, the request's id) for a caller without the permissions.
"""

from __future__ import annotations

import threading
from typing import Any
from unittest.mock import MagicMock

import pytest

from channels_rpc.context import RpcContext
from channels_rpc.decorators import permission_required
from channels_rpc.exceptions import JsonRpcError, JsonRpcErrorCode


def create_mock_user(is_authenticated: bool, permissions: list[str]) -> MagicMock:
    user = MagicMock()
    user.is_authenticated = is_authenticated

    def has_perms_impl(requested_perms: Any) -> bool:
        return all(perm in permissions for perm in requested_perms)

    user.has_perms.side_effect = has_perms_impl
    return user


def create_context(user: Any = None, rpc_id: Any = 1) -> RpcContext:
    consumer = MagicMock()
    consumer.scope = {"user": user} if user else {}
    return RpcContext(
        consumer=consumer, method_name="test_method", rpc_id=rpc_id, is_notification=False
    )


class TestPermissionRequired:
    def test_successful_authorization_single_permission(self) -> None:
        user = create_mock_user(is_authenticated=True, permissions=["myapp.can_view"])

        @permission_required("myapp.can_view")
        def test_method(ctx: RpcContext) -> str:
            return "success"

        assert test_method(create_context(user=user)) == "success"
        user.has_perms.assert_called_once_with(("myapp.can_view",))

    def test_successful_authorization_multiple_permissions(self) -> None:
        user = create_mock_user(
            is_authenticated=True,
            permissions=["myapp.can_view", "myapp.can_edit", "myapp.can_delete"],
        )

        @permission_required("myapp.can_view", "myapp.can_edit")
        def test_method(ctx: RpcContext) -> str:
            return "success"

        assert test_method(create_context(user=user)) == "success"
        user.has_perms.assert_called_once_with(("myapp.can_view", "myapp.can_edit"))

    def test_authorization_failure_missing_permission(self) -> None:
        user = create_mock_user(is_authenticated=True, permissions=["myapp.can_view"])

        @permission_required("myapp.can_edit")
        def test_method(ctx: RpcContext) -> str:
            return "success"

        with pytest.raises(JsonRpcError) as exc_info:
            test_method(create_context(user=user, rpc_id=123))
        assert exc_info.value.code == JsonRpcErrorCode.METHOD_NOT_FOUND
        assert exc_info.value.rpc_id == 123
        assert exc_info.value.as_dict() == {
            "jsonrpc": "2.0",
            "id": 123,
            "error": {"code": -32601, "message": "Method Not Found"},
        }

    def test_authorization_failure_missing_one_of_multiple_permissions(self) -> None:
        user = create_mock_user(is_authenticated=True, permissions=["myapp.can_view"])

        @permission_required("myapp.can_view", "myapp.can_edit")
        def test_method(ctx: RpcContext) -> str:
            return "success"

        with pytest.raises(JsonRpcError) as exc_info:
            test_method(create_context(user=user))
        assert exc_info.value.code == JsonRpcErrorCode.METHOD_NOT_FOUND

    def test_unauthenticated_user_raises_error(self) -> None:
        user = create_mock_user(is_authenticated=False, permissions=[])

        @permission_required("myapp.can_view")
        def test_method(ctx: RpcContext) -> str:
            return "success"

        with pytest.raises(JsonRpcError) as exc_info:
            test_method(create_context(user=user, rpc_id=456))
        assert exc_info.value.code == JsonRpcErrorCode.METHOD_NOT_FOUND
        assert exc_info.value.rpc_id == 456
        user.has_perms.assert_not_called()

    def test_missing_user_in_scope_raises_error(self) -> None:
        @permission_required("myapp.can_view")
        def test_method(ctx: RpcContext) -> str:
            return "success"

        with pytest.raises(JsonRpcError) as exc_info:
            test_method(create_context(user=None))
        assert exc_info.value.code == JsonRpcErrorCode.METHOD_NOT_FOUND

    def test_decorator_preserves_function_metadata(self) -> None:
        @permission_required("myapp.can_view")
        def test_method(ctx: RpcContext) -> str:
            """Test docstring."""
            return "success"

        assert test_method.__name__ == "test_method"
        assert test_method.__doc__ == "Test docstring."

    def test_decorator_works_with_additional_parameters(self) -> None:
        user = create_mock_user(is_authenticated=True, permissions=["myapp.can_edit"])

        @permission_required("myapp.can_edit")
        def test_method(ctx: RpcContext, value: int, name: str) -> str:
            return f"{name}: {value * 2}"

        assert test_method(create_context(user=user), 5, "result") == "result: 10"

    def test_decorator_works_with_kwargs(self) -> None:
        user = create_mock_user(is_authenticated=True, permissions=["myapp.can_view"])

        @permission_required("myapp.can_view")
        def test_method(ctx: RpcContext, **kwargs: Any) -> dict[str, Any]:
            return kwargs

        result = test_method(create_context(user=user), key1="value1", key2="value2")
        assert result == {"key1": "value1", "key2": "value2"}

    def test_error_code_is_method_not_found(self) -> None:
        user = create_mock_user(is_authenticated=True, permissions=[])

        @permission_required("myapp.admin")
        def test_method(ctx: RpcContext) -> str:
            return "success"

        with pytest.raises(JsonRpcError) as exc_info:
            test_method(create_context(user=user))
        assert exc_info.value.code == JsonRpcErrorCode.METHOD_NOT_FOUND


class TestPermissionRequiredAsync:
    @pytest.mark.asyncio
    async def test_successful_authorization_async_method(self) -> None:
        user = create_mock_user(is_authenticated=True, permissions=["myapp.can_view"])

        @permission_required("myapp.can_view")
        async def async_method(ctx: RpcContext) -> str:
            return "async success"

        assert await async_method(create_context(user=user)) == "async success"

    @pytest.mark.asyncio
    async def test_authorization_failure_async_method(self) -> None:
        user = create_mock_user(is_authenticated=True, permissions=[])

        @permission_required("myapp.can_edit")
        async def async_method(ctx: RpcContext) -> str:
            return "success"

        with pytest.raises(JsonRpcError) as exc_info:
            await async_method(create_context(user=user, rpc_id=9))
        assert (exc_info.value.code, exc_info.value.rpc_id) == (-32601, 9)

    @pytest.mark.asyncio
    async def test_unauthenticated_user_async_method(self) -> None:
        user = create_mock_user(is_authenticated=False, permissions=[])

        @permission_required("myapp.can_view")
        async def async_method(ctx: RpcContext) -> str:
            return "success"

        with pytest.raises(JsonRpcError) as exc_info:
            await async_method(create_context(user=user))
        assert exc_info.value.code == JsonRpcErrorCode.METHOD_NOT_FOUND

    @pytest.mark.asyncio
    async def test_async_method_with_parameters(self) -> None:
        user = create_mock_user(is_authenticated=True, permissions=["myapp.can_process"])

        @permission_required("myapp.can_process")
        async def async_method(ctx: RpcContext, data: dict[str, Any]) -> dict[str, Any]:
            return {"processed": True, **data}

        result = await async_method(create_context(user=user), {"key": "value"})
        assert result == {"processed": True, "key": "value"}

    @pytest.mark.asyncio
    async def test_async_method_multiple_permissions(self) -> None:
        user = create_mock_user(
            is_authenticated=True,
            permissions=["myapp.can_view", "myapp.can_edit", "myapp.can_delete"],
        )

        @permission_required("myapp.can_view", "myapp.can_edit", "myapp.can_delete")
        async def async_method(ctx: RpcContext) -> str:
            return "all permissions granted"

        assert await async_method(create_context(user=user)) == "all permissions granted"

    @pytest.mark.asyncio
    async def test_the_check_of_an_async_method_does_not_block_the_event_loop(self) -> None:
        # has_perms is a database query for a real user: it runs in a thread.
        user = create_mock_user(is_authenticated=True, permissions=["myapp.can_view"])
        checked_in: list[threading.Thread] = []
        allowed = user.has_perms.side_effect

        def has_perms(perms: Any) -> bool:
            checked_in.append(threading.current_thread())
            return bool(allowed(perms))

        user.has_perms.side_effect = has_perms

        @permission_required("myapp.can_view")
        async def async_method(ctx: RpcContext) -> str:
            return "ok"

        assert await async_method(create_context(user=user)) == "ok"
        assert checked_in
        assert checked_in[0] is not threading.current_thread()
