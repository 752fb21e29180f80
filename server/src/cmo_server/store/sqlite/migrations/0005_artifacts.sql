-- Which run put which artifact. The content is in the blob store under its SHA-256 (hex, in
-- `digest`); these rows tell a garbage collector which blobs runs still reference.
CREATE TABLE artifacts (
    run_id     TEXT    NOT NULL,
    digest     TEXT    NOT NULL,
    size       INTEGER NOT NULL,
    media_type TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (run_id, digest)
) WITHOUT ROWID;
CREATE INDEX artifacts_by_digest ON artifacts (digest, created_at);
