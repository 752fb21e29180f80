-- Retention: ended runs are found by when they ended; a run's signals are deleted with it.
CREATE INDEX runs_ended ON runs (completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX signals_by_run ON signals (run_id);
