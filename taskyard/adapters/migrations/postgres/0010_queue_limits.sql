-- taskyard PostgreSQL schema: flow control (`taskyard/domain/flow.py`): a queue's limits,
-- a job's concurrency key, each rate-limited queue's starts log.

ALTER TABLE taskyard.jobs ADD COLUMN concurrency_key text;

-- What counts against the limits: the running jobs of a queue by key (the lease's expiry
-- is compared by the query: an expired lease counts no more, before the reaper runs).
CREATE INDEX jobs_running_by_key ON taskyard.jobs (queue, concurrency_key, lease_expires_at)
    WHERE state = 'running';

-- One row per queue with limits; a queue without any has none, and its claims lock
-- nothing. A governed queue's claim locks its row (FOR UPDATE, in queue-name order):
-- that serialises the claims of a governed queue. `turn_after`: the key ('' for the jobs
-- without one) its last claim served last; the next claim's turns start after it.
CREATE TABLE taskyard.queue_settings (
    queue                 text PRIMARY KEY,
    concurrency_limit     integer CHECK (concurrency_limit >= 1),
    key_concurrency_limit integer CHECK (key_concurrency_limit >= 1),
    rate_count            integer CHECK (rate_count >= 1),
    rate_period_s         double precision CHECK (rate_period_s > 0),
    key_rate_count        integer CHECK (key_rate_count >= 1),
    key_rate_period_s     double precision CHECK (key_rate_period_s > 0),
    weight                integer NOT NULL DEFAULT 1 CHECK (weight >= 1),
    turn_after            text,
    CHECK ((rate_count IS NULL) = (rate_period_s IS NULL)),
    CHECK ((key_rate_count IS NULL) = (key_rate_period_s IS NULL))
);

-- The starts (claims) of each rate-limited queue within its longest period: the claim
-- that records starts deletes the older ones, so the log holds one period at most.
CREATE TABLE taskyard.queue_starts (
    queue           text NOT NULL,
    concurrency_key text,
    started_at      timestamptz NOT NULL
);
CREATE INDEX queue_starts_by_time ON taskyard.queue_starts (queue, started_at);
