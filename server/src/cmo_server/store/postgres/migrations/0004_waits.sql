-- Waits: a suspended step's task is unleased and never visible (visible_at is 'infinity') until
-- a signal, a cancellation or its wait_until ends the wait.
ALTER TABLE tasks ADD COLUMN wait_kind text;
ALTER TABLE tasks ADD COLUMN wait_name text;
ALTER TABLE tasks ADD COLUMN wait_seq integer;
ALTER TABLE tasks ADD COLUMN wait_hash text;
ALTER TABLE tasks ADD COLUMN wait_until timestamptz;
CREATE INDEX tasks_wait_until ON tasks (wait_until) WHERE wait_until IS NOT NULL;

ALTER TABLE runs ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false;
ALTER TABLE runs ADD COLUMN cancel_reason text;

-- Signals sent to a run, kept until a wait of that name takes them, oldest first.
CREATE TABLE signals (
    signal_id     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id        text        NOT NULL REFERENCES runs (run_id),
    name          text        NOT NULL,
    payload       bytea       NOT NULL,
    request_id    text,
    sent_at       timestamptz NOT NULL,
    consumed_step integer,
    consumed_seq  integer
);
CREATE INDEX signals_pending ON signals (run_id, name, signal_id) WHERE consumed_step IS NULL;
CREATE UNIQUE INDEX signals_request ON signals (run_id, request_id) WHERE request_id IS NOT NULL;
