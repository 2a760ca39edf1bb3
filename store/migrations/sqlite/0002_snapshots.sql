-- Folded stream states saved beside the log (see `store::Snapshot`), so that a long stream loads
-- from its newest snapshot and the events after it. A cache of the log, never a source: rows are
-- replaced by newer ones, and the whole table may be emptied at any time.

CREATE TABLE snapshots (
    stream_id TEXT    NOT NULL,
    schema    INTEGER NOT NULL,
    version   INTEGER NOT NULL CHECK (version >= 1),
    state     TEXT    NOT NULL,
    saved_at  TEXT    NOT NULL,
    PRIMARY KEY (stream_id, schema)
) WITHOUT ROWID;
