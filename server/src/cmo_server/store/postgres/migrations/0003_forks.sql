-- A fork records the run it was forked from and the last step it shares with it.
ALTER TABLE runs ADD COLUMN parent_run_id text;
ALTER TABLE runs ADD COLUMN forked_from_step integer;
