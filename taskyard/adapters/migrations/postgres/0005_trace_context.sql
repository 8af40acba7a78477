-- The trace a job was enqueued in (W3C traceparent and tracestate, as a JSON object of
-- text), so that its attempts' spans are children of that trace; NULL without one.
ALTER TABLE taskyard.jobs ADD COLUMN trace_context jsonb;
