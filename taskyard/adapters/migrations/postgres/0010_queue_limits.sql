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

-- The claim, flow control included: `taskyard.claim` (version 3) for a claim that reaches
-- no governed queue, after one look at queue_settings (by its primary key: empty or
-- a few rows); otherwise `flow.admit`'s rule in one set-based pass, held to the engine's
-- `plans.claim` by a differential test (tests/integration/test_hot_paths.py):
--
-- 1. the settings rows of the governed queues it reaches are locked in queue-name order
--    (every later statement of this function sees the claims committed before it got
--    them: the claims of a governed queue are serialised);
-- 2. each governed, unpaused queue's load: its live leases (lease_expires_at >= now()) by
--    key, its starts in each rate window (`queue_starts`);
-- 3. its headroom (`flow.headroom`) and its candidates as `flow.proposed` picks them: due
--    jobs ranked within their key by claim order, each key's first `room` only, ordered
--    by (rank, wrapped past turn_after, key in byte order), at most the queue's room;
-- 4. the other queues' due jobs in claim order (as `taskyard.claim` picks them);
-- 5. all of them merged by the tag (2 * (running + k) + 1) / (2 * weight) (k: the job's
--    place in its queue's part), then queue name, then k; the first p_limit;
-- 6. those still queued are locked (rows another transaction holds are skipped), claimed
--    as `taskyard.claim` claims, and each governed queue's turn_after and starts log
--    (pruned to its longest period) recorded.
CREATE FUNCTION taskyard.claim_flow(
    p_worker text, p_limit integer, p_ttl_s double precision, p_queues text[], p_tasks text[],
    p_leased text, p_open text
) RETURNS SETOF taskyard.jobs
LANGUAGE plpgsql
AS $$
DECLARE
    v_governed text[];
    v_picked uuid[];
    v_locked uuid[];
BEGIN
    v_governed := ARRAY(
        SELECT s.queue FROM taskyard.queue_settings AS s
        WHERE p_queues IS NULL OR s.queue = ANY(p_queues)
        ORDER BY s.queue COLLATE "C"
        FOR UPDATE);
    IF cardinality(v_governed) = 0 THEN
        RETURN QUERY SELECT * FROM taskyard.claim(
            p_worker, p_limit, p_ttl_s, p_queues, p_tasks, p_leased, p_open);
        RETURN;
    END IF;
    v_picked := ARRAY(
        WITH g AS (
            SELECT s.* FROM taskyard.queue_settings AS s
            WHERE s.queue = ANY(v_governed)
              AND s.queue NOT IN (SELECT p.queue FROM taskyard.paused_queues AS p)
        ), run AS (
            SELECT r.queue, r.concurrency_key AS key, count(*)::integer AS n
            FROM taskyard.jobs AS r
            WHERE r.state = 'running' AND r.lease_expires_at >= now()
              AND (p_queues IS NULL OR r.queue = ANY(p_queues))
            GROUP BY r.queue, r.concurrency_key
        ), run_q AS (
            SELECT run.queue, sum(run.n)::integer AS n FROM run GROUP BY run.queue
        ), starts AS (
            SELECT st.queue, st.concurrency_key AS key, st.started_at,
                (g.rate_period_s IS NOT NULL
                 AND st.started_at > now() - make_interval(secs => g.rate_period_s)) AS in_rate,
                (g.key_rate_period_s IS NOT NULL
                 AND st.started_at > now() - make_interval(secs => g.key_rate_period_s))
                    AS in_key_rate
            FROM g JOIN taskyard.queue_starts AS st ON st.queue = g.queue
        ), room AS (
            SELECT g.queue, g.weight, g.turn_after, coalesce(rq.n, 0) AS running,
                least(
                    g.concurrency_limit - coalesce(rq.n, 0),
                    g.rate_count - (SELECT count(*) FROM starts
                                    WHERE starts.queue = g.queue AND starts.in_rate)::integer
                ) AS jobs,
                least(g.key_concurrency_limit, g.key_rate_count) AS per_key,
                g.key_concurrency_limit, g.key_rate_count
            FROM g LEFT JOIN run_q AS rq ON rq.queue = g.queue
        ), key_room AS (
            SELECT k.queue, k.key, least(
                room.key_concurrency_limit - coalesce(
                    (SELECT run.n FROM run WHERE run.queue = k.queue AND run.key = k.key), 0),
                room.key_rate_count - (
                    SELECT count(*) FROM starts
                    WHERE starts.queue = k.queue AND starts.key = k.key
                      AND starts.in_key_rate)::integer
            ) AS room
            FROM (
                SELECT run.queue, run.key FROM run WHERE run.key IS NOT NULL
                UNION SELECT starts.queue, starts.key FROM starts WHERE starts.key IS NOT NULL
            ) AS k JOIN room ON room.queue = k.queue
        ), ranked AS (
            SELECT one.id, one.queue, one.concurrency_key,
                coalesce(one.concurrency_key, '') COLLATE "C" AS name,
                row_number() OVER (
                    PARTITION BY one.queue, coalesce(one.concurrency_key, '')
                    ORDER BY one.priority DESC, one.run_at, one.id) AS turn
            FROM room JOIN taskyard.jobs AS one ON one.queue = room.queue
            WHERE one.state = 'queued' AND one.run_at <= now()
              AND (p_tasks IS NULL OR one.task = ANY(p_tasks))
        ), proposed AS (
            SELECT c.id, c.queue, room.running, room.weight, room.jobs,
                row_number() OVER (
                    PARTITION BY c.queue
                    ORDER BY c.turn,
                        (room.turn_after IS NOT NULL AND c.name <= room.turn_after COLLATE "C"),
                        c.name) - 1 AS k
            FROM ranked AS c
            JOIN room ON room.queue = c.queue
            LEFT JOIN key_room AS kr ON kr.queue = c.queue AND kr.key = c.concurrency_key
            WHERE c.concurrency_key IS NULL
               OR c.turn <= coalesce(kr.room, room.per_key, c.turn)
        ), free AS (
            SELECT f.id, f.queue, f.priority, f.run_at FROM taskyard.jobs AS f
            WHERE f.state = 'queued' AND f.run_at <= now()
              AND f.queue NOT IN (SELECT p.queue FROM taskyard.paused_queues AS p)
              AND NOT f.queue = ANY(v_governed)
              AND (p_queues IS NULL OR f.queue = ANY(p_queues))
              AND (p_tasks IS NULL OR f.task = ANY(p_tasks))
            ORDER BY f.priority DESC, f.run_at, f.id
            LIMIT p_limit
        ), parts AS (
            SELECT proposed.id, proposed.queue, proposed.running, proposed.weight, proposed.k
            FROM proposed WHERE proposed.k < least(p_limit, proposed.jobs)
            UNION ALL
            SELECT free.id, free.queue, coalesce(rq.n, 0), 1,
                row_number() OVER (
                    PARTITION BY free.queue ORDER BY free.priority DESC, free.run_at, free.id) - 1
            FROM free LEFT JOIN run_q AS rq ON rq.queue = free.queue
        )
        SELECT parts.id FROM parts
        ORDER BY (2 * (parts.running + parts.k) + 1)::numeric / (2 * parts.weight),
            parts.queue COLLATE "C", parts.k
        LIMIT p_limit);
    v_locked := ARRAY(
        SELECT l.id FROM taskyard.jobs AS l
        WHERE l.id = ANY(v_picked) AND l.state = 'queued' AND l.run_at <= now()
        ORDER BY l.id
        FOR UPDATE SKIP LOCKED);
    RETURN QUERY
    WITH claimed AS (
        UPDATE taskyard.jobs AS u
        SET state = p_leased, attempt = u.attempt + 1, lease_worker = p_worker,
            lease_expires_at = now() + make_interval(secs => p_ttl_s), updated_at = now()
        WHERE u.id = ANY(v_locked)
        RETURNING u.*
    ), opened AS (
        INSERT INTO taskyard.attempts (job_id, attempt, worker, started_at,
            lease_expires_at, outcome)
        SELECT o.id, o.attempt, o.lease_worker, o.updated_at, o.lease_expires_at, p_open
        FROM claimed AS o
    ), placed AS (
        SELECT claimed.*, p.n FROM claimed
        JOIN unnest(v_picked) WITH ORDINALITY AS p(id, n) ON p.id = claimed.id
    ), turns AS (
        UPDATE taskyard.queue_settings AS s SET turn_after = last.name
        FROM (
            SELECT DISTINCT ON (placed.queue) placed.queue,
                coalesce(placed.concurrency_key, '') AS name
            FROM placed WHERE placed.queue = ANY(v_governed)
            ORDER BY placed.queue, placed.n DESC
        ) AS last
        WHERE s.queue = last.queue
    ), rated AS (
        SELECT s.queue, greatest(coalesce(s.rate_period_s, 0), coalesce(s.key_rate_period_s, 0))
            AS period_s
        FROM taskyard.queue_settings AS s
        WHERE s.queue = ANY(v_governed)
          AND (s.rate_period_s IS NOT NULL OR s.key_rate_period_s IS NOT NULL)
          AND s.queue IN (SELECT placed.queue FROM placed)
    ), started AS (
        INSERT INTO taskyard.queue_starts (queue, concurrency_key, started_at)
        SELECT placed.queue, placed.concurrency_key, now() FROM placed
        WHERE placed.queue IN (SELECT rated.queue FROM rated)
    ), pruned AS (
        DELETE FROM taskyard.queue_starts AS st USING rated
        WHERE st.queue = rated.queue
          AND st.started_at <= now() - make_interval(secs => rated.period_s)
    )
    SELECT c.* FROM claimed AS c
    JOIN unnest(v_picked) WITH ORDINALITY AS p(id, n) ON p.id = c.id
    ORDER BY p.n;
END
$$;
