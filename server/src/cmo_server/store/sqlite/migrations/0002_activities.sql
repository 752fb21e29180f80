-- The activity log: each recorded side effect of a step, first writer wins per (step, seq).
CREATE TABLE activities (
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
    PRIMARY KEY (run_id, step_index, seq)
) WITHOUT ROWID;
