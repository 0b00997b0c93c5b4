-- The audit log (rag/postgres/audit.py): one hash chain, as rag/governance/audit.py
-- describes it. The columns are those of the SQLite log, the id lists as JSON text, so
-- that an entry's hash recomputes from its row in either. `at` is a double precision,
-- the same 64-bit float the hash covers.
CREATE TABLE audit_entries (
    seq         bigint PRIMARY KEY,
    at          double precision NOT NULL,
    actor       text NOT NULL,
    operation   text NOT NULL,
    collection  text,
    question    text,
    chunk_ids   text NOT NULL,
    doc_ids     text NOT NULL,
    status      integer NOT NULL,
    request_id  text,
    -- Unique: two entries that follow the same one would fork the chain.
    prev_hash   text NOT NULL UNIQUE,
    hash        text NOT NULL
);
CREATE INDEX audit_entries_at ON audit_entries (at);

-- The seq and hash of the last entry the retention prune removed: what follows verifies
-- from it instead of from 64 zeros.
CREATE TABLE audit_anchor (
    id    integer PRIMARY KEY CHECK (id = 1),
    seq   bigint NOT NULL,
    hash  text NOT NULL
);

-- Refuses the change its trigger guards, with the message TG_ARGV[1]; when TG_ARGV[0] is
-- 'prune', lets it through inside the retention prune's transaction, which marks itself
-- with set_config('lore.audit_pruning', 'on', true). Like the SQLite log's triggers, these
-- stop mistakes and casual edits; the hash chain shows the rest.
CREATE FUNCTION audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_ARGV[0] = 'prune' AND current_setting('lore.audit_pruning', true) = 'on' THEN
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        RETURN NEW;
    END IF;
    RAISE EXCEPTION '%', TG_ARGV[1];
END
$$;

CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION audit_refuse('never', 'audit entries are append-only');
CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION audit_refuse(
        'prune', 'audit entries are append-only; only the retention prune removes them');
CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse(
        'never', 'audit entries are append-only; only the retention prune removes them');
CREATE TRIGGER audit_anchor_no_change BEFORE INSERT OR UPDATE ON audit_anchor
    FOR EACH ROW EXECUTE FUNCTION audit_refuse(
        'prune', 'the audit anchor is set only by the retention prune');
CREATE TRIGGER audit_anchor_no_delete BEFORE DELETE ON audit_anchor
    FOR EACH ROW EXECUTE FUNCTION audit_refuse('never', 'the audit anchor is never removed');
CREATE TRIGGER audit_anchor_no_truncate BEFORE TRUNCATE ON audit_anchor
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse(
        'never', 'the audit anchor is never removed');
