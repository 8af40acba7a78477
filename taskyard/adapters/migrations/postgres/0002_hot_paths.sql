-- taskyard PostgreSQL schema, version 2: the worker's hot statements as functions.
--
-- Each function runs one set-based statement under planner settings of its own (a SET
-- clause: in force while the function runs, nothing stays in the session, so PgBouncer in
-- transaction mode is fine), and PL/pgSQL keeps its plan for the connection. The statements
-- touch a few rows found by key or walked in index order; their plans must not depend on
-- statistics, which a queue table that fills and empties in seconds rarely has (autovacuum
-- analyses it a minute later, or never where autovacuum is off). Left to itself the planner,
-- expecting a handful of queued rows, claims with a bitmap scan that reads and sorts every
-- queued row (15 ms instead of 0.3 ms for 64 of 10,000), and joins a batch of reports to
-- the running set by hashing all of it.

-- Claim up to p_limit due jobs in claim order for p_worker, skipping paused queues and
-- rows another claimer holds; open an attempt record for each. p_queues NULL: every queue
-- (one walk of jobs_claim); otherwise each named queue is walked on jobs_claim_queue and
-- the picks merged. p_tasks NULL: any task.
CREATE FUNCTION taskyard.claim(
    p_worker text, p_limit integer, p_ttl_s double precision, p_queues text[], p_tasks text[]
) RETURNS SETOF taskyard.jobs
LANGUAGE plpgsql
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
BEGIN
    IF p_queues IS NULL THEN
        RETURN QUERY
        WITH picked AS MATERIALIZED (
            SELECT j.id FROM taskyard.jobs AS j
            WHERE j.state = 'queued' AND j.run_at <= now()
              AND j.queue NOT IN (SELECT p.queue FROM taskyard.paused_queues AS p)
              AND (p_tasks IS NULL OR j.task = ANY(p_tasks))
            ORDER BY j.priority DESC, j.run_at, j.id
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        ), claimed AS (
            UPDATE taskyard.jobs AS j
            SET state = 'running', attempt = j.attempt + 1, lease_worker = p_worker,
                lease_expires_at = now() + make_interval(secs => p_ttl_s), updated_at = now()
            FROM picked
            WHERE j.id = picked.id AND j.state = 'queued'
            RETURNING j.*
        ), opened AS (
            INSERT INTO taskyard.attempts (job_id, attempt, worker, started_at,
                lease_expires_at, outcome)
            SELECT c.id, c.attempt, c.lease_worker, c.updated_at, c.lease_expires_at, 'running'
            FROM claimed AS c
        )
        SELECT * FROM claimed AS c ORDER BY c.priority DESC, c.run_at, c.id;
    ELSE
        RETURN QUERY
        WITH picked AS MATERIALIZED (
            SELECT c.id FROM unnest(p_queues) AS q(name)
            CROSS JOIN LATERAL (
                SELECT j.id, j.priority, j.run_at FROM taskyard.jobs AS j
                WHERE j.state = 'queued' AND j.queue = q.name AND j.run_at <= now()
                  AND (p_tasks IS NULL OR j.task = ANY(p_tasks))
                ORDER BY j.priority DESC, j.run_at, j.id
                LIMIT p_limit
                FOR UPDATE SKIP LOCKED
            ) AS c
            WHERE q.name NOT IN (SELECT p.queue FROM taskyard.paused_queues AS p)
            ORDER BY c.priority DESC, c.run_at, c.id
            LIMIT p_limit
        ), claimed AS (
            UPDATE taskyard.jobs AS j
            SET state = 'running', attempt = j.attempt + 1, lease_worker = p_worker,
                lease_expires_at = now() + make_interval(secs => p_ttl_s), updated_at = now()
            FROM picked
            WHERE j.id = picked.id AND j.state = 'queued'
            RETURNING j.*
        ), opened AS (
            INSERT INTO taskyard.attempts (job_id, attempt, worker, started_at,
                lease_expires_at, outcome)
            SELECT c.id, c.attempt, c.lease_worker, c.updated_at, c.lease_expires_at, 'running'
            FROM claimed AS c
        )
        SELECT * FROM claimed AS c ORDER BY c.priority DESC, c.run_at, c.id;
    END IF;
END
$$;

-- Extend every live lease of the call to now() + p_ttl_s (never shortening one); an
-- expired lease is not revived. Returns the leases still held.
CREATE FUNCTION taskyard.heartbeat(
    p_ids uuid[], p_attempts integer[], p_workers text[], p_ttl_s double precision
) RETURNS TABLE (
    id uuid, attempt integer, lease_worker text, lease_expires_at timestamptz,
    cancel_requested boolean
)
LANGUAGE plpgsql
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
BEGIN
    RETURN QUERY
    UPDATE taskyard.jobs AS j
    SET lease_expires_at = greatest(j.lease_expires_at,
                                    now() + make_interval(secs => p_ttl_s)),
        updated_at = now()
    FROM unnest(p_ids, p_attempts, p_workers) AS r(id, attempt, worker)
    WHERE j.id = r.id AND j.state = 'running' AND j.attempt = r.attempt
      AND j.lease_worker = r.worker AND j.lease_expires_at >= now()
    RETURNING j.id, j.attempt, j.lease_worker, j.lease_expires_at, j.cancel_requested;
END
$$;

-- Commit successes that hold a live lease and were not asked to cancel, exactly as
-- `transitions.apply_report` would: the job ends succeeded with the handler's result
-- (JSON text, NULL for none), its lease gone, updated_at and finished_at at the
-- transaction's time; its attempt record, if still open, closes as succeeded with the
-- lease expiry the job had. Returns the ids it committed; the store judges every other
-- report with the domain's pure function.
--
-- The rows are read first (one primary-key lookup per report, in id order: OFFSET 0
-- keeps the lookup a loop the planner cannot turn into a join), then updated by a
-- compare-and-set on everything read, the lease expiry included: a row that changed in
-- between (a heartbeat, a cancel request, the reaper) is left alone and judged by the pure
-- path, and the expiry written to the attempt record is the one the job had when it ended.
-- The update takes the row locks, in id order, as every batch of the store does.
CREATE FUNCTION taskyard.report_succeeded(
    p_ids uuid[], p_attempts integer[], p_workers text[], p_results text[]
) RETURNS SETOF uuid
LANGUAGE plpgsql
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
BEGIN
    RETURN QUERY
    WITH r AS MATERIALIZED (
        SELECT * FROM unnest(p_ids, p_attempts, p_workers, p_results)
            AS r(id, attempt, worker, result)
        ORDER BY r.id
    ), held AS MATERIALIZED (
        SELECT h.tid, h.id, h.attempt, h.lease_expires_at, r.worker, r.result FROM r
        CROSS JOIN LATERAL (
            SELECT j.ctid AS tid, j.id, j.attempt, j.lease_expires_at
            FROM taskyard.jobs AS j
            WHERE j.id = r.id AND j.state = 'running' AND j.attempt = r.attempt
              AND j.lease_worker = r.worker AND j.lease_expires_at >= now()
              AND NOT j.cancel_requested
            OFFSET 0
        ) AS h
    ), done AS (
        UPDATE taskyard.jobs AS j
        SET state = 'succeeded', lease_worker = NULL, lease_expires_at = NULL,
            updated_at = now(), finished_at = now(), result = held.result::jsonb
        FROM held
        WHERE j.ctid = held.tid AND j.id = held.id AND j.state = 'running'
          AND j.attempt = held.attempt AND j.lease_worker = held.worker
          AND j.lease_expires_at = held.lease_expires_at AND NOT j.cancel_requested
        RETURNING j.id, j.attempt, held.lease_expires_at
    ), closed AS (
        UPDATE taskyard.attempts AS a
        SET outcome = 'succeeded', finished_at = now(), error = NULL,
            lease_expires_at = done.lease_expires_at
        FROM done
        WHERE a.job_id = done.id AND a.attempt = done.attempt AND a.outcome = 'running'
    )
    SELECT done.id FROM done;
END
$$;
