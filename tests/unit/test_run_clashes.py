"""Whether a run found under a requested id is the one the request would have made."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from cmo_server.domain import DEFAULT_NAMESPACE, NewFork, Run, RunStatus, Step
from cmo_server.engine._clashes import check_same_fork, check_same_start
from cmo_server.errors import AlreadyExists

NOW = datetime(2026, 1, 1, tzinfo=UTC)
RUN = Run(DEFAULT_NAMESPACE, "r1", "g", 2, RunStatus.RUNNING, b'{"n":1}', 7, 0, "a", NOW, NOW)
FORK = NewFork(DEFAULT_NAMESPACE, "src", 3, "f1", state=None, state_hash=None, next_node="b", next_queue="default")
FORKED = replace(RUN, run_id="f1", parent_run_id="src", forked_from_step=3)


def step(state_hash: str) -> Step:
    return Step("f1", 3, "a", 1, b"{}", state_hash, b"", "next", "b", NOW, NOW, NOW)


@pytest.mark.parametrize("version", [2, 0])
def test_the_same_start_again_is_no_clash(version: int) -> None:
    check_same_start(RUN, graph_id="g", graph_version=version, input=b'{"n":1}')


@pytest.mark.parametrize(
    ("run", "graph_id", "version", "input", "reason"),
    [
        (RUN, "other", 0, b'{"n":1}', "as a run of graph 'g' version 2"),
        (RUN, "g", 1, b'{"n":1}', "as a run of graph 'g' version 2"),
        (RUN, "g", 2, b'{"n":2}', "with another input"),
        (FORKED, "g", 2, b'{"n":1}', "as a fork of run 'src'"),
    ],
)
def test_another_run_under_the_id_is_a_clash_naming_run_id(
    run: Run, graph_id: str, version: int, input: bytes, reason: str
) -> None:
    with pytest.raises(AlreadyExists, match=f"^run_id: run '{run.run_id}' exists {reason}"):
        check_same_start(run, graph_id=graph_id, graph_version=version, input=input)


def test_the_same_fork_again_is_no_clash() -> None:
    check_same_fork(FORKED, FORK, source_state_hash="s", shared=step("s"))
    edited = replace(FORK, state=b"{}", state_hash="e")
    check_same_fork(FORKED, edited, source_state_hash="s", shared=step("e"))


@pytest.mark.parametrize(
    ("run", "fork", "shared", "reason"),
    [
        (RUN, FORK, step("s"), "is not a fork of run 'src' at step 3"),
        (replace(FORKED, forked_from_step=2), FORK, step("s"), "is not a fork of run 'src' at step 3"),
        (FORKED, FORK, step("e"), "forked with another state"),  # edited then, not now
        (FORKED, replace(FORK, state=b"{}", state_hash="e2"), step("e"), "forked with another state"),
        (FORKED, FORK, None, "forked with another state"),
    ],
)
def test_another_run_under_the_fork_id_is_a_clash_naming_new_run_id(
    run: Run, fork: NewFork, shared: Step | None, reason: str
) -> None:
    with pytest.raises(AlreadyExists, match=f"^new_run_id: run '{run.run_id}' exists.*{reason}"):
        check_same_fork(run, fork, source_state_hash="s", shared=shared)
