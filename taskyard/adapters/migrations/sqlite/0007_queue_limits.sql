-- Flow control (`taskyard/domain/flow.py`): a queue's limits, a job's concurrency key,
-- and each rate-limited queue's starts log.

ALTER TABLE jobs ADD COLUMN concurrency_key TEXT;

-- What counts against the limits: running jobs by queue and key (live or not: the lease's
-- expiry is compared by the query).
CREATE INDEX jobs_running_by_key ON jobs (queue, concurrency_key, lease_expires_at)
    WHERE state = 'running';

-- A governed queue's claim: its keys (a walk from key to key) and each key's first jobs.
CREATE INDEX jobs_claim_key ON jobs (queue, concurrency_key, priority DESC, run_at, id)
    WHERE state = 'queued';

-- One row per queue with limits; a queue without any has none. `turn_after` is the key
-- (''  for the jobs without one) the queue's last governed claim served last.
CREATE TABLE queue_settings (
    queue                 TEXT PRIMARY KEY,
    concurrency_limit     INTEGER CHECK (concurrency_limit >= 1),
    key_concurrency_limit INTEGER CHECK (key_concurrency_limit >= 1),
    rate_count            INTEGER CHECK (rate_count >= 1),
    rate_period_s         REAL CHECK (rate_period_s > 0),
    key_rate_count        INTEGER CHECK (key_rate_count >= 1),
    key_rate_period_s     REAL CHECK (key_rate_period_s > 0),
    weight                INTEGER NOT NULL DEFAULT 1 CHECK (weight >= 1),
    turn_after            TEXT,
    CHECK ((rate_count IS NULL) = (rate_period_s IS NULL)),
    CHECK ((key_rate_count IS NULL) = (key_rate_period_s IS NULL))
);

-- The starts (claims) of each rate-limited queue within its longest period: a claim that
-- records starts drops the older ones, so the log holds at most one period of them.
CREATE TABLE queue_starts (
    queue           TEXT NOT NULL,
    concurrency_key TEXT,
    started_at      INTEGER NOT NULL
);
CREATE INDEX queue_starts_by_time ON queue_starts (queue, started_at);
-- One key's starts (why a job waits), without the other keys' of the longest period.
CREATE INDEX queue_starts_by_key ON queue_starts (queue, concurrency_key, started_at);
