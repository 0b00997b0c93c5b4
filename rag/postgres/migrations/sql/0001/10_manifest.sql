-- The document manifest (rag/postgres/manifest.py): what each collection holds, and
-- which of it queries may see. The same tables as the SQLite manifest
-- (rag/retrieval/manifest.py); times are seconds since the epoch.
CREATE TABLE manifest_documents (
    collection  text NOT NULL,
    doc_id      text NOT NULL,
    sha256      text NOT NULL,
    status      text NOT NULL CHECK (status IN ('pending', 'indexed', 'failed', 'deleting')),
    title       text NOT NULL DEFAULT '',
    chunks      integer NOT NULL DEFAULT 0,
    error_code  text,
    error       text,
    pipeline    text NOT NULL,
    created_at  double precision NOT NULL,
    updated_at  double precision NOT NULL,
    PRIMARY KEY (collection, doc_id)
);
CREATE INDEX manifest_documents_by_status ON manifest_documents (status, collection);

-- Each path a document was ingested from, and the name readers know it by.
CREATE TABLE manifest_sources (
    collection  text NOT NULL,
    source      text NOT NULL,
    doc_id      text NOT NULL,
    size        bigint NOT NULL,
    mtime_ns    bigint NOT NULL,
    updated_at  double precision NOT NULL,
    name        text NOT NULL,
    PRIMARY KEY (collection, source)
);
CREATE INDEX manifest_sources_by_doc ON manifest_sources (collection, doc_id);
