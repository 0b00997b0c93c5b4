-- The keyword index (rag/postgres/keywords.py): BM25 over each collection's chunks.
--
-- Every statistic is per collection: its number of chunks and their total length
-- (keyword_collections), and how many of its chunks hold each word (keyword_terms).
-- They change in the same transaction as the chunks, under the lock of the
-- collection's row.
CREATE TABLE keyword_collections (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name    text NOT NULL UNIQUE,
    chunks  bigint NOT NULL DEFAULT 0,
    length  bigint NOT NULL DEFAULT 0
);

-- One row a chunk. `terms` holds its words (Lore's own tokens, never PostgreSQL's
-- parser's) with their positions, so a word's frequency is its number of positions;
-- `length` is the number of words; `id` the order chunks were written in, which chunks
-- of equal score keep in a ranking.
CREATE TABLE keyword_chunks (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    collection  bigint NOT NULL REFERENCES keyword_collections (id) ON DELETE CASCADE,
    chunk_id    text NOT NULL,
    doc_id      text NOT NULL,
    length      integer NOT NULL,
    terms       tsvector NOT NULL,
    UNIQUE (collection, chunk_id)
);
CREATE INDEX keyword_chunks_by_doc ON keyword_chunks (collection, doc_id);
CREATE INDEX keyword_chunks_terms ON keyword_chunks USING gin (terms);

-- How many chunks of the collection hold each word (a row that falls to 0 is removed
-- in the same transaction).
CREATE TABLE keyword_terms (
    collection  bigint NOT NULL REFERENCES keyword_collections (id) ON DELETE CASCADE,
    term        text NOT NULL,
    chunks      bigint NOT NULL CHECK (chunks >= 0),
    PRIMARY KEY (collection, term)
);
