-- Retention overrides: a queue's own period for a finished state, in seconds (0: kept
-- forever); a state without a row follows the scheduler's setting.
CREATE TABLE queue_retention (
    queue       TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('succeeded', 'dead', 'cancelled')),
    retention_s INTEGER NOT NULL CHECK (retention_s >= 0),
    PRIMARY KEY (queue, state)
);
