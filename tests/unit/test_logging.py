"""Log lines carry the run context and the current trace, as JSON lines and as text."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from cmo_server._logging import log_formatter

RUN = {"run_id": "run-1", "step_index": 2, "attempt": 3}


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = logging.getLogger(f"cmo.test.{id(out)}")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, out, handler
    logger.removeHandler(handler)


def test_json_lines_carry_run_id_step_and_attempt(logged):
    logger, out, handler = logged
    handler.setFormatter(log_formatter("json"))
    logger.info("step %s failed", 2, extra=RUN)
    logger.info("no run here")

    with_run, without = (json.loads(line) for line in out.getvalue().splitlines())
    assert with_run["message"] == "step 2 failed"
    assert (with_run["run_id"], with_run["step_index"], with_run["attempt"]) == ("run-1", 2, 3)
    assert (with_run["level"], with_run["logger"]) == ("INFO", logger.name)
    assert "run_id" not in without
    assert "trace_id" not in without  # no span is active


def test_json_lines_carry_the_current_trace_and_span():
    provider = TracerProvider()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(log_formatter("json"))
    logger = logging.getLogger("cmo.test.traced")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with provider.get_tracer("test").start_as_current_span("step") as span:
            logger.warning("inside", extra=RUN)
    finally:
        logger.removeHandler(handler)
        provider.shutdown()
    line = json.loads(out.getvalue())
    context = span.get_span_context()
    assert line["trace_id"] == trace.format_trace_id(context.trace_id)
    assert line["span_id"] == trace.format_span_id(context.span_id)
    assert line["run_id"] == "run-1"


def test_text_lines_show_the_run_context_as_key_value_pairs(logged):
    logger, out, handler = logged
    handler.setFormatter(log_formatter("text"))
    logger.info("step %s failed", 2, extra=RUN)
    logger.info("plain")

    with_run, plain = out.getvalue().splitlines()
    assert with_run.endswith(f"INFO {logger.name}: step 2 failed run_id=run-1 step_index=2 attempt=3")
    assert plain.endswith(f"INFO {logger.name}: plain")


def test_text_lines_keep_the_traceback_after_the_context(logged):
    logger, out, handler = logged
    handler.setFormatter(log_formatter("text"))
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("failed", extra=RUN)
    first, *rest = out.getvalue().splitlines()
    assert first.endswith("failed run_id=run-1 step_index=2 attempt=3")
    assert rest[-1] == "RuntimeError: boom"


def test_json_lines_stamp_milliseconds_and_the_zone_and_keep_structured_fields(logged):
    logger, out, handler = logged
    handler.setFormatter(log_formatter("json"))
    logger.info("configuration", extra={"config": {"store": {"pool_size": 8}}})
    line = json.loads(out.getvalue())
    assert line["message"] == "configuration"
    assert line["config"] == {"store": {"pool_size": 8}}  # an object, not text inside the message
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["ts"])

    text = io.StringIO()
    handler.setStream(text)
    handler.setFormatter(log_formatter("text"))
    logger.info("configuration", extra={"config": {"listen": "h:1"}})
    assert text.getvalue().rstrip().endswith('configuration config={"listen": "h:1"}')
