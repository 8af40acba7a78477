-- taskyard PostgreSQL schema, version 7: a success clears the job's last error. The success
-- report's hot path does as `transitions.apply_report` now does: a job that succeeds after
-- failed attempts keeps their errors in its attempt records, and `last_error` becomes NULL
-- (tests/integration/test_hot_paths.py holds the two to each other). Same signature as
-- version 3's: the taskyard before this one calls it unchanged during a rolling upgrade.
CREATE OR REPLACE FUNCTION taskyard.report_succeeded(
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
            updated_at = now(), finished_at = now(), result = live.result::jsonb,
            last_error = NULL
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
