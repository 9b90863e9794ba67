"""``manage.py rpccall --inline``: the call runs in this process, through the consumer class."""

from __future__ import annotations

import json
import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from channels_rpc import AsyncJsonRpcWebsocketConsumer

REFERENCE = "workers.consumers.RpcConsumer"


class Recorder(AsyncJsonRpcWebsocketConsumer):
    """Its notification leaves a trace: the command must not exit before it ran."""


class Twin(AsyncJsonRpcWebsocketConsumer):
    """Has a method of the same name as Recorder's: which one to call is the user's choice."""


notes: list[str] = []


@Recorder.rpc_notification()
async def inline_note(text: str) -> None:
    notes.append(text)


@Recorder.rpc_method("inline_twin")
async def recorder_twin() -> str:
    return "recorder"


@Twin.rpc_method("inline_twin")
async def twin_twin() -> str:
    return "twin"


def rpccall(*args: str) -> tuple[str, str]:
    """Run the command in this process: (stdout, stderr)."""
    out, err = StringIO(), StringIO()
    call_command("rpccall", *args, "--inline", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_a_call_runs_in_this_process_with_no_redis_even_when_the_settings_name_one() -> None:
    unreachable = {
        "default": {
            "BACKEND": "channels_rpc.layers.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]},
        }
    }
    with override_settings(CHANNEL_LAYERS=unreachable):
        assert rpccall("add", "[1, 2]", "--consumer", REFERENCE) == ("3\n", "")
        out, _ = rpccall("echo", '[{"a": null}]', "--consumer", REFERENCE, "--indent", "1")
    assert json.loads(out) == {"a": None}
    assert out.count("\n") == 3


@pytest.mark.parametrize(("params", "code"), [("[1, 0]", -32602), ("[1, 2, 3]", -32602)])
def test_an_error_answer_is_written_to_stderr_and_exits_1(params: str, code: int) -> None:
    out, err = StringIO(), StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command(
            "rpccall", "divide", params, "--inline", "--consumer", REFERENCE, stdout=out, stderr=err
        )
    assert exited.value.code == 1
    assert out.getvalue() == ""
    assert json.loads(err.getvalue())["code"] == code


def test_a_notification_has_run_when_the_command_returns() -> None:
    notes.clear()
    assert rpccall("inline_note", '["hello"]', "--notify") == ("", "")
    assert notes == ["hello"]  # Recorder, the one class with that notification, was chosen


def test_a_method_of_several_classes_needs_consumer() -> None:
    with pytest.raises(CommandError, match="several consumer classes could take 'inline_twin'"):
        rpccall("inline_twin")
    assert rpccall("inline_twin", "--consumer", f"{__name__}.Twin") == ('"twin"\n', "")


def test_a_wrong_consumer_option_is_a_clear_error() -> None:
    with pytest.raises(CommandError, match=re.escape("--consumer no.such.Consumer")):
        rpccall("add", "[1, 2]", "--consumer", "no.such.Consumer")
    with pytest.raises(CommandError, match="--consumer goes with --inline"):
        call_command("rpccall", "add", "[1, 2]", "--consumer", REFERENCE)
