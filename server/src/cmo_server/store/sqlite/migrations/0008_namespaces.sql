-- Namespaces: every resource belongs to one "tenant/project", and its key includes it, so the
-- same run_id or graph_id may be used in two namespaces. What existed before lives in
-- default/default. A task's graph_key names its namespace too ("tenant/project/graph@version"):
-- claims match on (task_queue, graph_key), which keeps namespaces apart.
-- SQLite cannot change a primary key: each table is rebuilt (renamed, created anew, copied).
ALTER TABLE graphs RENAME TO graphs_old;
ALTER TABLE runs RENAME TO runs_old;
ALTER TABLE tasks RENAME TO tasks_old;
ALTER TABLE steps RENAME TO steps_old;
ALTER TABLE activities RENAME TO activities_old;
ALTER TABLE signals RENAME TO signals_old;
ALTER TABLE artifacts RENAME TO artifacts_old;

CREATE TABLE graphs (
    namespace     TEXT    NOT NULL,
    graph_id      TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    definition    TEXT    NOT NULL,
    registered_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, graph_id, version)
);
INSERT INTO graphs SELECT 'default/default', graph_id, version, definition, registered_at FROM graphs_old;

CREATE TABLE runs (
    namespace        TEXT    NOT NULL,
    run_id           TEXT    NOT NULL,
    graph_id         TEXT    NOT NULL,
    graph_version    INTEGER NOT NULL,
    status           INTEGER NOT NULL,
    input            BLOB    NOT NULL,
    seed             INTEGER NOT NULL,
    step_count       INTEGER NOT NULL DEFAULT 0,
    result           BLOB,
    failure          TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    completed_at     INTEGER,
    parent_run_id    TEXT,
    forked_from_step INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    cancel_reason    TEXT,
    trace_context    TEXT,
    PRIMARY KEY (namespace, run_id)
);
INSERT INTO runs
SELECT 'default/default', run_id, graph_id, graph_version, status, input, seed, step_count, result, failure,
       created_at, updated_at, completed_at, parent_run_id, forked_from_step, cancel_requested, cancel_reason,
       trace_context
  FROM runs_old;

-- One row per unfinished run: the task of its current step. visible_at is when the task may be
-- claimed next: now for a fresh task, the lease expiry for a leased one, later for a retry, the
-- largest integer while it waits.
CREATE TABLE tasks (
    namespace    TEXT    NOT NULL,
    run_id       TEXT    NOT NULL,
    step_index   INTEGER NOT NULL,
    node_id      TEXT    NOT NULL,
    task_queue   TEXT    NOT NULL,
    graph_key    TEXT    NOT NULL,
    attempt      INTEGER NOT NULL,
    failures     INTEGER NOT NULL DEFAULT 0,
    visible_at   INTEGER NOT NULL,
    lease_owner  TEXT,
    logical_time INTEGER NOT NULL,
    last_failure TEXT,
    wait_kind    TEXT,
    wait_name    TEXT,
    wait_seq     INTEGER,
    wait_hash    TEXT,
    wait_until   INTEGER,
    PRIMARY KEY (namespace, run_id),
    FOREIGN KEY (namespace, run_id) REFERENCES runs (namespace, run_id)
);
INSERT INTO tasks
SELECT 'default/default', run_id, step_index, node_id, task_queue, 'default/default/' || graph_key, attempt,
       failures, visible_at, lease_owner, logical_time, last_failure, wait_kind, wait_name, wait_seq, wait_hash,
       wait_until
  FROM tasks_old;

CREATE TABLE steps (
    namespace    TEXT    NOT NULL,
    run_id       TEXT    NOT NULL,
    step_index   INTEGER NOT NULL,
    node_id      TEXT    NOT NULL,
    attempt      INTEGER NOT NULL,
    state        BLOB    NOT NULL,
    state_hash   TEXT    NOT NULL,
    output       BLOB    NOT NULL,
    next_key     TEXT    NOT NULL,
    next_node    TEXT    NOT NULL,
    logical_time INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER NOT NULL,
    PRIMARY KEY (namespace, run_id, step_index)
) WITHOUT ROWID;
INSERT INTO steps
SELECT 'default/default', run_id, step_index, node_id, attempt, state, state_hash, output, next_key, next_node,
       logical_time, started_at, finished_at
  FROM steps_old;

CREATE TABLE activities (
    namespace    TEXT    NOT NULL,
    run_id       TEXT    NOT NULL,
    step_index   INTEGER NOT NULL,
    seq          INTEGER NOT NULL,
    kind         TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    request_hash TEXT    NOT NULL,
    result       BLOB,
    error        TEXT,
    attempt      INTEGER NOT NULL,
    recorded_at  INTEGER NOT NULL,
    PRIMARY KEY (namespace, run_id, step_index, seq)
) WITHOUT ROWID;
INSERT INTO activities
SELECT 'default/default', run_id, step_index, seq, kind, name, request_hash, result, error, attempt, recorded_at
  FROM activities_old;

CREATE TABLE signals (
    signal_id     INTEGER PRIMARY KEY,
    namespace     TEXT    NOT NULL,
    run_id        TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    payload       BLOB    NOT NULL,
    request_id    TEXT,
    sent_at       INTEGER NOT NULL,
    consumed_step INTEGER,
    consumed_seq  INTEGER,
    FOREIGN KEY (namespace, run_id) REFERENCES runs (namespace, run_id)
);
INSERT INTO signals
SELECT signal_id, 'default/default', run_id, name, payload, request_id, sent_at, consumed_step, consumed_seq
  FROM signals_old;

CREATE TABLE artifacts (
    namespace  TEXT    NOT NULL,
    run_id     TEXT    NOT NULL,
    digest     TEXT    NOT NULL,
    size       INTEGER NOT NULL,
    media_type TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, run_id, digest)
) WITHOUT ROWID;
INSERT INTO artifacts SELECT 'default/default', run_id, digest, size, media_type, created_at FROM artifacts_old;

-- Children first: a foreign key of an old table still names its old parent.
DROP TABLE tasks_old;
DROP TABLE signals_old;
DROP TABLE runs_old;
DROP TABLE graphs_old;
DROP TABLE steps_old;
DROP TABLE activities_old;
DROP TABLE artifacts_old;

CREATE INDEX runs_newest ON runs (namespace, created_at DESC, run_id DESC);
CREATE INDEX runs_ended ON runs (completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX runs_ended_in_namespace ON runs (namespace, completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX tasks_ready ON tasks (task_queue, graph_key, visible_at);
CREATE INDEX tasks_wait_until ON tasks (wait_until) WHERE wait_until IS NOT NULL;
CREATE INDEX signals_pending ON signals (namespace, run_id, name, signal_id) WHERE consumed_step IS NULL;
CREATE UNIQUE INDEX signals_request ON signals (namespace, run_id, request_id) WHERE request_id IS NOT NULL;
CREATE INDEX signals_by_run ON signals (namespace, run_id);
CREATE INDEX artifacts_by_digest ON artifacts (namespace, digest, created_at);
