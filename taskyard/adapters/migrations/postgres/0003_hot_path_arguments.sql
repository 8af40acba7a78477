-- taskyard PostgreSQL schema, version 3: the hot statements take the states and outcomes
-- they test and write as arguments, so that the domain names them and no statement
-- restates a rule. Each is checked against the domain's pure rule by a differential test
-- (tests/integration/test_hot_paths.py).
--
-- plan_cache_mode = force_custom_plan: each call is planned with its arguments, so the
-- planner sees the state and still walks the partial indexes of version 1 (a generic plan
-- for `state = $1` could not use an index made for `state = 'queued'`). The other settings
-- are those of version 2, for the reasons given there.
--
-- The functions of version 2 stay, for the taskyard before this one during a rolling
-- upgrade (a schema newer than the code is accepted); a later version drops them.

-- Claim up to p_limit jobs in state p_claimable that are due, in claim order, for
-- p_worker: they become p_leased with a new attempt and lease, and each gets an attempt
-- record with outcome p_open. p_queues NULL: every queue not paused, on jobs_claim;
-- otherwise each named queue on jobs_claim_queue, the picks merged (the planner drops the
-- branch that does not apply: p_queues is known when the call is planned).
CREATE FUNCTION taskyard.claim(
    p_worker text, p_limit integer, p_ttl_s double precision, p_queues text[], p_tasks text[],
    p_claimable text, p_leased text, p_open text
) RETURNS SETOF taskyard.jobs
LANGUAGE plpgsql
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET plan_cache_mode = force_custom_plan
AS $$
BEGIN
    RETURN QUERY
    WITH every_queue AS MATERIALIZED (
        SELECT j.id FROM taskyard.jobs AS j
        WHERE p_queues IS NULL AND j.state = p_claimable AND j.run_at <= now()
          AND j.queue NOT IN (SELECT p.queue FROM taskyard.paused_queues AS p)
          AND (p_tasks IS NULL OR j.task = ANY(p_tasks))
        ORDER BY j.priority DESC, j.run_at, j.id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ), named_queues AS MATERIALIZED (
        SELECT c.id FROM unnest(p_queues) AS q(name)
        CROSS JOIN LATERAL (
            SELECT one.id, one.priority, one.run_at FROM taskyard.jobs AS one
            WHERE one.queue = q.name AND one.state = p_claimable AND one.run_at <= now()
              AND (p_tasks IS NULL OR one.task = ANY(p_tasks))
            ORDER BY one.priority DESC, one.run_at, one.id
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        ) AS c
        WHERE q.name NOT IN (SELECT p.queue FROM taskyard.paused_queues AS p)
        ORDER BY c.priority DESC, c.run_at, c.id
        LIMIT p_limit
    ), claimed AS (
        UPDATE taskyard.jobs AS j
        SET state = p_leased, attempt = j.attempt + 1, lease_worker = p_worker,
            lease_expires_at = now() + make_interval(secs => p_ttl_s), updated_at = now()
        FROM (SELECT id FROM every_queue UNION ALL SELECT id FROM named_queues) AS picked
        WHERE j.id = picked.id AND j.state = p_claimable
        RETURNING j.*
    ), opened AS (
        INSERT INTO taskyard.attempts (job_id, attempt, worker, started_at,
            lease_expires_at, outcome)
        SELECT o.id, o.attempt, o.lease_worker, o.updated_at, o.lease_expires_at, p_open
        FROM claimed AS o
    )
    SELECT * FROM claimed AS r ORDER BY r.priority DESC, r.run_at, r.id;
END
$$;

-- Extend every lease of the call still live (a job in p_leased at that attempt, held by
-- that worker, expiring at or after now()) to now() + p_ttl_s, never shortening one.
-- Returns the leases held.
CREATE FUNCTION taskyard.heartbeat(
    p_ids uuid[], p_attempts integer[], p_workers text[], p_ttl_s double precision,
    p_leased text
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
    UPDATE taskyard.jobs AS h
    SET lease_expires_at = greatest(h.lease_expires_at, now() + make_interval(secs => p_ttl_s)),
        updated_at = now()
    FROM unnest(p_ids, p_attempts, p_workers) AS b(id, attempt, worker)
    WHERE h.id = b.id AND h.state = p_leased AND h.attempt = b.attempt
      AND h.lease_worker = b.worker AND h.lease_expires_at >= now()
    RETURNING h.id, h.attempt, h.lease_worker, h.lease_expires_at, h.cancel_requested;
END
$$;

-- Commit the successes whose attempt still holds a live lease (as heartbeat judges it)
-- and was not asked to cancel: the job becomes p_succeeded with the result (JSON text,
-- NULL for none), no lease, updated_at and finished_at now(); its attempt record, while
-- p_open, closes as p_closed with the lease expiry the job had. Rows are read first, by
-- key in id order (OFFSET 0 keeps the lookup a loop), then updated with a compare-and-set
-- on everything read, so a row changed in between is left to the pure path. Returns the
-- ids committed.
CREATE FUNCTION taskyard.report_succeeded(
    p_ids uuid[], p_attempts integer[], p_workers text[], p_results text[],
    p_leased text, p_succeeded text, p_open text, p_closed text
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
            WHERE s.id = given.id AND s.state = p_leased AND s.attempt = given.attempt
              AND s.lease_worker = given.worker AND s.lease_expires_at >= now()
              AND NOT s.cancel_requested
            OFFSET 0
        ) AS l
    ), done AS (
        UPDATE taskyard.jobs AS d
        SET state = p_succeeded, lease_worker = NULL, lease_expires_at = NULL,
            updated_at = now(), finished_at = now(), result = live.result::jsonb
        FROM live
        WHERE d.ctid = live.tid AND d.id = live.id AND d.state = p_leased
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
