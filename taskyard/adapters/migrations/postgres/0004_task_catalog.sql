-- The task catalog: each task's defaults and arguments as a worker last published them
-- (the last publication of a task replaces its row whole).
CREATE TABLE taskyard.tasks (
    name          text PRIMARY KEY,
    queue         text NOT NULL,
    priority      integer NOT NULL,
    max_attempts  integer NOT NULL,
    backoff       jsonb NOT NULL,
    timeout_s     double precision,
    params        jsonb NOT NULL,
    published_by  text NOT NULL,
    published_at  timestamptz NOT NULL
);
