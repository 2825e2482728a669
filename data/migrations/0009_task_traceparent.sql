-- The W3C trace context a task was submitted in (docs/observability.md, Traces): its runs, and the
-- requests of its `http` runs, join that trace. Always the version 00 form, 55 characters; NULL when
-- the submit carried none and the scheduler exported no spans. A nullable column without a default:
-- adding it rewrites nothing.
ALTER TABLE tasks
    ADD COLUMN traceparent text
    CONSTRAINT tasks_traceparent_w3c CHECK (traceparent ~ '^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$');
