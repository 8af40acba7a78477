-- taskyard PostgreSQL schema, version 5: counts kept by triggers, so that /metrics,
-- /v1/queues and the dashboard answer in bounded time whatever the tables' size.
--
-- Triggers rather than the store's write path: the worker's hot statements
-- (0002_hot_paths.sql) write jobs set-based, bypassing the engine, and a job deleted by
-- retention or by hand must leave the counts too. Every trigger is per statement, over its
-- transition tables: a batch of 100 claims is one upsert per group, not 200.
--
-- A counter row is locked by the transaction that changes it until it commits. To keep
-- concurrent claims from queueing behind one row, each count is striped over 16 slots (the
-- writer's backend pid modulo 16); a reader sums the slots. Rows of one statement are
-- upserted in key order, so two writers on one slot wait rather than deadlock within a
-- statement; a deadlock across statements rolls a transaction back whole and the store
-- runs it again (`PostgresJobStore`, SQLSTATE 40P01).

-- Jobs by (queue, task, state, the type of their last error: '' for none): the sum of n
-- over slots is the number of rows. The error type groups the dead letters.
CREATE TABLE taskyard.job_counts (
    queue text NOT NULL,
    task  text NOT NULL,
    state text NOT NULL,
    error_type text NOT NULL,
    slot  smallint NOT NULL,
    n     bigint NOT NULL,
    PRIMARY KEY (queue, task, state, error_type, slot)
) WITH (fillfactor = 50);

CREATE FUNCTION taskyard.count_jobs() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO taskyard.job_counts AS c (queue, task, state, error_type, slot, n)
        SELECT queue, task, state, coalesce(last_error->>'type', ''), pg_backend_pid() % 16,
               count(*)
        FROM new_rows GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
        ON CONFLICT (queue, task, state, error_type, slot) DO UPDATE SET n = c.n + excluded.n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO taskyard.job_counts AS c (queue, task, state, error_type, slot, n)
        SELECT queue, task, state, coalesce(last_error->>'type', ''), pg_backend_pid() % 16,
               -count(*)
        FROM old_rows GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
        ON CONFLICT (queue, task, state, error_type, slot) DO UPDATE SET n = c.n + excluded.n;
    ELSE
        -- An update that moves no job between groups (a heartbeat) nets to zero
        -- and writes nothing.
        INSERT INTO taskyard.job_counts AS c (queue, task, state, error_type, slot, n)
        SELECT queue, task, state, error_type, pg_backend_pid() % 16, sum(d) FROM (
            SELECT queue, task, state, coalesce(last_error->>'type', '') AS error_type, 1 AS d
            FROM new_rows
            UNION ALL
            SELECT queue, task, state, coalesce(last_error->>'type', ''), -1 FROM old_rows
        ) AS moved
        GROUP BY 1, 2, 3, 4 HAVING sum(d) <> 0 ORDER BY 1, 2, 3, 4
        ON CONFLICT (queue, task, state, error_type, slot) DO UPDATE SET n = c.n + excluded.n;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_count_insert AFTER INSERT ON taskyard.jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION taskyard.count_jobs();
CREATE TRIGGER jobs_count_update AFTER UPDATE ON taskyard.jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION taskyard.count_jobs();
CREATE TRIGGER jobs_count_delete AFTER DELETE ON taskyard.jobs
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION taskyard.count_jobs();

-- TRUNCATE fires no delete trigger: emptying the table empties its counts.
CREATE FUNCTION taskyard.forget_job_counts() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM taskyard.job_counts;
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_count_truncate AFTER TRUNCATE ON taskyard.jobs
    FOR EACH STATEMENT EXECUTE FUNCTION taskyard.forget_job_counts();

-- The rows already there (the triggers above hold the table's lock from here to commit,
-- so no write falls between them and this count).
INSERT INTO taskyard.job_counts (queue, task, state, error_type, slot, n)
SELECT queue, task, state, coalesce(last_error->>'type', ''), 0, count(*)
FROM taskyard.jobs GROUP BY 1, 2, 3, 4;

-- The oldest queued job of each queue: one index probe per queue.
CREATE INDEX jobs_queued_age ON taskyard.jobs (queue, run_at) WHERE state = 'queued';

-- Attempts by (outcome, run-time bucket), since the store began: a deleted attempt is not
-- subtracted (Prometheus counters only grow). `bound` is the smallest bound of
-- `run_s_ladder` at or above the attempt's run time in seconds, 'Infinity' above them all,
-- and -1 while the attempt has not finished. The ladder is the domain's `RUN_S_BUCKETS`
-- (taskyard/domain/model.py; a test compares them).
CREATE TABLE taskyard.run_s_ladder (bound double precision PRIMARY KEY);
INSERT INTO taskyard.run_s_ladder (bound) VALUES
    (0.005), (0.01), (0.025), (0.05), (0.1), (0.25), (0.5), (1.0), (2.5), (5.0), (10.0),
    (30.0), (60.0), (300.0), (900.0), (3600.0);

CREATE TABLE taskyard.attempt_counts (
    outcome text NOT NULL,
    bound   double precision NOT NULL,
    slot    smallint NOT NULL,
    n       bigint NOT NULL,
    sum_s   double precision NOT NULL,
    PRIMARY KEY (outcome, bound, slot)
) WITH (fillfactor = 50);

CREATE FUNCTION taskyard.run_s_bound(p_run_s double precision) RETURNS double precision
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_run_s IS NULL THEN -1 ELSE coalesce(
        (SELECT min(bound) FROM taskyard.run_s_ladder WHERE bound >= p_run_s),
        'Infinity') END
$$;

CREATE FUNCTION taskyard.count_attempts() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO taskyard.attempt_counts AS c (outcome, bound, slot, n, sum_s)
        SELECT outcome, taskyard.run_s_bound(s), pg_backend_pid() % 16, count(*),
               coalesce(sum(s), 0)
        FROM (SELECT outcome, extract(epoch FROM finished_at - started_at)::float8 AS s
              FROM new_rows) AS a
        GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (outcome, bound, slot)
        DO UPDATE SET n = c.n + excluded.n, sum_s = c.sum_s + excluded.sum_s;
    ELSE
        INSERT INTO taskyard.attempt_counts AS c (outcome, bound, slot, n, sum_s)
        SELECT outcome, taskyard.run_s_bound(s), pg_backend_pid() % 16, sum(d),
               coalesce(sum(s * d), 0)
        FROM (
            SELECT outcome, extract(epoch FROM finished_at - started_at)::float8 AS s, 1 AS d
            FROM new_rows
            UNION ALL
            SELECT outcome, extract(epoch FROM finished_at - started_at)::float8, -1
            FROM old_rows
        ) AS a
        GROUP BY 1, 2 HAVING sum(d) <> 0 OR coalesce(sum(s * d), 0) <> 0 ORDER BY 1, 2
        ON CONFLICT (outcome, bound, slot)
        DO UPDATE SET n = c.n + excluded.n, sum_s = c.sum_s + excluded.sum_s;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER attempts_count_insert AFTER INSERT ON taskyard.attempts
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION taskyard.count_attempts();
CREATE TRIGGER attempts_count_update AFTER UPDATE ON taskyard.attempts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION taskyard.count_attempts();

-- Emptying the table with TRUNCATE (a store started afresh) starts the totals again.
CREATE FUNCTION taskyard.forget_attempt_counts() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM taskyard.attempt_counts;
    RETURN NULL;
END
$$;
CREATE TRIGGER attempts_count_truncate AFTER TRUNCATE ON taskyard.attempts
    FOR EACH STATEMENT EXECUTE FUNCTION taskyard.forget_attempt_counts();

INSERT INTO taskyard.attempt_counts (outcome, bound, slot, n, sum_s)
SELECT outcome, taskyard.run_s_bound(s), 0, count(*), coalesce(sum(s), 0)
FROM (SELECT outcome, extract(epoch FROM finished_at - started_at)::float8 AS s
      FROM taskyard.attempts) AS a
GROUP BY 1, 2;

-- One dead-letter group's jobs newest first (`dead_ids`, and the newest of each group for
-- `dead_groups`, whose counts are job_counts'): an index of the dead jobs only.
CREATE INDEX jobs_dead ON taskyard.jobs (task, (last_error->>'type'), created_at, id)
    WHERE state = 'dead';

-- A list of the dead jobs, newest first (the dashboard's dead letters link to it): without
-- it the walk of jobs_created skips every job that is not dead.
CREATE INDEX jobs_dead_created ON taskyard.jobs (created_at, id) WHERE state = 'dead';
