-- Folded stream states saved beside the log (see `store::Snapshot`), so that a long stream loads
-- from its newest snapshot and the events after it. A cache of the log, never a source: rows are
-- replaced by newer ones, the table is not part of a backup, and it may be emptied at any time.

CREATE TABLE snapshots (
    stream_id text        NOT NULL,
    schema    integer     NOT NULL,
    version   bigint      NOT NULL CHECK (version >= 1),
    state     text        NOT NULL,
    saved_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, schema)
);
