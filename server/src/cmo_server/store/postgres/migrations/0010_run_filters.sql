-- ListRuns filtered by graph, or by graph and status, reads its first page from an index in that
-- order, however rarely the filter matches: the namespace's newest-first index alone walks every
-- run until it has a page. A run's status changes two or three times in its life (never per step),
-- so these indexes leave the per-step updates of a run as they were. (No index leads with the
-- status alone: the planner could take it for a claim's update of one PENDING run, and with
-- stale statistics scan every pending run of the namespace to find it.)
CREATE INDEX runs_newest_by_graph ON runs (namespace, graph_id, created_at DESC, run_id DESC);
CREATE INDEX runs_newest_by_graph_status ON runs (namespace, graph_id, status, created_at DESC, run_id DESC);
