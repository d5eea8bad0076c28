"""tidings_core's records reach the handlers' Powertools JSON lines, with their `extra` keys."""

from __future__ import annotations

import io
import json
import logging
from types import ModuleType

import pytest
from testkit import load_handler

from tidings_core import registry
from tidings_core.config import Settings

from .conftest import POWERTOOLS_ENV, FakeContext, FakeManagement, bus_event


def test_a_tidings_core_info_line_is_a_json_record_with_its_keys_and_the_handlers(
    aws: Settings, management: FakeManagement, handlers: dict[str, ModuleType]
) -> None:
    registry.create_job("job-1", "alice")
    notify = handlers["notify"]
    notify.handler(bus_event("ev-5", seq=5, percent=50.0), FakeContext())
    buffer = io.StringIO()
    stream_handler = notify.logger.registered_handler
    previous = stream_handler.setStream(buffer)
    try:
        assert notify.handler(bus_event("ev-3", seq=3, percent=30.0), FakeContext())["outcome"] == "stale"
    finally:
        stream_handler.setStream(previous)
    records = [json.loads(line) for line in buffer.getvalue().splitlines()]
    dropped = [r for r in records if r["message"] == "job event dropped"]
    assert len(dropped) == 1, records
    record = dropped[0]
    assert record["level"] == "INFO"
    assert record["location"].startswith("deliver_job_event:")  # logged by tidings_core.fanout
    # the library's `extra` keys and the handler's keys (append_keys, Lambda context) together
    assert (record["job_id"], record["seq"], record["stored_seq"]) == ("job-1", 3, 5)
    assert record["event_id"] == "ev-3"
    assert record["function_name"] == FakeContext.function_name
    assert record["service"] == POWERTOOLS_ENV["POWERTOOLS_SERVICE_NAME"]


@pytest.mark.parametrize("function_dir", ["authorize", "connect", "disconnect", "subscribe", "notify"])
def test_every_handler_routes_tidings_core_logs_through_its_logger(
    function_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in POWERTOOLS_ENV.items():
        monkeypatch.setenv(name, value)
    package = logging.getLogger("tidings_core")
    monkeypatch.setattr(package, "handlers", [])
    monkeypatch.setattr(package, "propagate", True)
    monkeypatch.setattr(package, "level", logging.NOTSET)
    module = load_handler(function_dir)
    assert package.handlers == [module.logger.registered_handler]
    assert package.propagate is False
    assert package.getEffectiveLevel() <= logging.INFO
