-- The task catalog: each task's defaults and arguments as a worker last published them
-- (the last publication of a task replaces its row whole).
CREATE TABLE tasks (
    name          TEXT PRIMARY KEY,
    queue         TEXT NOT NULL,
    priority      INTEGER NOT NULL,
    max_attempts  INTEGER NOT NULL,
    backoff       TEXT NOT NULL,
    timeout_s     REAL,
    params        TEXT NOT NULL,
    published_by  TEXT NOT NULL,
    published_at  INTEGER NOT NULL
);
