from __future__ import annotations

import logging

import pytest

from channels_rpc.middleware import LoggingMiddleware


class Consumer:
    pass


def test_process_request_logs_and_returns_the_data(caplog: pytest.LogCaptureFixture) -> None:
    middleware = LoggingMiddleware()
    data = {"jsonrpc": "2.0", "method": "add", "params": ["secret"], "id": 1}
    with caplog.at_level(logging.INFO, logger="channels_rpc.middleware"):
        assert middleware.process_request(data, Consumer()) is data
    assert "RPC call: method='add' id=1" in caplog.text
    assert "secret" not in caplog.text


def test_params_are_logged_when_asked(caplog: pytest.LogCaptureFixture) -> None:
    middleware = LoggingMiddleware("custom.logger", log_params=True)
    with caplog.at_level(logging.INFO, logger="custom.logger"):
        middleware.process_request({"method": "add", "params": ["secret"]}, Consumer())
    assert "params=['secret']" in caplog.text
    assert "id='notification'" in caplog.text


def test_process_response_reports_the_round_trip(caplog: pytest.LogCaptureFixture) -> None:
    middleware = LoggingMiddleware()
    consumer = Consumer()
    middleware.process_request({"method": "m", "id": "a"}, consumer)
    response = {"jsonrpc": "2.0", "id": "a", "result": 1}
    with caplog.at_level(logging.DEBUG, logger="channels_rpc.middleware"):
        assert middleware.process_response(response, consumer) is response
        middleware.process_response(response, consumer)
    lines = [record.getMessage() for record in caplog.records]
    assert lines[0].startswith("RPC response: id='a' in ")
    assert lines[0].endswith(" ms")
    assert lines[1] == "RPC response: id='a' in ?"


def test_timings_are_per_consumer(caplog: pytest.LogCaptureFixture) -> None:
    middleware = LoggingMiddleware()
    first, second = Consumer(), Consumer()
    middleware.process_request({"method": "m", "id": 1}, first)
    with caplog.at_level(logging.DEBUG, logger="channels_rpc.middleware"):
        middleware.process_response({"id": 1, "result": 0}, second)
        middleware.process_response({"id": 1, "result": 0}, first)
    lines = [record.getMessage() for record in caplog.records]
    assert lines[0] == "RPC response: id=1 in ?"
    assert lines[1].endswith(" ms")
