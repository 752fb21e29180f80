CREATE TABLE graphs (
    graph_id      TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    definition    TEXT    NOT NULL,
    registered_at INTEGER NOT NULL,
    PRIMARY KEY (graph_id, version)
);

CREATE TABLE runs (
    run_id        TEXT    PRIMARY KEY,
    graph_id      TEXT    NOT NULL,
    graph_version INTEGER NOT NULL,
    status        INTEGER NOT NULL,
    input         BLOB    NOT NULL,
    seed          INTEGER NOT NULL,
    step_count    INTEGER NOT NULL DEFAULT 0,
    result        BLOB,
    failure       TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    completed_at  INTEGER
);
CREATE INDEX runs_newest ON runs (created_at DESC, run_id DESC);

-- One row per unfinished run: the task of its current step. visible_at is when the task may be
-- claimed next: now for a fresh task, the lease expiry for a leased one, later for a retry.
CREATE TABLE tasks (
    run_id       TEXT    PRIMARY KEY REFERENCES runs (run_id),
    step_index   INTEGER NOT NULL,
    node_id      TEXT    NOT NULL,
    task_queue   TEXT    NOT NULL,
    graph_key    TEXT    NOT NULL,
    attempt      INTEGER NOT NULL,
    failures     INTEGER NOT NULL DEFAULT 0,
    visible_at   INTEGER NOT NULL,
    lease_owner  TEXT,
    logical_time INTEGER NOT NULL,
    last_failure TEXT
);
CREATE INDEX tasks_ready ON tasks (task_queue, graph_key, visible_at);

CREATE TABLE steps (
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
    PRIMARY KEY (run_id, step_index)
) WITHOUT ROWID;
