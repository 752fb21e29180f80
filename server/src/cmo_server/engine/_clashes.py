"""Whether a run found under a requested id is the run the request would have made.

StartRun and ForkRun are idempotent on the id the caller chooses: the same request again gets
the run it made. Any other run under that id is a clash (ALREADY_EXISTS), never an answer.
"""

from __future__ import annotations

from cmo_server.domain import NewFork, Run, Step
from cmo_server.errors import AlreadyExists, shown

__all__ = ["check_same_fork", "check_same_start"]


def check_same_start(run: Run, *, graph_id: str, graph_version: int, input: bytes) -> None:
    """Refuse `run` unless it is the start of `graph_id` at `graph_version` with `input`.

    `input` is canonical, so spellings of the same JSON agree. A `graph_version` of 0 (the
    newest) names no version to disagree with: its retry after a newer version was registered
    is still the same start.

    Raises:
        AlreadyExists: naming run_id.
    """
    name = f"run_id: run {shown(run.run_id)} exists"
    if run.parent_run_id:
        raise AlreadyExists(f"{name} as a fork of run {shown(run.parent_run_id)}")
    if run.graph_id != graph_id or graph_version not in (0, run.graph_version):
        raise AlreadyExists(f"{name} as a run of graph {shown(run.graph_id)} version {run.graph_version}")
    if run.input != input:
        raise AlreadyExists(f"{name} with another input")


def check_same_fork(run: Run, fork: NewFork, *, source_state_hash: str, shared: Step | None) -> None:
    """Refuse `run` unless it is `fork`: of the same run, at the same step, from the same state.

    `shared` is the run's step `fork.from_step`: its state must be the fork's edit or, without
    one, the source's (`source_state_hash`).

    Raises:
        AlreadyExists: naming new_run_id.
    """
    name = f"new_run_id: run {shown(run.run_id)} exists"
    if (run.parent_run_id, run.forked_from_step) != (fork.source_run_id, fork.from_step):
        raise AlreadyExists(f"{name} and is not a fork of run {shown(fork.source_run_id)} at step {fork.from_step}")
    if shared is None or shared.state_hash != (fork.state_hash or source_state_hash):
        raise AlreadyExists(f"{name}, forked with another state at step {fork.from_step}")
