-- taskyard SQLite schema, version 1. Applied by SqliteJobStore when it opens a file;
-- the version is kept in PRAGMA user_version.
-- Times are integer microseconds since the Unix epoch (UTC); ids are canonical UUID text,
-- whose byte order is the UUIDs' numeric order; JSON values are JSON text.

CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,
    task             TEXT NOT NULL,
    args             TEXT NOT NULL,
    queue            TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    run_at           INTEGER NOT NULL,
    max_attempts     INTEGER NOT NULL,
    backoff          TEXT NOT NULL,
    timeout_s        REAL,
    idempotency_key  TEXT UNIQUE,
    depends_on       TEXT NOT NULL DEFAULT '[]',
    state            TEXT NOT NULL CHECK (state IN
                         ('scheduled', 'queued', 'running', 'retrying',
                          'succeeded', 'dead', 'cancelled')),
    attempt          INTEGER NOT NULL,
    attempt_limit    INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    lease_worker     TEXT,
    lease_expires_at INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    checkpoint       TEXT,
    result           TEXT,
    last_error       TEXT,
    correlation_id   TEXT,
    fingerprint      TEXT
);

-- claim: every queue, and one queue at a time
CREATE INDEX jobs_claim ON jobs (priority DESC, run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_claim_queue ON jobs (queue, priority DESC, run_at, id) WHERE state = 'queued';
-- promote and next_wakeup
CREATE INDEX jobs_waiting ON jobs (run_at, id) WHERE state IN ('scheduled', 'retrying');
-- reap and next_wakeup
CREATE INDEX jobs_running ON jobs (lease_expires_at) WHERE state = 'running';
-- listing, newest first
CREATE INDEX jobs_created ON jobs (created_at, id);
-- stats
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE attempts (
    job_id           TEXT NOT NULL,
    attempt          INTEGER NOT NULL,
    worker           TEXT NOT NULL,
    started_at       INTEGER NOT NULL,
    lease_expires_at INTEGER NOT NULL,
    finished_at      INTEGER,
    outcome          TEXT NOT NULL,
    error            TEXT,
    PRIMARY KEY (job_id, attempt)
);
CREATE INDEX attempts_finished ON attempts (finished_at) WHERE finished_at IS NOT NULL;

-- one row per (dependent, dependency); the second index finds the dependents of a job
CREATE TABLE dependencies (
    job_id     TEXT NOT NULL,
    depends_on TEXT NOT NULL,
    PRIMARY KEY (job_id, depends_on)
);
CREATE INDEX dependencies_depends_on ON dependencies (depends_on);

CREATE TABLE paused_queues (
    queue     TEXT PRIMARY KEY,
    paused_at INTEGER NOT NULL
);
