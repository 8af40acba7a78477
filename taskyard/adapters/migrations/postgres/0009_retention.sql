-- taskyard PostgreSQL schema: retention overrides, a queue's own period for a finished
-- state in seconds (0: kept forever); a state without a row follows the scheduler's
-- setting. The prune itself needs no new index: it walks jobs_finished (finished_at) and
-- looks each candidate's dependents up in dependencies_depends_on.
CREATE TABLE taskyard.queue_retention (
    queue       text NOT NULL,
    state       text NOT NULL CHECK (state IN ('succeeded', 'dead', 'cancelled')),
    retention_s bigint NOT NULL CHECK (retention_s >= 0),
    PRIMARY KEY (queue, state)
);
