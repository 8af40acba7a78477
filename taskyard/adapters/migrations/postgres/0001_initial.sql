-- taskyard PostgreSQL schema, version 1. Applied by `taskyard migrate`, which records
-- each version in taskyard.schema_migrations. Everything lives in the schema `taskyard`,
-- so the tables can share a database with the application that enqueues jobs.

CREATE TABLE taskyard.jobs (
    id               uuid PRIMARY KEY,
    task             text NOT NULL,
    args             jsonb NOT NULL,
    queue            text NOT NULL,
    priority         integer NOT NULL,
    run_at           timestamptz NOT NULL,
    max_attempts     integer NOT NULL,
    backoff          jsonb NOT NULL,
    timeout_s        double precision,
    idempotency_key  text,
    depends_on       uuid[] NOT NULL DEFAULT '{}',
    state            text NOT NULL,
    attempt          integer NOT NULL,
    attempt_limit    integer NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    finished_at      timestamptz,
    lease_worker     text,
    lease_expires_at timestamptz,
    cancel_requested boolean NOT NULL DEFAULT false,
    checkpoint       jsonb,
    result           jsonb,
    last_error       jsonb,
    correlation_id   text,
    fingerprint      text,
    CONSTRAINT jobs_state_known CHECK (state IN
        ('scheduled', 'queued', 'running', 'retrying', 'succeeded', 'dead', 'cancelled')),
    CONSTRAINT jobs_lease_whole CHECK ((lease_worker IS NULL) = (lease_expires_at IS NULL)),
    CONSTRAINT jobs_lease_only_running CHECK (lease_worker IS NULL OR state = 'running')
) WITH (fillfactor = 90);
-- fillfactor: room on each page, so that a heartbeat (which changes no indexed column)
-- can be a HOT update that writes no index entry.

ALTER TABLE taskyard.jobs SET (autovacuum_vacuum_scale_factor = 0.02,
                               autovacuum_analyze_scale_factor = 0.02);

-- An idempotency key is global and lasts as long as its job.
CREATE UNIQUE INDEX jobs_idempotency_key ON taskyard.jobs (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- The claim path. Both are partial on state = 'queued': terminal jobs (nearly all rows of
-- a long-lived table) are not in them, and a job leaves them when it is claimed.
-- Every queue (a worker without --queues), in claim order:
CREATE INDEX jobs_claim ON taskyard.jobs (priority DESC, run_at, id)
    WHERE state = 'queued';
-- One queue at a time (a worker with --queues scans each of its queues in claim order):
CREATE INDEX jobs_claim_queue ON taskyard.jobs (queue, priority DESC, run_at, id)
    WHERE state = 'queued';

-- promote_due and next_wakeup: waiting jobs by run_at.
CREATE INDEX jobs_waiting ON taskyard.jobs (run_at, id)
    WHERE state IN ('scheduled', 'retrying');

-- reap_expired and next_wakeup: the running set (bounded by the workers' concurrency).
-- Keyed on id rather than lease_expires_at, so a heartbeat changes no indexed column.
CREATE INDEX jobs_running ON taskyard.jobs (id) WHERE state = 'running';

-- resolve_dependencies: scheduled jobs that have dependencies.
CREATE INDEX jobs_waiting_on_dependencies ON taskyard.jobs (id)
    WHERE state = 'scheduled' AND cardinality(depends_on) > 0;

-- Listing, newest first, with keyset pagination on (created_at, id).
CREATE INDEX jobs_created ON taskyard.jobs (created_at, id);

-- Stats over a window.
CREATE INDEX jobs_finished ON taskyard.jobs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE taskyard.attempts (
    job_id           uuid NOT NULL,
    attempt          integer NOT NULL,
    worker           text NOT NULL,
    started_at       timestamptz NOT NULL,
    lease_expires_at timestamptz NOT NULL,
    finished_at      timestamptz,
    outcome          text NOT NULL,
    error            jsonb,
    PRIMARY KEY (job_id, attempt),
    CONSTRAINT attempts_outcome_known CHECK (outcome IN
        ('running', 'succeeded', 'failed', 'timeout', 'worker_lost', 'cancelled', 'stale'))
);
-- No foreign key to jobs: attempts are written only by the store, under the job's row
-- lock, and a key check on every claim would cost the hot path a lookup per job.
CREATE INDEX attempts_finished ON taskyard.attempts (finished_at)
    WHERE finished_at IS NOT NULL;

-- One row per (dependent, dependency); the second index finds the dependents of a job.
CREATE TABLE taskyard.dependencies (
    job_id     uuid NOT NULL REFERENCES taskyard.jobs (id) ON DELETE CASCADE,
    depends_on uuid NOT NULL REFERENCES taskyard.jobs (id),
    PRIMARY KEY (job_id, depends_on)
);
CREATE INDEX dependencies_depends_on ON taskyard.dependencies (depends_on);

-- Pause flags: a row while the queue is paused.
CREATE TABLE taskyard.paused_queues (
    queue     text PRIMARY KEY,
    paused_at timestamptz NOT NULL DEFAULT now()
);
