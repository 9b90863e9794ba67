"""Where methods come from (channels_rpc.discovery) and the METHOD_MODULES setting."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from channels_rpc import discovery, registry
from channels_rpc.config import get_config


@pytest.fixture
def restore_discovery() -> Iterator[None]:
    """Tests that search again leave the record as the test process's startup made it."""
    modules = get_config().method_modules
    yield
    discovery.autodiscover(modules)


def test_startup_imported_the_rpc_module_of_each_installed_app() -> None:
    # tests/settings.py installs the reference project, whose methods are in workers/rpc.py.
    apps_line, modules_line, application_line = discovery.where()
    assert apps_line.startswith('the "rpc" module of each installed app: workers.rpc (searched ')
    assert "channels_rpc, workers)" in apps_line
    assert modules_line == 'CHANNELS_RPC["METHOD_MODULES"]: none'
    assert application_line == "ASGI_APPLICATION: not set"
    assert discovery.registered_count() >= 15  # the reference project's methods at least


def test_method_modules_are_imported_and_named(restore_discovery: None) -> None:
    discovery.autodiscover(["tests.startup_project.extra"])
    from tests.startup_project.shop.consumers import ShopConsumer

    table = registry.table_of(ShopConsumer)
    assert table is not None
    assert table.lookup("only_in_daphne", notification=False) is not None
    assert discovery.where()[1] == 'CHANNELS_RPC["METHOD_MODULES"]: tests.startup_project.extra'


def test_a_method_module_that_does_not_exist_fails(restore_discovery: None) -> None:
    with pytest.raises(ModuleNotFoundError, match=r"tests\.no_such_methods"):
        discovery.autodiscover(["tests.no_such_methods"])


def test_what_a_worker_without_the_method_says() -> None:
    line = discovery.missing_method("ghost", "shop.consumers.Shop", object)
    assert line.startswith("no method 'ghost' on shop.consumers.Shop in this worker (pid ")
    assert "; ".join(discovery.where()) in line
    assert "\n" not in line
    unknown_class = discovery.missing_method("ghost", "gone.Consumer", None)
    assert unknown_class.startswith(
        "no method 'ghost': the consumer class gone.Consumer cannot be imported in this worker"
    )
    assert discovery.not_here("ghost") == {
        "method": "ghost",
        "reason": "the worker that took the call does not have this method: it runs other "
        "code than the front-end, or never imported the module that registers it",
    }


def test_what_a_worker_without_any_method_says() -> None:
    text = discovery.nothing_registered()
    first, *sources, fix = text.split("\n")
    assert first == "No RPC methods are registered, so there is nothing to serve. Looked in:"
    assert sources == [f"  - {line}" for line in discovery.where()]
    assert fix.startswith('Register methods with @YourConsumer.rpc_method() in the "rpc" module')


# ---------------------------------------------------------------------------------------------
# CHANNELS_RPC["METHOD_MODULES"]


@pytest.mark.parametrize("value", [["a.b", "c"], ("a.b", "c")])
def test_method_modules_are_read_as_a_tuple(value: Any) -> None:
    with override_settings(CHANNELS_RPC={"METHOD_MODULES": value}):
        assert get_config().method_modules == ("a.b", "c")


@pytest.mark.parametrize("value", ["a.b", ["a.b", ""], [1], None, {"a.b": 1}])
def test_method_modules_must_be_a_list_of_module_paths(value: Any) -> None:
    with (
        override_settings(CHANNELS_RPC={"METHOD_MODULES": value}),
        pytest.raises(ImproperlyConfigured, match="must be a list of dotted module paths"),
    ):
        get_config()


def test_an_invalid_setting_is_logged_once_however_often_it_is_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Without the app nothing reads it at startup: each connection does, and fails (HTTP 500).
    with (
        override_settings(CHANNELS_RPC={"MAX_INFLIGHT": 5}),
        caplog.at_level(logging.ERROR, logger="channels_rpc"),
    ):
        for _ in range(3):
            with pytest.raises(ImproperlyConfigured):
                get_config()
    logged = [record.getMessage() for record in caplog.records]
    assert len(logged) == 1
    assert logged[0].startswith(
        "CHANNELS_RPC is invalid, so channels-rpc refuses every connection: Unknown "
        "CHANNELS_RPC keys ['MAX_INFLIGHT']; known keys: "
    )
