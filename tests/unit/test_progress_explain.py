"""The explanation of a run from its task row (pure): the cases a live server passes through too
briefly to catch — a ready step with workers polling, a specialist's reply — and the book of
pollers."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from cmo_server.domain import Namespace, Run, RunStatus
from cmo_server.progress import Poller, PollerBook, ProgressReason, TaskSnapshot, explain

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
NS = Namespace("acme", "web")
RUN = Run(NS, "r-1", "triage", 2, RunStatus.RUNNING, b"{}", 1, 3, "fix", NOW, NOW)
TASK = TaskSnapshot(
    "r-1", 3, "fix", "default", "acme/web/triage@2", 0, 0, NOW - timedelta(seconds=5), None, None, None, None, None, NOW
)
RECENT = timedelta(seconds=90)


def test_a_ready_step_with_workers_polling_counts_them_but_not_the_one_whose_lease_lapsed():
    pollers = [
        Poller("w1", "default", ("acme/web/triage@2",), NOW - timedelta(seconds=2)),
        Poller("w2", "default", ("acme/web/triage@2",), NOW - timedelta(seconds=30)),
        Poller("w3", "default", ("acme/web/triage@2",), NOW - timedelta(minutes=10)),  # too long ago
    ]
    progress = explain(RUN, TASK, pollers, recent=RECENT)
    assert progress is not None
    assert progress.reason is ProgressReason.READY
    assert progress.summary == "step 3 (fix) is ready on queue 'default': 2 worker(s) poll it for triage@2"
    assert progress.pollers == 2
    lapsed = replace(TASK, lease_owner="w1@team-a", attempt=1)
    progress = explain(RUN, lapsed, pollers, recent=RECENT)
    assert progress is not None
    assert progress.pollers == 1
    assert progress.summary.endswith("1 worker(s) poll it for triage@2; worker w1@team-a's lease lapsed 5.0 s ago")


def test_no_poller_says_when_one_last_polled():
    old = [Poller("w3", "default", ("acme/web/triage@2",), NOW - timedelta(minutes=10))]
    progress = explain(RUN, TASK, old, recent=RECENT)
    assert progress is not None
    assert progress.reason is ProgressReason.NO_POLLER
    assert progress.summary == (
        "no worker polls queue 'default' for triage@2: step 3 (fix) is ready (last poll 10 min ago)"
    )
    assert progress.last_poll == NOW - timedelta(minutes=10)


def test_a_step_waiting_for_a_specialists_reply_says_so():
    waiting = replace(TASK, visible_at=None, wait_kind="signal", wait_name="a2a." + "ab" * 32, wait_until=None)
    progress = explain(replace(RUN, status=RunStatus.WAITING), waiting, [], recent=RECENT)
    assert progress is not None
    assert progress.reason is ProgressReason.SPECIALIST
    assert progress.summary == f"step 3 (fix) waits for a specialist's reply to a2a.{'ab' * 18}, with no time-out"


def test_an_ended_run_or_one_without_a_task_has_none():
    assert explain(replace(RUN, status=RunStatus.COMPLETED), TASK, [], recent=RECENT) is None
    assert explain(RUN, None, [], recent=RECENT) is None


def test_the_book_keeps_the_latest_poll_per_worker_and_queue_and_forgets_the_oldest():
    book = PollerBook(max_pollers=3)
    book.polled(NS, "w1", ["a", "b"], ["acme/web/g@1"])
    book.polled(NS, "w2", ["a"], ["acme/web/g@2"])
    assert [p.worker_id for p in book.of(NS, "a", "acme/web/g@1")] == ["w1"]
    assert [p.worker_id for p in book.of(NS, "a", "acme/web/g@2")] == ["w2"]
    assert book.of(Namespace("other", "web"), "a", "acme/web/g@1") == []
    book.polled(NS, "w3", ["c"], ["acme/web/g@1"])  # a fourth pair: (w1, a), the oldest, goes
    assert book.of(NS, "a", "acme/web/g@1") == []
    assert [p.worker_id for p in book.of(NS, "b", "acme/web/g@1")] == ["w1"]
