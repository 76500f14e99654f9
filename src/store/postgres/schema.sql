-- The PostgreSQL side of the remote backend (see mod.rs): everything that
-- changes. Write-once objects (full tiles and bundles, the static copy) are
-- in the bucket. Created idempotently at every start, under an advisory
-- lock so that frontends starting together do not race.
SELECT pg_advisory_xact_lock(7262746150);

-- The one coordination row: the committed tree size, the latest
-- checkpoint, the search index watermark, and the sequencer lease. Every
-- commit locks it (SELECT ... FOR UPDATE) and checks the lease token.
CREATE TABLE IF NOT EXISTS vt_log (
    id smallint PRIMARY KEY CHECK (id = 1),
    tree_size bigint NOT NULL,
    checkpoint bytea,
    index_watermark bigint,
    lease_holder text,
    lease_token bigint NOT NULL DEFAULT 0,
    lease_expires_at timestamptz
);
INSERT INTO vt_log (id, tree_size) VALUES (1, 0) ON CONFLICT DO NOTHING;
-- Where the lease holder takes writes (its advertised URL).
ALTER TABLE vt_log ADD COLUMN IF NOT EXISTS lease_address text;

-- The right edge: partial hash tiles and the partial entry bundle. A row
-- is deleted when its tile becomes full (and is then in the bucket).
CREATE TABLE IF NOT EXISTS vt_partial_tile (
    level smallint NOT NULL,
    idx bigint NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (level, idx)
);
CREATE TABLE IF NOT EXISTS vt_partial_bundle (
    idx bigint PRIMARY KEY,
    data bytea NOT NULL
);

-- Plaintext event bodies (logs from before encryption at rest).
CREATE TABLE IF NOT EXISTS vt_event (
    idx bigint PRIMARY KEY,
    data bytea NOT NULL
);

-- Idempotency keys (16 bytes) and leaf hashes (32 bytes): first index wins.
CREATE TABLE IF NOT EXISTS vt_dedupe (
    key bytea PRIMARY KEY,
    idx bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS vt_leaf (
    key bytea PRIMARY KEY,
    idx bigint NOT NULL
);

-- Small records by space (metadata, API keys, data keys, sealed bodies,
-- erasure tombstones, governance).
CREATE TABLE IF NOT EXISTS vt_record (
    space smallint NOT NULL,
    key bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (space, key)
);

-- Search index blocks.
CREATE TABLE IF NOT EXISTS vt_index_block (
    bucket bytea NOT NULL,
    at bigint NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (bucket, at)
);
