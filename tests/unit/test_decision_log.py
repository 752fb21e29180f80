"""The decision log writes a decision's line on the loop's next turn, a turn's lines at once, and loses none."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from cmo.policy import Decision, Denial
from cmo_server._logging import log_soon
from cmo_server.policy import DecisionLog

ALLOWED = Decision("step_before", (), "hash-1", 0.000125, 1)
DENIED = Decision("step_after", (Denial("default", "step_error", "the step reported an error: boom"),), "hash-1")


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_a_decision_is_written_on_the_next_turn_with_the_others_of_its_turn(tmp_path: Path):
    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(str(path))
    log.record(ALLOWED, {"run_id": "r-1", "step_index": 0})
    log.record(DENIED, {"run_id": "r-1", "step_index": 0})
    assert path.read_text() == ""  # the step's answer does not wait for its lines
    await asyncio.sleep(0)
    first, second = _lines(path)
    assert (first["gate"], first["allowed"], first["elapsed_us"], first["evaluated"]) == ("step_before", True, 125, 1)
    assert (first["run_id"], first["step_index"], first["bundle"]) == ("r-1", 0, "hash-1")
    assert second["denials"] == [
        {"policy": "default", "rule": "step_error", "reason": "the step reported an error: boom"}
    ]
    log.record(ALLOWED, {"run_id": "r-2"})
    log.close()  # what waits is written
    assert [line["run_id"] for line in _lines(path)] == ["r-1", "r-1", "r-2"]


async def test_decisions_from_other_threads_beside_the_loop_are_all_written_each_threads_in_order(tmp_path: Path):
    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(str(path))

    def deciding(thread: int) -> None:
        for i in range(200):
            log.record(ALLOWED, {"run_id": f"t{thread}", "step_index": i})

    threads = [threading.Thread(target=deciding, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for i in range(200):
        log.record(ALLOWED, {"run_id": "loop", "step_index": i})
        if i % 20 == 0:
            await asyncio.sleep(0)
    for thread in threads:
        await asyncio.to_thread(thread.join)
    log.close()
    by_run: dict[object, list[object]] = {}
    for line in _lines(path):
        by_run.setdefault(line["run_id"], []).append(line["step_index"])
    assert by_run == {name: list(range(200)) for name in ("t0", "t1", "t2", "loop")}


def test_without_a_loop_a_decision_is_written_at_once(tmp_path: Path):
    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(str(path))
    log.record(DENIED, {"agent_id": "a-1"})
    assert [line["agent_id"] for line in _lines(path)] == ["a-1"]
    log.close()


async def test_without_a_file_decisions_go_to_the_log_denials_as_warnings(caplog: pytest.LogCaptureFixture):
    log = DecisionLog()
    with caplog.at_level(logging.INFO, logger="cmo.policy.decisions"):
        log.record(ALLOWED, {"run_id": "r-1"})
        log.record(DENIED, {"run_id": "r-1"})
        await asyncio.sleep(0)
    levels = [(r.levelno, json.loads(r.getMessage())["gate"]) for r in caplog.records]
    assert levels == [(logging.INFO, "step_before"), (logging.WARNING, "step_after")]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
async def test_a_log_that_cannot_be_written_says_so_and_decisions_go_on(caplog: pytest.LogCaptureFixture):
    log = DecisionLog("/dev/full")
    with caplog.at_level(logging.ERROR, logger="cmo.policy.decisions"):
        log.record(ALLOWED, {"run_id": "r-1"})
        await asyncio.sleep(0)
        log.record(ALLOWED, {"run_id": "r-2"})  # still taken
        await asyncio.sleep(0)
        log.close()  # logs what it could not write, raises nothing at shutdown
    assert [r.getMessage() for r in caplog.records] == [
        "1 decisions could not be written to the decision log",
        "1 decisions could not be written to the decision log",
        "the decision log could not be closed cleanly",
    ]


async def test_log_soon_logs_on_the_next_turn_in_the_callers_span(caplog: pytest.LogCaptureFixture):
    logger = logging.getLogger("cmo.test.soon")
    tracer = TracerProvider().get_tracer("test")
    seen: list[trace.SpanContext] = []

    class Spans(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(trace.get_current_span().get_span_context())

    handler = Spans()
    logger.addHandler(handler)
    try:
        with caplog.at_level(logging.INFO, logger="cmo.test.soon"), tracer.start_as_current_span("call") as span:
            log_soon(logger, logging.INFO, "%s did %s", "tester", "StartRun", extra={"audit": {"who": "tester"}})
            assert caplog.records == []
            await asyncio.sleep(0)
        (record,) = caplog.records
        assert record.getMessage() == "tester did StartRun"
        assert record.audit == {"who": "tester"}  # type: ignore[attr-defined]
        assert seen == [span.get_span_context()]
    finally:
        logger.removeHandler(handler)
