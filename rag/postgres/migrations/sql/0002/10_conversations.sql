-- Saved conversations (rag/postgres/conversations.py), each of one key (`owner`, its key
-- id), removed after conversation_retention_days without an update. `seq` orders those
-- updated at the same moment; `id` is what a conversation is known by outside.
CREATE TABLE conversations (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          text NOT NULL UNIQUE,
    owner       text NOT NULL,
    title       text NOT NULL,
    collection  text NOT NULL,
    filters     jsonb NOT NULL,
    created_at  double precision NOT NULL,
    updated_at  double precision NOT NULL
);
CREATE INDEX conversations_by_owner ON conversations (owner, updated_at);
CREATE INDEX conversations_by_update ON conversations (updated_at);

-- One row a question and its answer, in the order they were added (`seq`).
CREATE TABLE conversation_turns (
    seq              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation_id  text NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    at               double precision NOT NULL,
    question         text NOT NULL,
    answer           text NOT NULL,
    query            text,
    declined         boolean NOT NULL,
    citations        jsonb NOT NULL,
    sources          jsonb NOT NULL
);
CREATE INDEX conversation_turns_in_order ON conversation_turns (conversation_id, seq);
