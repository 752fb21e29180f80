-- The W3C Trace Context of the call that started the run (JSON object), carried by its tasks.
ALTER TABLE runs ADD COLUMN trace_context text;
