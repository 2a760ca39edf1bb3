-- Read models: derived from the log, rebuildable at any time, never a source of truth.
-- The same tables as the embedded (SQLite) read models, in the schema `read_models` (every
-- connection of the read models' pool has it as its search_path; see `readdb/postgres.rs`).
--
-- Each build of a projector is a generation with its own documents, so a new version (or a
-- rebuild) can be built from position 0 while the old generation keeps answering; `active`
-- says which one answers (0 or 1, as on SQLite, so the queries are the same text). A
-- generation's documents and its checkpoint change in the same transaction. Text that is
-- compared or sorted uses the "C" collation: byte order, as SQLite's BINARY.

CREATE TABLE projections (
    name           TEXT COLLATE "C" NOT NULL,
    generation     BIGINT  NOT NULL,
    -- The projector code's version that built this generation.
    version        BIGINT  NOT NULL,
    position       BIGINT  NOT NULL DEFAULT 0,
    -- building | live | failed | retired
    state          TEXT    NOT NULL DEFAULT 'building',
    active         INTEGER NOT NULL DEFAULT 0,
    error          TEXT,
    error_position BIGINT,
    updated_at     TEXT    NOT NULL,
    PRIMARY KEY (name, generation)
);

CREATE TABLE documents (
    projection TEXT COLLATE "C" NOT NULL,
    generation BIGINT NOT NULL,
    kind       TEXT COLLATE "C" NOT NULL,
    key        TEXT COLLATE "C" NOT NULL,
    -- The document this one belongs to (a project's community), for listing by parent.
    parent     TEXT COLLATE "C",
    doc        TEXT NOT NULL,
    PRIMARY KEY (projection, generation, kind, key)
);

CREATE INDEX documents_by_parent ON documents (projection, generation, kind, parent);
