"""Why an unfinished run is where it is.

No worker polls its queue, its task is leased to a worker until a time, it is retried at a time
after an error, it waits for a signal, a timer or a specialist's reply, it is being cancelled.

Read from the run's current task (`ProgressStore`, its own store protocol) and from who polls
each queue: the pollers this server saw (`PollerBook`, bounded) and the workers the agent
registry knows with their last polls (so a replica that saw no poll still knows of them).
"""

from cmo_server.progress._explain import Progress, ProgressReason, explain
from cmo_server.progress._explainer import Explainer
from cmo_server.progress._pollers import Poller, PollerBook
from cmo_server.progress._store import ProgressStore, TaskSnapshot

__all__ = [
    "Explainer",
    "Poller",
    "PollerBook",
    "Progress",
    "ProgressReason",
    "ProgressStore",
    "TaskSnapshot",
    "explain",
]
