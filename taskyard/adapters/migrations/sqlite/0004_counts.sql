-- taskyard SQLite schema, version 3: counts kept by triggers (as PostgreSQL's version 5
-- does), so that the queue counts and the attempt totals are read, not counted.

-- Jobs by (queue, task, state, the type of their last error: '' for none).
CREATE TABLE job_counts (
    queue TEXT NOT NULL,
    task  TEXT NOT NULL,
    state TEXT NOT NULL,
    error_type TEXT NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (queue, task, state, error_type)
) WITHOUT ROWID;

CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs
BEGIN
    INSERT INTO job_counts (queue, task, state, error_type, n)
    VALUES (NEW.queue, NEW.task, NEW.state, coalesce(json_extract(NEW.last_error, '$.type'), ''), 1)
    ON CONFLICT (queue, task, state, error_type) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER jobs_count_update AFTER UPDATE OF queue, task, state, last_error ON jobs
WHEN OLD.queue IS NOT NEW.queue OR OLD.task IS NOT NEW.task OR OLD.state IS NOT NEW.state
    OR json_extract(OLD.last_error, '$.type') IS NOT json_extract(NEW.last_error, '$.type')
BEGIN
    UPDATE job_counts SET n = n - 1 WHERE queue = OLD.queue AND task = OLD.task AND state = OLD.state
      AND error_type = coalesce(json_extract(OLD.last_error, '$.type'), '');
    INSERT INTO job_counts (queue, task, state, error_type, n)
    VALUES (NEW.queue, NEW.task, NEW.state, coalesce(json_extract(NEW.last_error, '$.type'), ''), 1)
    ON CONFLICT (queue, task, state, error_type) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs
BEGIN
    UPDATE job_counts SET n = n - 1 WHERE queue = OLD.queue AND task = OLD.task AND state = OLD.state
      AND error_type = coalesce(json_extract(OLD.last_error, '$.type'), '');
END;

INSERT INTO job_counts (queue, task, state, error_type, n)
SELECT queue, task, state, coalesce(json_extract(last_error, '$.type'), ''), count(*)
FROM jobs WHERE true GROUP BY 1, 2, 3, 4;

-- The oldest queued job of each queue: one index probe per queue.
CREATE INDEX jobs_queued_age ON jobs (queue, run_at) WHERE state = 'queued';

-- Attempts by (outcome, run-time bucket), since the store began (a deleted attempt is not
-- subtracted). `bound` is the smallest bound of `run_s_ladder` at or above the run time in
-- seconds, 1e999 (infinity) above them all, -1 while the attempt has not finished. The
-- ladder is the domain's `RUN_S_BUCKETS` (a test compares them).
CREATE TABLE run_s_ladder (bound REAL PRIMARY KEY);
INSERT INTO run_s_ladder (bound) VALUES
    (0.005), (0.01), (0.025), (0.05), (0.1), (0.25), (0.5), (1.0), (2.5), (5.0), (10.0),
    (30.0), (60.0), (300.0), (900.0), (3600.0);

CREATE TABLE attempt_counts (
    outcome TEXT NOT NULL,
    bound   REAL NOT NULL,
    n       INTEGER NOT NULL,
    sum_s   REAL NOT NULL,
    PRIMARY KEY (outcome, bound)
) WITHOUT ROWID;

CREATE TRIGGER attempts_count_insert AFTER INSERT ON attempts
BEGIN
    INSERT INTO attempt_counts (outcome, bound, n, sum_s)
    SELECT NEW.outcome,
           CASE WHEN NEW.finished_at IS NULL THEN -1 ELSE coalesce(
               (SELECT min(bound) FROM run_s_ladder
                WHERE bound >= (NEW.finished_at - NEW.started_at) / 1e6), 1e999) END,
           1, coalesce((NEW.finished_at - NEW.started_at) / 1e6, 0)
    WHERE true
    ON CONFLICT (outcome, bound) DO UPDATE SET n = n + 1, sum_s = sum_s + excluded.sum_s;
END;

CREATE TRIGGER attempts_count_update AFTER UPDATE OF outcome, started_at, finished_at
ON attempts
BEGIN
    UPDATE attempt_counts SET n = n - 1,
        sum_s = sum_s - coalesce((OLD.finished_at - OLD.started_at) / 1e6, 0)
    WHERE outcome = OLD.outcome AND bound = CASE WHEN OLD.finished_at IS NULL THEN -1 ELSE
        coalesce((SELECT min(bound) FROM run_s_ladder
                  WHERE bound >= (OLD.finished_at - OLD.started_at) / 1e6), 1e999) END;
    INSERT INTO attempt_counts (outcome, bound, n, sum_s)
    SELECT NEW.outcome,
           CASE WHEN NEW.finished_at IS NULL THEN -1 ELSE coalesce(
               (SELECT min(bound) FROM run_s_ladder
                WHERE bound >= (NEW.finished_at - NEW.started_at) / 1e6), 1e999) END,
           1, coalesce((NEW.finished_at - NEW.started_at) / 1e6, 0)
    WHERE true
    ON CONFLICT (outcome, bound) DO UPDATE SET n = n + 1, sum_s = sum_s + excluded.sum_s;
END;

INSERT INTO attempt_counts (outcome, bound, n, sum_s)
SELECT outcome, b, count(*), coalesce(sum(s), 0) FROM (
    SELECT outcome, (finished_at - started_at) / 1e6 AS s,
           CASE WHEN finished_at IS NULL THEN -1 ELSE coalesce(
               (SELECT min(bound) FROM run_s_ladder
                WHERE bound >= (finished_at - started_at) / 1e6), 1e999) END AS b
    FROM attempts)
WHERE true GROUP BY outcome, b;

-- One dead-letter group's jobs newest first (and the newest of each group).
CREATE INDEX jobs_dead ON jobs (task, json_extract(last_error, '$.type'), created_at, id)
    WHERE state = 'dead';
