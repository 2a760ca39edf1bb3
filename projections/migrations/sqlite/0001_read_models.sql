-- Read models: derived from the log, rebuildable at any time, never a source of truth.
--
-- Each build of a projector is a generation with its own documents, so a new version (or a
-- rebuild) can be built from position 0 while the old generation keeps answering; `active`
-- says which one answers. A generation's documents and its checkpoint change in the same
-- transaction.

CREATE TABLE projections (
    name           TEXT    NOT NULL,
    generation     INTEGER NOT NULL,
    -- The projector code's version that built this generation.
    version        INTEGER NOT NULL,
    position       INTEGER NOT NULL DEFAULT 0,
    -- building | live | failed | retired
    state          TEXT    NOT NULL DEFAULT 'building',
    active         INTEGER NOT NULL DEFAULT 0,
    error          TEXT,
    error_position INTEGER,
    updated_at     TEXT    NOT NULL,
    PRIMARY KEY (name, generation)
);

CREATE TABLE documents (
    projection TEXT    NOT NULL,
    generation INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    -- The document this one belongs to (a project's community), for listing by parent.
    parent     TEXT,
    doc        TEXT    NOT NULL,
    PRIMARY KEY (projection, generation, kind, key)
) WITHOUT ROWID;

CREATE INDEX documents_by_parent ON documents (projection, generation, kind, parent);
