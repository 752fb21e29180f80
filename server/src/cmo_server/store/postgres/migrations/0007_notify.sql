-- Push instead of polling. When a task becomes claimable (now, or at a later time: a retry's
-- back-off) and when a wait is set, every server listening on this database is told at commit:
-- a worker long-polling one server is woken when another enqueues its task, and a timer set by a
-- server that then dies still fires on time elsewhere. A run that ends wakes WaitRun calls on
-- every server.
CREATE FUNCTION cmo_notify_task_ready() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(
        'cmo_task_ready',
        NEW.task_queue || E'\t' || NEW.graph_key || E'\t' || extract(epoch FROM NEW.visible_at)::text
    );
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_notify_ready AFTER INSERT OR UPDATE ON tasks FOR EACH ROW
    WHEN (NEW.lease_owner IS NULL AND NEW.visible_at < 'infinity')
    EXECUTE FUNCTION cmo_notify_task_ready();

CREATE FUNCTION cmo_notify_wait_set() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cmo_wait_set', extract(epoch FROM NEW.wait_until)::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_notify_wait AFTER UPDATE OF wait_until ON tasks FOR EACH ROW
    WHEN (NEW.wait_until IS NOT NULL AND NEW.wait_until IS DISTINCT FROM OLD.wait_until)
    EXECUTE FUNCTION cmo_notify_wait_set();

CREATE FUNCTION cmo_notify_run_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cmo_run_ended', NEW.run_id);
    RETURN NULL;
END
$$;

-- Statuses 4 and above are the terminal ones (COMPLETED, FAILED, CANCELLED, TERMINATED).
CREATE TRIGGER runs_notify_ended AFTER UPDATE OF status ON runs FOR EACH ROW
    WHEN (NEW.status >= 4 AND OLD.status < 4)
    EXECUTE FUNCTION cmo_notify_run_ended();
