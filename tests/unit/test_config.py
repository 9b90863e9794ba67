from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from channels_rpc.config import RpcConfig, get_config, reset_config
from channels_rpc.protocol import RpcLimits


def test_defaults() -> None:
    config = RpcConfig()
    assert config.limits == RpcLimits()
    assert config.limits.max_message_size == 512 * 1024
    assert config.limits.max_array_length == 10_000
    assert config.limits.max_string_length == 1024 * 1024
    assert config.limits.max_nesting_depth == 20
    assert config.limits.max_method_name_length == 256
    assert config.limits.max_batch_size == 100
    assert config.log_rpc_params is False
    assert config.sanitize_errors is True
    assert config.execution == "auto"
    assert config.default_queue == "rpc.default"
    assert config.default_timeout == 300.0
    assert config.max_in_flight == 64
    assert config.reply_grace == 1.0
    assert config.channel_layer == "default"
    assert config.worker_concurrency == 32
    assert config.shutdown_grace == 10.0


@pytest.mark.parametrize("value", [{}, None])
def test_empty_or_missing_setting_gives_defaults(value: Any) -> None:
    with override_settings(CHANNELS_RPC=value):
        assert get_config() == RpcConfig()


def test_the_test_settings_are_read() -> None:
    config = get_config()
    assert config.default_timeout == 5.0
    assert config.reply_grace == 0.5
    assert get_config() is config


@pytest.mark.parametrize(
    ("key", "value", "attribute"),
    [
        ("MAX_MESSAGE_SIZE", 1000, "limits.max_message_size"),
        ("MAX_ARRAY_LENGTH", 7, "limits.max_array_length"),
        ("MAX_STRING_LENGTH", 8, "limits.max_string_length"),
        ("MAX_NESTING_DEPTH", 9, "limits.max_nesting_depth"),
        ("MAX_METHOD_NAME_LENGTH", 10, "limits.max_method_name_length"),
        ("MAX_BATCH_SIZE", 11, "limits.max_batch_size"),
        ("LOG_RPC_PARAMS", True, "log_rpc_params"),
        ("SANITIZE_ERRORS", False, "sanitize_errors"),
        ("EXECUTION", "inline", "execution"),
        ("EXECUTION", "workers", "execution"),
        ("DEFAULT_QUEUE", "rpc.other", "default_queue"),
        ("DEFAULT_TIMEOUT", 0, "default_timeout"),
        ("DEFAULT_TIMEOUT", 2.5, "default_timeout"),
        ("MAX_IN_FLIGHT", 3, "max_in_flight"),
        ("REPLY_GRACE", 0.25, "reply_grace"),
        ("CHANNEL_LAYER", "other", "channel_layer"),
        ("WORKER_CONCURRENCY", 4, "worker_concurrency"),
        ("SHUTDOWN_GRACE", 0, "shutdown_grace"),
    ],
)
def test_every_key_is_read(key: str, value: Any, attribute: str) -> None:
    with override_settings(CHANNELS_RPC={key: value}):
        config = get_config()
    target: Any = config
    for part in attribute.split("."):
        target = getattr(target, part)
    assert target == value
    assert target != _default_of(attribute)
    if not attribute.startswith("limits."):
        assert config.limits == RpcLimits()


def _default_of(attribute: str) -> Any:
    target: Any = RpcConfig()
    for part in attribute.split("."):
        target = getattr(target, part)
    return target


def test_seconds_are_floats() -> None:
    with override_settings(CHANNELS_RPC={"DEFAULT_TIMEOUT": 3, "REPLY_GRACE": 1}):
        config = get_config()
    assert type(config.default_timeout) is float
    assert type(config.reply_grace) is float


def test_unknown_keys_are_refused_with_the_known_ones_listed() -> None:
    with (
        override_settings(CHANNELS_RPC={"MAX_MESAGE_SIZE": 1, "ZZZ": 2}),
        pytest.raises(ImproperlyConfigured) as caught,
    ):
        get_config()
    text = str(caught.value)
    assert "['MAX_MESAGE_SIZE', 'ZZZ']" in text
    for known in (
        "CHANNEL_LAYER",
        "DEFAULT_QUEUE",
        "DEFAULT_TIMEOUT",
        "EXECUTION",
        "LOG_RPC_PARAMS",
        "MAX_ARRAY_LENGTH",
        "MAX_BATCH_SIZE",
        "MAX_IN_FLIGHT",
        "MAX_MESSAGE_SIZE",
        "MAX_METHOD_NAME_LENGTH",
        "MAX_NESTING_DEPTH",
        "MAX_STRING_LENGTH",
        "REPLY_GRACE",
        "SANITIZE_ERRORS",
        "SHUTDOWN_GRACE",
        "WORKER_CONCURRENCY",
    ):
        assert known in text


@pytest.mark.parametrize("value", [["MAX_ARRAY_LENGTH"], "x", 5])
def test_setting_must_be_a_dict(value: Any) -> None:
    with override_settings(CHANNELS_RPC=value), pytest.raises(ImproperlyConfigured, match="dict"):
        get_config()


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("MAX_ARRAY_LENGTH", True, "positive integer"),
        ("MAX_MESSAGE_SIZE", False, "positive integer"),
        ("MAX_NESTING_DEPTH", 0, "positive integer"),
        ("MAX_BATCH_SIZE", -1, "positive integer"),
        ("MAX_STRING_LENGTH", 1.5, "positive integer"),
        ("MAX_METHOD_NAME_LENGTH", "10", "positive integer"),
        ("MAX_IN_FLIGHT", True, "positive integer"),
        ("WORKER_CONCURRENCY", 0, "positive integer"),
        ("DEFAULT_TIMEOUT", -1, "number >= 0"),
        ("DEFAULT_TIMEOUT", True, "number >= 0"),
        ("DEFAULT_TIMEOUT", "5", "number >= 0"),
        ("DEFAULT_TIMEOUT", float("nan"), "number >= 0"),
        ("REPLY_GRACE", -0.5, "number >= 0"),
        ("SHUTDOWN_GRACE", None, "number >= 0"),
        ("LOG_RPC_PARAMS", 1, "True or False"),
        ("SANITIZE_ERRORS", "no", "True or False"),
        ("EXECUTION", "thread", "must be one of"),
        ("EXECUTION", None, "must be one of"),
        ("EXECUTION", "INLINE", "must be one of"),
        ("DEFAULT_QUEUE", "", "channel name"),
        ("DEFAULT_QUEUE", "a!b", "channel name"),
        ("CHANNEL_LAYER", None, "non-empty string"),
    ],
)
def test_bad_values_are_refused(key: str, value: Any, match: str) -> None:
    with (
        override_settings(CHANNELS_RPC={key: value}),
        pytest.raises(ImproperlyConfigured) as caught,
    ):
        get_config()
    assert match in str(caught.value)
    assert repr(key) in str(caught.value)


def test_override_settings_resets_the_cache_without_reset_config() -> None:
    before = get_config()
    with override_settings(CHANNELS_RPC={"MAX_IN_FLIGHT": 2}):
        assert get_config().max_in_flight == 2
    assert get_config().max_in_flight == before.max_in_flight == 64
    assert get_config() == before


def test_other_settings_do_not_reset_the_cache() -> None:
    before = get_config()
    with override_settings(DEBUG=True):
        assert get_config() is before


def test_reset_config_forgets_the_cache() -> None:
    before = get_config()
    reset_config()
    after = get_config()
    assert after is not before
    assert after == before


@pytest.mark.parametrize(
    ("default", "method", "expected"),
    [
        (300.0, None, 300.0),
        (300.0, 2.0, 2.0),
        (300.0, 0.0, None),
        (0.0, None, None),
        (0.0, 4.0, 4.0),
    ],
)
def test_timeout_for(default: float, method: float | None, expected: float | None) -> None:
    assert RpcConfig(default_timeout=default).timeout_for(method) == expected
