-- The audit log's hash chain (keyward_core::audit_chain): every event written from now on
-- carries its chain (its workspace id, '' for none), its position in the chain, the hash of the
-- event before it and its own hash, in the transaction of the change it records. Events written
-- before this migration stay outside every chain (position NULL).
ALTER TABLE audit_events ADD COLUMN chain TEXT;
ALTER TABLE audit_events ADD COLUMN seq INTEGER;
ALTER TABLE audit_events ADD COLUMN prev_hash TEXT;
ALTER TABLE audit_events ADD COLUMN hash TEXT;
CREATE UNIQUE INDEX audit_events_chain_seq ON audit_events (chain, seq);

-- Each chain's newest event (the head) and the last event purged by the retention (the anchor
-- the remaining events follow).
CREATE TABLE audit_heads (
    chain       TEXT    NOT NULL PRIMARY KEY,
    seq         INTEGER NOT NULL,
    hash        TEXT    NOT NULL,
    anchor_seq  INTEGER NOT NULL,
    anchor_hash TEXT    NOT NULL
);
