"""What cmoctl prints, without a server: run progress, attempts, status lines, tables, formats, diffs."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from rich.text import Text

import cmo.cli
from cmo import RunProgress, RunStatus
from cmo._cli_actions import cancel_line, terminate_line
from cmo._cli_output import print_table
from cmo._cli_render import attempts, progress_cell, run_lines
from cmo._cli_replay import shown_result, state_diff
from cmo._types import FailureInfo, RecordedActivity, RunInfo, StepInfo, WaitInfo
from cmo.testing import RunHistory

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
STUCK = RunProgress(
    reason="no_poller",
    summary="step 1 (review) is ready on task queue [default], but no worker polls it for shop@2",
    task_queue="default",
    step_index=1,
    last_failure=FailureInfo("upstream 503", "ConnectionError", "review", 1, 1),
)


def run(**fields: Any) -> RunInfo:
    base = RunInfo(
        run_id="run-1", graph_id="shop", graph_version=2, status=RunStatus.PENDING, step_count=1,
        current_node="review", created_at=T0, updated_at=T0, completed_at=None, input={}, result=None, failure=None,
    )  # fmt: skip
    return replace(base, **fields)


def step(attempt: int, *kinds_by_attempt: tuple[str, int]) -> StepInfo:
    activities = tuple(
        RecordedActivity(seq, kind, "approve", "h", None, None, at) for seq, (kind, at) in enumerate(kinds_by_attempt)
    )
    return StepInfo(0, "gate", attempt, {"n": 1}, "ab" * 32, None, "", "__end__", T0, T0, T0 + timedelta(seconds=1),
                    activities)  # fmt: skip


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the fake server answers: `cmo.cli._run` returns it, whatever the command asks."""
    answer: dict[str, Any] = {}
    monkeypatch.setattr(cmo.cli, "_run", lambda server, action: answer["value"])
    return answer


def test_runs_show_prints_what_an_unfinished_run_waits_for_above_the_steps(served):
    served["value"] = (run(progress=STUCK), [step(1)])
    shown = CliRunner().invoke(cmo.cli.main, ["runs", "show", "run-1"])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    progress = lines.index(f"progress: {STUCK.summary}")
    assert lines[progress + 1] == "  last failure (attempt 1): ConnectionError: upstream 503"
    assert progress < next(i for i, line in enumerate(lines) if line.startswith("step "))

    as_yaml = yaml.safe_load(CliRunner().invoke(cmo.cli.main, ["runs", "show", "run-1", "-o", "yaml"]).output)
    assert as_yaml["progress"]["reason"] == "no_poller"
    assert as_yaml["progress"]["last_failure"]["type"] == "ConnectionError"


def test_runs_show_says_nothing_of_progress_the_server_did_not_give_or_of_an_ended_run():
    assert not any(line.plain.startswith("progress") for line in run_lines(run()))
    ended = run(status=RunStatus.COMPLETED, progress=STUCK)
    assert not any(line.plain.startswith("progress") for line in run_lines(ended))


def test_runs_list_has_a_progress_column_summary_when_wide_reason_when_narrow(served):
    assert progress_cell(run(progress=STUCK), wide=True) == STUCK.summary
    assert progress_cell(run(progress=STUCK), wide=False) == "no_poller"
    assert progress_cell(run(), wide=True) == "-"
    assert progress_cell(run(status=RunStatus.FAILED, progress=STUCK), wide=True) == "-"

    waiting = run(run_id="run-2", status=RunStatus.WAITING, waiting=WaitInfo("signal", "approve", None, 0, 0))
    served["value"] = [run(progress=STUCK), waiting]
    listed = CliRunner().invoke(cmo.cli.main, ["runs", "list"], env={"COLUMNS": "40"})
    assert listed.exit_code == 0, listed.output
    header, first, second = listed.output.splitlines()
    assert header.split() == ["run", "id", "graph", "status", "steps", "node", "progress", "created"]
    assert first.startswith("run-1 ")
    assert STUCK.summary in first  # piped: the whole summary, on the run's line
    assert second.startswith("run-2 ")
    assert "WAITING (signal approve)" in second


def test_output_formats_and_json_as_a_synonym(served):
    served["value"] = [run(progress=STUCK), run(run_id="run-2")]
    as_json = CliRunner().invoke(cmo.cli.main, ["runs", "list", "--json"]).output
    assert as_json == CliRunner().invoke(cmo.cli.main, ["runs", "list", "--output", "json"]).output
    rows = [json.loads(line) for line in as_json.splitlines()]
    assert [(r["run_id"], r["status"]) for r in rows] == [("run-1", "PENDING"), ("run-2", "PENDING")]
    assert rows[0]["progress"]["summary"] == STUCK.summary
    assert yaml.safe_load(CliRunner().invoke(cmo.cli.main, ["runs", "list", "-o", "yaml"]).output) == rows
    bad = CliRunner().invoke(cmo.cli.main, ["runs", "list", "-o", "xml"])
    assert bad.exit_code == 2


def test_piped_tables_keep_each_row_on_one_line(capsys):
    long = "WAITING (signal a-very-long-signal-name-that-would-wrap-at-forty-columns)"
    print_table(("run id", "status"), [["r1", long], ["r2", Text("FAILED", style="red")], ["r3", "[b]as is[/b]"]])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert lines[1].split(None, 1) == ["r1", long]
    assert lines[2].split() == ["r2", "FAILED"]  # styles are for terminals
    assert lines[3].split(None, 1) == ["r3", "[b]as is[/b]"]  # and text is never markup


def test_a_step_resumed_after_a_wait_is_not_shown_as_a_retry():
    assert attempts(step(1)) == "1"
    assert attempts(step(2, ("signal", 1))) == "2 (resumed)"
    assert attempts(step(3, ("call", 1), ("signal", 2))) == "3 (1 retry, resumed)"
    assert attempts(step(3)) == "3 (2 retries)"
    assert attempts(step(3, ("signal", 1), ("timer", 2))) == "3 (resumed 2x)"


def test_status_lines_say_what_happened():
    waiting = run(status=RunStatus.WAITING, waiting=WaitInfo("signal", "approve", None, 1, 0))
    line, ok = cancel_line(waiting, replace(waiting, cancel_requested=True))
    assert ok
    assert line.startswith("run run-1 was WAITING for signal 'approve'")
    assert "it will be cancelled" in line

    running = run(status=RunStatus.RUNNING)
    line, ok = cancel_line(running, replace(running, cancel_requested=True))
    assert ok
    assert "RUNNING at step 1 (review): it will be cancelled when its node next calls ctx" in line

    ended = run(status=RunStatus.COMPLETED, current_node="")
    assert cancel_line(ended, ended) == ("run run-1 had already ended COMPLETED: nothing to cancel", False)
    assert terminate_line(ended, ended)[1] is False

    line, ok = terminate_line(waiting, replace(waiting, status=RunStatus.TERMINATED, current_node=""))
    assert ok
    assert line == "run run-1 TERMINATED at step 1 (review), waiting for signal 'approve' (step 1, seq 0)"


def test_replay_shows_the_state_diff_and_http_bodies_as_text():
    diff = state_diff({"log": ["a", "b"], "n": 1}, {"log": ["a", "c"], "n": 1})
    changed = [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert changed == ['-    "b"', '+    "c"']

    def http(body: bytes) -> RecordedActivity:
        record = {"status": 200, "headers": {}, "body": base64.b64encode(body).decode()}
        return RecordedActivity(0, "http", "GET", "h", record, None, 1)

    assert shown_result(http(b'{"count": 3}'))["body"] == '{"count": 3}'
    assert shown_result(http(b"\x89PNG\r\n\x1a\n\x00"))["body"] == base64.b64encode(b"\x89PNG\r\n\x1a\n\x00").decode()
    plain = RecordedActivity(0, "call", "x", "h", {"body": "aGk="}, None, 1)
    assert shown_result(plain) == {"body": "aGk="}  # not an HTTP record: as recorded


def test_an_unfinished_runs_progress_survives_export_and_import():
    history = RunHistory(run(progress=replace(STUCK, until=T0, last_poll=T0)), (step(1),))
    assert RunHistory.from_json(json.loads(history.dumps())) == history
    assert "progress" not in RunHistory(run(), ()).to_json()["run"]  # as histories were before there was progress
