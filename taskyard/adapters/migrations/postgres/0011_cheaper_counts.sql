-- taskyard PostgreSQL schema: the count triggers of version 6 (0006_counts.sql) at less
-- cost to the hot statements, the counts they keep unchanged.
--
-- `run_s_bound` was a SQL function with a subquery on run_s_ladder: the planner cannot
-- inline it, so every statement that fired `count_attempts` (each claim and each report)
-- set up and ran the function once per group: about half of what the counting cost a
-- claim or a report of four jobs (docs/performance.md, "The count triggers, taken apart").
-- It becomes one CASE over the ladder's bounds, written here from the table (which stays
-- the reference, and which a test holds to the domain's `RUN_S_BUCKETS`): an immutable
-- SQL function of one expression, which the planner inlines. Same answer: the smallest
-- bound at or above the run time, 'Infinity' above them all, -1 for none (a test holds
-- the function to the table's rule). A later change to the ladder rewrites it too.
DO $migration$
DECLARE
    v_cases text;
BEGIN
    SELECT string_agg(
            format('WHEN p_run_s <= %L::double precision THEN %L::double precision',
                bound, bound),
            ' ' ORDER BY bound)
    INTO v_cases FROM taskyard.run_s_ladder;
    EXECUTE format(
        $sql$CREATE OR REPLACE FUNCTION taskyard.run_s_bound(p_run_s double precision)
        RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE
        AS 'SELECT CASE WHEN p_run_s IS NULL THEN -1::double precision %s
            ELSE ''Infinity''::double precision END'$sql$,
        replace(v_cases, '''', ''''''));
END
$migration$;
