-- Namespaces: every resource belongs to one "tenant/project", and its key includes it, so the
-- same run_id or graph_id may be used in two namespaces. What existed before lives in
-- default/default. A task's graph_key names its namespace too ("tenant/project/graph@version"):
-- claims and wake-ups match on (task_queue, graph_key), which keeps namespaces apart without
-- another column in the claim's index.
ALTER TABLE tasks DROP CONSTRAINT tasks_run_id_fkey;
ALTER TABLE signals DROP CONSTRAINT signals_run_id_fkey;

ALTER TABLE graphs ADD COLUMN namespace text NOT NULL DEFAULT 'default/default';
ALTER TABLE graphs DROP CONSTRAINT graphs_pkey, ADD PRIMARY KEY (namespace, graph_id, version);

ALTER TABLE runs ADD COLUMN namespace text NOT NULL DEFAULT 'default/default';
ALTER TABLE runs DROP CONSTRAINT runs_pkey, ADD PRIMARY KEY (namespace, run_id);
DROP INDEX runs_newest;
CREATE INDEX runs_newest ON runs (namespace, created_at DESC, run_id DESC);
-- Retention of one namespace (PruneRuns) and of all of them (the schedule).
DROP INDEX runs_ended;
CREATE INDEX runs_ended ON runs (completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX runs_ended_in_namespace ON runs (namespace, completed_at) WHERE completed_at IS NOT NULL;

ALTER TABLE tasks ADD COLUMN namespace text NOT NULL DEFAULT 'default/default';
ALTER TABLE tasks DROP CONSTRAINT tasks_pkey, ADD PRIMARY KEY (namespace, run_id);
UPDATE tasks SET graph_key = 'default/default/' || graph_key;
ALTER TABLE tasks ADD FOREIGN KEY (namespace, run_id) REFERENCES runs (namespace, run_id);

ALTER TABLE steps ADD COLUMN namespace text NOT NULL DEFAULT 'default/default';
ALTER TABLE steps DROP CONSTRAINT steps_pkey, ADD PRIMARY KEY (namespace, run_id, step_index);

ALTER TABLE activities ADD COLUMN namespace text NOT NULL DEFAULT 'default/default';
ALTER TABLE activities DROP CONSTRAINT activities_pkey, ADD PRIMARY KEY (namespace, run_id, step_index, seq);

ALTER TABLE signals ADD COLUMN namespace text NOT NULL DEFAULT 'default/default';
ALTER TABLE signals ADD FOREIGN KEY (namespace, run_id) REFERENCES runs (namespace, run_id);
DROP INDEX signals_pending;
DROP INDEX signals_request;
DROP INDEX signals_by_run;
CREATE INDEX signals_pending ON signals (namespace, run_id, name, signal_id) WHERE consumed_step IS NULL;
CREATE UNIQUE INDEX signals_request ON signals (namespace, run_id, request_id) WHERE request_id IS NOT NULL;
CREATE INDEX signals_by_run ON signals (namespace, run_id);

ALTER TABLE artifacts ADD COLUMN namespace text NOT NULL DEFAULT 'default/default';
ALTER TABLE artifacts DROP CONSTRAINT artifacts_pkey, ADD PRIMARY KEY (namespace, run_id, digest);
DROP INDEX artifacts_by_digest;
CREATE INDEX artifacts_by_digest ON artifacts (namespace, digest, created_at);

-- From now on every write names its namespace.
ALTER TABLE graphs ALTER COLUMN namespace DROP DEFAULT;
ALTER TABLE runs ALTER COLUMN namespace DROP DEFAULT;
ALTER TABLE tasks ALTER COLUMN namespace DROP DEFAULT;
ALTER TABLE steps ALTER COLUMN namespace DROP DEFAULT;
ALTER TABLE activities ALTER COLUMN namespace DROP DEFAULT;
ALTER TABLE signals ALTER COLUMN namespace DROP DEFAULT;
ALTER TABLE artifacts ALTER COLUMN namespace DROP DEFAULT;

-- A run's end is announced with its namespace: "tenant/project<TAB>run_id".
CREATE OR REPLACE FUNCTION cmo_notify_run_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cmo_run_ended', NEW.namespace || E'\t' || NEW.run_id);
    RETURN NULL;
END
$$;
