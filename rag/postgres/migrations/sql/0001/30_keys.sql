-- API keys (rag/postgres/keys.py). Only the sha256 of a key's secret is kept; a key is
-- never deleted, only revoked, so an audit entry's `key:<id>` always names a known key.
CREATE TABLE api_keys (
    key_id       text PRIMARY KEY,
    name         text NOT NULL,
    role         text NOT NULL CHECK (role IN ('admin', 'reader', 'writer')),
    collections  text[] NOT NULL,
    secret_hash  text NOT NULL,
    created_at   double precision NOT NULL,
    revoked_at   double precision
);
