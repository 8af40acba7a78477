-- Schedules: each a row with its spec (JSON, as the API shows it) and its state. A fired
-- job names its fire in jobs.schedule; its idempotency key (unique since version 1) is
-- the fire, so one fire never makes two jobs.
ALTER TABLE jobs ADD COLUMN schedule TEXT;

CREATE TABLE schedules (
    name          TEXT PRIMARY KEY,
    spec          TEXT NOT NULL,
    paused        INTEGER NOT NULL,
    next_fire_at  INTEGER NOT NULL,
    last_fire_at  INTEGER,
    last_job_id   TEXT,
    recent        TEXT NOT NULL,
    counts        TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE NOT paused;
