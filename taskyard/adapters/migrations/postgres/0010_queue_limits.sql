-- taskyard PostgreSQL schema: flow control (`taskyard/domain/flow.py`): a queue's limits,
-- a job's concurrency key, each rate-limited queue's starts log.

-- In byte order ("C"), as the domain orders keys when they take turns.
ALTER TABLE taskyard.jobs ADD COLUMN concurrency_key text COLLATE "C";

-- What counts against the limits: the running jobs of a queue by key (the lease's expiry
-- is compared by the query: an expired lease counts no more, before the reaper runs).
CREATE INDEX jobs_running_by_key ON taskyard.jobs (queue, concurrency_key, lease_expires_at)
    WHERE state = 'running';

-- A governed queue's claim: its keys (a skip scan) and each key's jobs in claim order.
CREATE INDEX jobs_claim_key ON taskyard.jobs (queue, concurrency_key, priority DESC, run_at, id)
    WHERE state = 'queued';

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
    turn_after            text COLLATE "C",
    CHECK ((rate_count IS NULL) = (rate_period_s IS NULL)),
    CHECK ((key_rate_count IS NULL) = (key_rate_period_s IS NULL))
);

-- The starts (claims) of each rate-limited queue within its longest period: the claim
-- that records starts deletes the older ones, so the log holds one period at most.
CREATE TABLE taskyard.queue_starts (
    queue           text NOT NULL,
    concurrency_key text COLLATE "C",  -- as jobs', so that a key's probe can use its index
    started_at      timestamptz NOT NULL
);
CREATE INDEX queue_starts_by_time ON taskyard.queue_starts (queue, started_at);
-- A key's starts in its window, for the keys a claim walks only: the log holds every key's
-- starts of the longest period (most keys long idle), which no claim reads whole.
CREATE INDEX queue_starts_by_key ON taskyard.queue_starts (queue, concurrency_key, started_at);

-- The claim, flow control included: `taskyard.claim` (version 3) for a claim that reaches
-- no governed queue, after one look at queue_settings (by its primary key: empty or
-- a few rows); otherwise `flow.admit`'s rule in one set-based pass, held to the engine's
-- `plans.claim` by a differential test (tests/integration/test_hot_paths.py):
--
-- 1. the settings rows of the governed queues it reaches are locked in queue-name order
--    (every later statement of this function sees the claims committed before it got
--    them: the claims of a governed queue are serialised);
-- 2. each governed, unpaused queue's load: its live leases (lease_expires_at >= now()) by
--    key (the expired ones locked first: see below), its starts in its rate window, and
--    those of each key it walks in the key's window (`queue_starts`, read by index for
--    those keys only: the log, which holds every key's starts of the longest period, is
--    never read whole);
-- 3. its headroom (`flow.headroom`) and its candidates as `flow.proposed` picks them: due
--    jobs ranked within their key by claim order, each key's first `room` only, ordered
--    by (rank, wrapped past turn_after, key in byte order), at most the queue's room.
--    The keys are walked on jobs_claim_key in turn order, one probe each; a first try
--    walks only as many as the claim could need, and the whole walk is made again only
--    when that try found too few first jobs (so a claim's cost follows what it takes,
--    not the backlog nor, mostly, the number of keys);
-- 4. the other queues' due jobs in claim order (as `taskyard.claim` picks them), read per
--    queue (a worker of every queue finds the queues by a skip scan): never through a
--    governed queue's backlog;
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
BEGIN
    v_governed := ARRAY(
        SELECT s.queue FROM taskyard.queue_settings AS s
        WHERE p_queues IS NULL OR s.queue = ANY(p_queues)
        ORDER BY s.queue COLLATE "C"
        FOR UPDATE);
    IF cardinality(v_governed) = 0 THEN
        RETURN QUERY SELECT * FROM taskyard.claim(
            p_worker, p_limit, p_ttl_s, p_queues, p_tasks, p_leased, p_open);
    ELSE
        RETURN QUERY SELECT * FROM taskyard.claim_governed(
            v_governed, p_worker, p_limit, p_ttl_s, p_queues, p_tasks, p_leased, p_open);
    END IF;
END
$$;

-- The governed claim (steps 2 to 6 above), for claim_flow once it holds the settings rows
-- of `p_governed`.
CREATE FUNCTION taskyard.claim_governed(
    p_governed text[], p_worker text, p_limit integer, p_ttl_s double precision,
    p_queues text[], p_tasks text[], p_leased text, p_open text
) RETURNS SETOF taskyard.jobs
LANGUAGE plpgsql
-- Planned once per session: the statements are long to plan and their plans do not
-- depend on the arguments (states are literals, the indexes fit any queue).
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_governed text[] := p_governed;
    v_picked uuid[];
    v_locked uuid[];
    v_now timestamptz;
    v_bounded boolean;
    v_enough boolean;
BEGIN
    -- The claim's time: the transaction's, or the latest start its queues recorded if
    -- that is later (a claim that began before another committed, then waited for its
    -- lock, must not record its starts before that one's: the rate windows are judged in
    -- the order the claims are serialised in).
    v_now := greatest(now(), (
        SELECT max(last.at) FROM unnest(v_governed) AS q(name)
        CROSS JOIN LATERAL (
            SELECT max(st.started_at) AS at FROM taskyard.queue_starts AS st
            WHERE st.queue = q.name) AS last));
    -- A lease this claim finds expired gives its capacity back, but only once no heartbeat
    -- is extending it: lock the governed queues' expired leases (waiting for a heartbeat in
    -- flight, whose commit the statements below then see; rechecked after the wait), so
    -- that a heartbeat reaching them after this claim waits for it to commit, and then
    -- finds them expired by its own clock (`taskyard.heartbeat` below).
    PERFORM 1 FROM taskyard.jobs AS x
    WHERE x.state = 'running' AND x.queue = ANY(v_governed) AND x.lease_expires_at < v_now
    ORDER BY x.id
    FOR UPDATE;
    v_bounded := true;
    LOOP
        WITH RECURSIVE g AS (
            SELECT s.* FROM taskyard.queue_settings AS s
            WHERE s.queue = ANY(v_governed)
              AND s.queue NOT IN (SELECT p.queue FROM taskyard.paused_queues AS p)
        ), run AS (
            SELECT r.queue, r.concurrency_key AS key, count(*)::integer AS n
            FROM taskyard.jobs AS r
            WHERE r.state = 'running' AND r.lease_expires_at >= v_now
              AND (p_queues IS NULL OR r.queue = ANY(p_queues))
            GROUP BY r.queue, r.concurrency_key
        ), run_q AS (
            SELECT run.queue, sum(run.n)::integer AS n FROM run GROUP BY run.queue
        ), room AS (
            SELECT g.queue, g.weight, g.turn_after, coalesce(rq.n, 0) AS running,
                least(
                    g.concurrency_limit - coalesce(rq.n, 0),
                    g.rate_count - (
                        SELECT count(*) FROM taskyard.queue_starts AS st
                        WHERE g.rate_period_s IS NOT NULL AND st.queue = g.queue
                          AND st.started_at > v_now - make_interval(secs => g.rate_period_s)
                    )::integer
                ) AS jobs,
                least(g.key_concurrency_limit, g.key_rate_count) AS per_key,
                g.key_concurrency_limit, g.key_rate_count, g.key_rate_period_s
            FROM g LEFT JOIN run_q AS rq ON rq.queue = g.queue
        ), run_room AS (
            -- The room left by its running jobs of each key that has some.
            SELECT run.queue, run.key, room.key_concurrency_limit - run.n AS room
            FROM run JOIN room ON room.queue = run.queue
            WHERE run.key IS NOT NULL
        ), bounds AS (
            -- How many keys a first try walks: what the claim can take of the queue, plus
            -- its keys full by their running jobs, plus one (None on the second try: every
            -- key; a first try that meets keys full by their starts finds too few first
            -- jobs, and makes it).
            SELECT room.queue, room.turn_after,
                CASE WHEN v_bounded THEN greatest(0, least(p_limit, room.jobs)) + 1 + (
                    SELECT count(*) FROM run_room
                    WHERE run_room.queue = room.queue AND run_room.room <= 0)::integer
                END AS bound
            FROM room
        ), key_walk AS (
            -- Each governed queue's keys with queued jobs in the order they take turns:
            -- after turn_after, then from the first up to it; a skip scan of
            -- jobs_claim_key, one probe per key, whatever the backlog.
            SELECT b.queue,
                coalesce(f.first, CASE WHEN w.wrap <= b.turn_after THEN w.wrap END) AS key,
                f.first IS NULL AS wrapped,
                1 AS n
            FROM bounds AS b
            CROSS JOIN LATERAL (
                SELECT min(j.concurrency_key) AS first FROM taskyard.jobs AS j
                WHERE j.state = 'queued' AND j.queue = b.queue
                  AND j.concurrency_key > coalesce(b.turn_after, '')
            ) AS f
            CROSS JOIN LATERAL (
                SELECT min(j.concurrency_key) AS wrap FROM taskyard.jobs AS j
                WHERE f.first IS NULL AND b.turn_after IS NOT NULL
                  AND j.state = 'queued' AND j.queue = b.queue
                  AND j.concurrency_key IS NOT NULL
            ) AS w
            WHERE b.bound IS NULL OR b.bound > 0
            UNION ALL
            SELECT w.queue,
                CASE WHEN w.wrapped AND s.same > b.turn_after THEN NULL
                     WHEN s.same IS NOT NULL THEN s.same
                     WHEN r.wrap <= b.turn_after THEN r.wrap END,
                w.wrapped OR s.same IS NULL, w.n + 1
            FROM key_walk AS w
            JOIN bounds AS b ON b.queue = w.queue
            CROSS JOIN LATERAL (
                SELECT min(j.concurrency_key) AS same FROM taskyard.jobs AS j
                WHERE j.state = 'queued' AND j.queue = w.queue AND j.concurrency_key > w.key
            ) AS s
            CROSS JOIN LATERAL (
                SELECT min(j.concurrency_key) AS wrap FROM taskyard.jobs AS j
                WHERE s.same IS NULL AND NOT w.wrapped AND b.turn_after IS NOT NULL
                  AND j.state = 'queued' AND j.queue = w.queue
                  AND j.concurrency_key IS NOT NULL
            ) AS r
            WHERE w.key IS NOT NULL AND (b.bound IS NULL OR w.n < b.bound)
        ), key_room AS (
            -- The room of each key walked: its running jobs, and its starts in its rate
            -- window (read on queue_starts_by_key, no more of them than the limit).
            SELECT DISTINCT ON (w.queue, w.key) w.queue, w.key, least(
                room.key_concurrency_limit - coalesce(r.n, 0),
                room.key_rate_count - (
                    SELECT count(*) FROM (
                        SELECT 1 FROM taskyard.queue_starts AS st
                        WHERE room.key_rate_count IS NOT NULL
                          AND st.queue = w.queue AND st.concurrency_key = w.key
                          AND st.started_at
                              > v_now - make_interval(secs => room.key_rate_period_s)
                        LIMIT room.key_rate_count
                    ) AS seen
                )::integer
            ) AS room
            FROM key_walk AS w
            JOIN room ON room.queue = w.queue
            LEFT JOIN run AS r ON r.queue = w.queue AND r.key = w.key
            WHERE w.key IS NOT NULL
        ), ranked AS (
            -- The first jobs of each key (and of the jobs without one) in claim order, no
            -- more than the claim, the queue or the key can take (ordered by the key too,
            -- which is one here, so that only jobs_claim_key gives the order).
            SELECT one.id, room.queue, NULL::text AS concurrency_key,
                ''::text COLLATE "C" AS name, one.turn
            FROM room CROSS JOIN LATERAL (
                SELECT j.id, row_number() OVER (
                    ORDER BY j.concurrency_key, j.priority DESC, j.run_at, j.id) AS turn
                FROM taskyard.jobs AS j
                WHERE j.state = 'queued' AND j.queue = room.queue
                  AND j.concurrency_key IS NULL
                  AND j.run_at <= v_now AND (p_tasks IS NULL OR j.task = ANY(p_tasks))
                ORDER BY j.concurrency_key, j.priority DESC, j.run_at, j.id
                LIMIT greatest(0, least(p_limit, room.jobs))
            ) AS one
            UNION ALL
            SELECT one.id, w.queue, w.key, w.key COLLATE "C", one.turn
            FROM key_walk AS w
            JOIN room ON room.queue = w.queue
            LEFT JOIN key_room AS kr ON kr.queue = w.queue AND kr.key = w.key
            CROSS JOIN LATERAL (
                SELECT j.id, row_number() OVER (
                    ORDER BY j.concurrency_key, j.priority DESC, j.run_at, j.id) AS turn
                FROM taskyard.jobs AS j
                WHERE j.state = 'queued' AND j.queue = w.queue AND j.concurrency_key = w.key
                  AND j.run_at <= v_now AND (p_tasks IS NULL OR j.task = ANY(p_tasks))
                ORDER BY j.concurrency_key, j.priority DESC, j.run_at, j.id
                LIMIT greatest(0, least(p_limit, room.jobs, coalesce(kr.room, room.per_key)))
            ) AS one
            WHERE w.key IS NOT NULL
        ), proposed AS (
            SELECT c.id, c.queue, room.running, room.weight, room.jobs,
                row_number() OVER (
                    PARTITION BY c.queue
                    ORDER BY c.turn,
                        (room.turn_after IS NOT NULL AND c.name <= room.turn_after),
                        c.name) - 1 AS k
            FROM ranked AS c
            JOIN room ON room.queue = c.queue
            LEFT JOIN key_room AS kr ON kr.queue = c.queue AND kr.key = c.concurrency_key
            WHERE c.concurrency_key IS NULL
               OR c.turn <= coalesce(kr.room, room.per_key, c.turn)
        ), queued_queues AS (
            -- A worker of every queue: the queues with queued jobs, one probe each (a skip
            -- scan on the queue's indexes), so that the other queues' jobs are read per
            -- queue below, and never by walking a governed (or paused) queue's backlog.
            SELECT (SELECT min(j.queue) FROM taskyard.jobs AS j
                    WHERE p_queues IS NULL AND j.state = 'queued') AS name
            UNION ALL
            SELECT (SELECT min(j.queue) FROM taskyard.jobs AS j
                    WHERE j.state = 'queued' AND j.queue > qq.name)
            FROM queued_queues AS qq WHERE qq.name IS NOT NULL
        ), free AS (
            -- The other queues' due jobs in claim order, as taskyard.claim picks them: the
            -- first of each queue named (or, for every queue, each queue with queued jobs)
            -- on jobs_claim_queue; free_first keeps the first p_limit of them all.
            SELECT c.id, c.queue, c.priority, c.run_at FROM (
                SELECT q.name FROM unnest(p_queues) AS q(name)
                UNION ALL
                SELECT qq.name FROM queued_queues AS qq WHERE qq.name IS NOT NULL
            ) AS q
            CROSS JOIN LATERAL (
                SELECT one.id, one.queue, one.priority, one.run_at FROM taskyard.jobs AS one
                WHERE one.state = 'queued' AND one.queue = q.name AND one.run_at <= v_now
                  AND (p_tasks IS NULL OR one.task = ANY(p_tasks))
                ORDER BY one.priority DESC, one.run_at, one.id
                LIMIT p_limit
            ) AS c
            WHERE NOT q.name = ANY(v_governed)
              AND q.name NOT IN (SELECT p.queue FROM taskyard.paused_queues AS p)
        ), free_first AS (
            SELECT free.* FROM free ORDER BY free.priority DESC, free.run_at, free.id
            LIMIT p_limit
        ), parts AS (
            SELECT proposed.id, proposed.queue, proposed.running, proposed.weight, proposed.k
            FROM proposed WHERE proposed.k < least(p_limit, proposed.jobs)
            UNION ALL
            SELECT free.id, free.queue, coalesce(rq.n, 0), 1,
                row_number() OVER (
                    PARTITION BY free.queue ORDER BY free.priority DESC, free.run_at, free.id) - 1
            FROM free_first AS free LEFT JOIN run_q AS rq ON rq.queue = free.queue
        ), short AS (
            -- A first try that stopped its walk before every key, yet found fewer first
            -- jobs of keys it walked (in turn order, from the start) than the claim can take
            -- of the queue: the keys it did not walk could come first; try again, whole.
            SELECT b.queue FROM bounds AS b JOIN room ON room.queue = b.queue
            WHERE b.bound IS NOT NULL
              AND EXISTS (SELECT 1 FROM key_walk AS w
                          WHERE w.queue = b.queue AND w.n >= b.bound AND w.key IS NOT NULL)
              AND (SELECT count(*) FROM ranked AS r
                   WHERE r.queue = b.queue AND r.turn = 1
                     AND (r.concurrency_key IS NOT NULL OR b.turn_after IS NULL
                          OR EXISTS (SELECT 1 FROM key_walk AS w
                                     WHERE w.queue = b.queue AND w.wrapped)))
                  < greatest(0, least(p_limit, room.jobs))
        ), taken AS (
            SELECT parts.id,
                row_number() OVER (
                    ORDER BY (2 * (parts.running + parts.k) + 1)::numeric / (2 * parts.weight),
                        parts.queue COLLATE "C", parts.k) AS place
            FROM parts
        )
        SELECT coalesce(
                (SELECT array_agg(taken.id ORDER BY taken.place) FROM taken
                 WHERE taken.place <= p_limit), '{}'),
            NOT EXISTS (SELECT 1 FROM short)
        INTO v_picked, v_enough;
        EXIT WHEN v_enough OR NOT v_bounded;
        v_bounded := false;
    END LOOP;
    -- By primary key only: `COLLATE "C"` (the same equality on the state) keeps the
    -- partial indexes on state = 'queued' from matching, which statistics taken before a
    -- backlog arrived (nothing queued) made the cheapest, and read the whole backlog.
    v_locked := ARRAY(
        SELECT l.id FROM taskyard.jobs AS l
        WHERE l.id = ANY(v_picked) AND l.state COLLATE "C" = 'queued' AND l.run_at <= v_now
        ORDER BY l.id
        FOR UPDATE SKIP LOCKED);
    RETURN QUERY
    WITH claimed AS (
        UPDATE taskyard.jobs AS u
        SET state = p_leased, attempt = u.attempt + 1, lease_worker = p_worker,
            lease_expires_at = v_now + make_interval(secs => p_ttl_s), updated_at = v_now
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
        SELECT placed.queue, placed.concurrency_key, v_now FROM placed
        WHERE placed.queue IN (SELECT rated.queue FROM rated)
    ), pruned AS (
        DELETE FROM taskyard.queue_starts AS st USING rated
        WHERE st.queue = rated.queue
          AND st.started_at <= v_now - make_interval(secs => rated.period_s)
    )
    SELECT c.* FROM claimed AS c
    JOIN unnest(v_picked) WITH ORDINALITY AS p(id, n) ON p.id = c.id
    ORDER BY p.n;
END
$$;

-- Version 2's heartbeat, except that a lease of a governed queue must also be live by the
-- clock when its row is read (and read again after waiting for its lock), not only at the
-- statement's start: a heartbeat that started before its lease expired, then waited while
-- a claim gave that capacity to another job (claim_governed locks the expired leases it
-- counts free), must not revive it afterwards. Other queues trade no capacity: their
-- leases keep the statement's time, exactly as `plans.heartbeat` judges at the store's
-- now (the differential test holds them at the boundary). The new expiry is still counted
-- from the statement's time. (Left open: limits first set on a queue while such a
-- heartbeat waits; its look at queue_settings is as of its start.)
CREATE OR REPLACE FUNCTION taskyard.heartbeat(
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
      AND (j.lease_expires_at >= clock_timestamp()
           OR j.queue NOT IN (SELECT s.queue FROM taskyard.queue_settings AS s))
    RETURNING j.id, j.attempt, j.lease_worker, j.lease_expires_at, j.cancel_requested;
END
$$;
