CREATE TABLE graphs (
    graph_id      text        NOT NULL,
    version       integer     NOT NULL,
    -- Canonical JSON kept as text: registration compares it byte for byte.
    definition    text        NOT NULL,
    registered_at timestamptz NOT NULL,
    PRIMARY KEY (graph_id, version)
);

CREATE TABLE runs (
    run_id        text        PRIMARY KEY,
    graph_id      text        NOT NULL,
    graph_version integer     NOT NULL,
    status        smallint    NOT NULL,
    input         bytea       NOT NULL,
    seed          bigint      NOT NULL,
    step_count    integer     NOT NULL DEFAULT 0,
    result        bytea,
    failure       text,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    completed_at  timestamptz
);
CREATE INDEX runs_newest ON runs (created_at DESC, run_id DESC);

-- One row per unfinished run: the task of its current step. visible_at is when the task may be
-- claimed next: now for a fresh task, the lease expiry for a leased one, later for a retry.
CREATE TABLE tasks (
    run_id       text        PRIMARY KEY REFERENCES runs (run_id),
    step_index   integer     NOT NULL,
    node_id      text        NOT NULL,
    task_queue   text        NOT NULL,
    graph_key    text        NOT NULL,
    attempt      integer     NOT NULL,
    failures     integer     NOT NULL DEFAULT 0,
    visible_at   timestamptz NOT NULL,
    lease_owner  text,
    logical_time timestamptz NOT NULL,
    last_failure text
);
CREATE INDEX tasks_ready ON tasks (task_queue, graph_key, visible_at);

CREATE TABLE steps (
    run_id       text        NOT NULL,
    step_index   integer     NOT NULL,
    node_id      text        NOT NULL,
    attempt      integer     NOT NULL,
    state        bytea       NOT NULL,
    state_hash   text        NOT NULL,
    output       bytea       NOT NULL,
    next_key     text        NOT NULL,
    next_node    text        NOT NULL,
    logical_time timestamptz NOT NULL,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL,
    PRIMARY KEY (run_id, step_index)
);
