-- Ratings of answers (rag/postgres/feedback.py), kept until someone removes them. `seq`
-- is the order they were given in; `id` is what a rating is known by outside.
CREATE TABLE feedback_ratings (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          text NOT NULL UNIQUE,
    at          double precision NOT NULL,
    actor       text NOT NULL,
    collection  text NOT NULL,
    question    text NOT NULL,
    answer      text NOT NULL,
    chunk_ids   text[] NOT NULL,
    rating      text NOT NULL CHECK (rating IN ('up', 'down')),
    comment     text,
    request_id  text
);
