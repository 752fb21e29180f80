-- Waits: a suspended step's task is unleased and never visible (visible_at is the largest
-- integer) until a signal, a cancellation or its wait_until ends the wait.
ALTER TABLE tasks ADD COLUMN wait_kind TEXT;
ALTER TABLE tasks ADD COLUMN wait_name TEXT;
ALTER TABLE tasks ADD COLUMN wait_seq INTEGER;
ALTER TABLE tasks ADD COLUMN wait_hash TEXT;
ALTER TABLE tasks ADD COLUMN wait_until INTEGER;
CREATE INDEX tasks_wait_until ON tasks (wait_until) WHERE wait_until IS NOT NULL;

ALTER TABLE runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN cancel_reason TEXT;

-- Signals sent to a run, kept until a wait of that name takes them, oldest first.
CREATE TABLE signals (
    signal_id     INTEGER PRIMARY KEY,
    run_id        TEXT    NOT NULL REFERENCES runs (run_id),
    name          TEXT    NOT NULL,
    payload       BLOB    NOT NULL,
    request_id    TEXT,
    sent_at       INTEGER NOT NULL,
    consumed_step INTEGER,
    consumed_seq  INTEGER
);
CREATE INDEX signals_pending ON signals (run_id, name, signal_id) WHERE consumed_step IS NULL;
CREATE UNIQUE INDEX signals_request ON signals (run_id, request_id) WHERE request_id IS NOT NULL;
