-- Schedules: each a row with its spec (JSON, as the API shows it) and its state. A fired
-- job names its fire in jobs.schedule; its idempotency key (unique since version 1) is
-- the fire, so one fire never makes two jobs.
ALTER TABLE taskyard.jobs ADD COLUMN schedule jsonb;

CREATE TABLE taskyard.schedules (
    name          text PRIMARY KEY,
    spec          jsonb NOT NULL,
    paused        boolean NOT NULL,
    next_fire_at  timestamptz NOT NULL,
    last_fire_at  timestamptz,
    last_job_id   uuid,
    recent        jsonb NOT NULL,
    counts        jsonb NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

-- The firing pass: unpaused schedules by next fire.
CREATE INDEX schedules_due ON taskyard.schedules (next_fire_at) WHERE NOT paused;
