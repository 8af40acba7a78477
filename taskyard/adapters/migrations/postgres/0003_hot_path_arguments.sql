-- taskyard PostgreSQL schema, version 3: the claim and the success report take the states
-- and outcomes they write as arguments, so that the domain names them. Each is held to the
-- domain's pure rule by a differential test (tests/integration/test_hot_paths.py).
--
-- The state a statement selects rows by stays a literal where a partial index is declared
-- on it (jobs_claim and jobs_claim_queue on 'queued', jobs_running on 'running', version
-- 1): PL/pgSQL keeps one plan per statement, and a plan made for `state = $1` can use no
-- partial index. Measured, such a plan made a one-job claim twice as slow and a heartbeat
-- of a few leases five times as slow (a sequential scan of jobs). A test holds those
-- literals to the domain's `plans.CLAIMABLE` and `plans.LEASED`. The heartbeat selects by
-- such a state only and writes none: version 2's stays as it is.
--
-- The functions of version 2 stay, for the taskyard before this one during a rolling
-- upgrade (a schema newer than the code is accepted); a later version drops them. The
-- planner settings are version 2's, for the reasons given there.

-- Claim up to p_limit due jobs in claim order for p_worker, skipping paused queues and
-- rows another claimer holds: each becomes p_leased with a new attempt and lease, and
-- gets an attempt record with outcome p_open. p_queues NULL: one walk of jobs_claim;
-- otherwise each named queue on jobs_claim_queue, the picks merged. p_tasks NULL: any task.
CREATE FUNCTION taskyard.claim(
    p_worker text, p_limit integer, p_ttl_s double precision, p_queues text[], p_tasks text[],
    p_leased text, p_open text
) RETURNS SETOF taskyard.jobs
LANGUAGE plpgsql
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
DECLARE
    v_picked uuid[];
BEGIN
    IF p_queues IS NULL THEN
        v_picked := ARRAY(
            SELECT j.id FROM taskyard.jobs AS j
            WHERE j.state = 'queued' AND j.run_at <= now()
              AND j.queue NOT IN (SELECT p.queue FROM taskyard.paused_queues AS p)
              AND (p_tasks IS NULL OR j.task = ANY(p_tasks))
            ORDER BY j.priority DESC, j.run_at, j.id
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED);
    ELSE
        v_picked := ARRAY(
            SELECT c.id FROM unnest(p_queues) AS q(name)
            CROSS JOIN LATERAL (
                SELECT one.id, one.priority, one.run_at FROM taskyard.jobs AS one
                WHERE one.state = 'queued' AND one.queue = q.name AND one.run_at <= now()
                  AND (p_tasks IS NULL OR one.task = ANY(p_tasks))
                ORDER BY one.priority DESC, one.run_at, one.id
                LIMIT p_limit
                FOR UPDATE SKIP LOCKED
            ) AS c
            WHERE q.name NOT IN (SELECT p.queue FROM taskyard.paused_queues AS p)
            ORDER BY c.priority DESC, c.run_at, c.id
            LIMIT p_limit);
    END IF;
    -- The picks are locked by this call since the pick (FOR UPDATE), so they are still
    -- queued: no guard can fail here, and a state predicate would let the planner reach
    -- for a partial index it believes empty (an unanalysed table) and scan all of it.
    RETURN QUERY
    WITH claimed AS (
        UPDATE taskyard.jobs AS u
        SET state = p_leased, attempt = u.attempt + 1, lease_worker = p_worker,
            lease_expires_at = now() + make_interval(secs => p_ttl_s), updated_at = now()
        WHERE u.id = ANY(v_picked)
        RETURNING u.*
    ), opened AS (
        INSERT INTO taskyard.attempts (job_id, attempt, worker, started_at,
            lease_expires_at, outcome)
        SELECT o.id, o.attempt, o.lease_worker, o.updated_at, o.lease_expires_at, p_open
        FROM claimed AS o
    )
    SELECT * FROM claimed AS r ORDER BY r.priority DESC, r.run_at, r.id;
END
$$;

-- Commit the successes whose attempt still holds a live lease (a running job at that
-- attempt, held by that worker, expiring at or after now()) and was not asked to cancel:
-- the job becomes p_succeeded with the result (JSON text, NULL for none), no lease,
-- updated_at and finished_at now(); its attempt record, while p_open, closes as p_closed
-- with the lease expiry the job had. Rows are read first, by key in id order (OFFSET 0
-- keeps the lookup a loop), then updated with a compare-and-set on everything read, so a
-- row changed in between is left to the pure path. Returns the ids committed.
CREATE FUNCTION taskyard.report_succeeded(
    p_ids uuid[], p_attempts integer[], p_workers text[], p_results text[],
    p_succeeded text, p_open text, p_closed text
) RETURNS SETOF uuid
LANGUAGE plpgsql
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
BEGIN
    RETURN QUERY
    WITH given AS MATERIALIZED (
        SELECT * FROM unnest(p_ids, p_attempts, p_workers, p_results)
            AS g(id, attempt, worker, result)
        ORDER BY g.id
    ), live AS MATERIALIZED (
        SELECT l.tid, l.id, l.attempt, l.lease_expires_at, given.worker, given.result
        FROM given CROSS JOIN LATERAL (
            SELECT s.ctid AS tid, s.id, s.attempt, s.lease_expires_at FROM taskyard.jobs AS s
            WHERE s.id = given.id AND s.state = 'running' AND s.attempt = given.attempt
              AND s.lease_worker = given.worker AND s.lease_expires_at >= now()
              AND NOT s.cancel_requested
            OFFSET 0
        ) AS l
    ), done AS (
        UPDATE taskyard.jobs AS d
        SET state = p_succeeded, lease_worker = NULL, lease_expires_at = NULL,
            updated_at = now(), finished_at = now(), result = live.result::jsonb
        FROM live
        WHERE d.ctid = live.tid AND d.id = live.id AND d.state = 'running'
          AND d.attempt = live.attempt AND d.lease_worker = live.worker
          AND d.lease_expires_at = live.lease_expires_at AND NOT d.cancel_requested
        RETURNING d.id, d.attempt, live.lease_expires_at
    ), closed AS (
        UPDATE taskyard.attempts AS a
        SET outcome = p_closed, finished_at = now(), error = NULL,
            lease_expires_at = done.lease_expires_at
        FROM done
        WHERE a.job_id = done.id AND a.attempt = done.attempt AND a.outcome = p_open
    )
    SELECT done.id FROM done;
END
$$;
