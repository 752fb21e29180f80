-- Which run put which artifact. The content is in the blob store under its SHA-256 (hex, in
-- `digest`); these rows tell a garbage collector which blobs runs still reference.
CREATE TABLE artifacts (
    run_id     text        NOT NULL,
    digest     text        NOT NULL,
    size       bigint      NOT NULL,
    media_type text        NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (run_id, digest)
);
CREATE INDEX artifacts_by_digest ON artifacts (digest, created_at);
