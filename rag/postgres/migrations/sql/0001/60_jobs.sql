-- Ingest jobs in cluster mode (rag/postgres/jobs.py; ingest/queue.py runs them): what
-- every API process reads, and what workers share. A job's files are split into parts,
-- each run by one Procrastinate job (`queue_id`), so several workers share one job.
-- Paths are bytea (the file system's bytes, exact whatever their encoding); results and
-- reports are JSON text, which keeps any character a file name may hold.
CREATE TABLE ingest_jobs (
    id                text PRIMARY KEY,
    collection        text NOT NULL,
    paths             bytea[] NOT NULL,
    actor             text NOT NULL,
    status            text NOT NULL
                      CHECK (status IN ('queued', 'running', 'done', 'cancelled', 'failed')),
    -- Asked to stop: every part stops before its next file.
    cancel_requested  boolean NOT NULL DEFAULT false,
    total             integer NOT NULL DEFAULT 0,
    done              integer NOT NULL DEFAULT 0,
    counts            jsonb NOT NULL DEFAULT '{}',
    -- Seconds by stage (plan, parse, embed, write), summed over the parts that ended.
    seconds           jsonb NOT NULL DEFAULT '{}',
    report            text,
    error             text,
    doc_ids           jsonb NOT NULL DEFAULT '[]',
    created_at        double precision NOT NULL,
    started_at        double precision,
    finished_at       double precision,
    -- The Procrastinate job that starts it: lists its files and defers its parts.
    queue_id          bigint
);
CREATE INDEX ingest_jobs_created_at ON ingest_jobs (created_at);
CREATE INDEX ingest_jobs_finished_at ON ingest_jobs (finished_at);

CREATE TABLE ingest_job_parts (
    job_id    text NOT NULL REFERENCES ingest_jobs (id) ON DELETE CASCADE,
    part      integer NOT NULL,
    status    text NOT NULL CHECK (status IN ('waiting', 'running', 'finished')),
    -- How many times a worker took it (a worker that died leaves it to the next one),
    -- and which took it last (host:pid).
    attempts  integer NOT NULL DEFAULT 0,
    taken_by  text,
    queue_id  bigint,
    PRIMARY KEY (job_id, part)
);

CREATE TABLE ingest_job_files (
    job_id    text NOT NULL,
    position  integer NOT NULL,
    part      integer NOT NULL,
    path      bytea NOT NULL,
    name      text NOT NULL,
    -- The file's IngestResult (JSON) once it was handled; a part run again skips it.
    result    text,
    PRIMARY KEY (job_id, position),
    FOREIGN KEY (job_id, part) REFERENCES ingest_job_parts (job_id, part) ON DELETE CASCADE
);
CREATE INDEX ingest_job_files_part ON ingest_job_files (job_id, part, position);
