-- The activity log: each recorded side effect of a step, first writer wins per (step, seq).
CREATE TABLE activities (
    run_id       text        NOT NULL,
    step_index   integer     NOT NULL,
    seq          integer     NOT NULL,
    kind         text        NOT NULL,
    name         text        NOT NULL,
    request_hash text        NOT NULL,
    result       bytea,
    error        text,
    attempt      integer     NOT NULL,
    recorded_at  timestamptz NOT NULL,
    PRIMARY KEY (run_id, step_index, seq)
);
