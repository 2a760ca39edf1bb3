-- The event log, the commands that wrote it, and API tokens.
--
-- `events` is append-only: positions are assigned by the single writer in commit order with no
-- gaps, (stream_id, version) is unique so the database itself refuses a second writer of the
-- same version, and triggers refuse any UPDATE or DELETE.

CREATE TABLE events (
    position       INTEGER PRIMARY KEY,
    id             TEXT    NOT NULL,
    stream_id      TEXT    NOT NULL,
    version        INTEGER NOT NULL CHECK (version >= 1),
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    data           TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    recorded_at    TEXT    NOT NULL,
    hash           TEXT    NOT NULL,
    command_id     TEXT    NOT NULL,
    CONSTRAINT events_id_unique UNIQUE (id),
    CONSTRAINT events_stream_version_unique UNIQUE (stream_id, version)
);

CREATE TRIGGER events_no_update
BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only: UPDATE refused');
END;

CREATE TRIGGER events_no_delete
BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only: DELETE refused');
END;

-- One row per command that appended, written in the same transaction as its events. A command
-- without an idempotency key has NULL scope/key; NULLs never collide in a UNIQUE constraint.
CREATE TABLE commands (
    command_id     TEXT    PRIMARY KEY NOT NULL,
    idem_scope     TEXT,
    idem_key       TEXT,
    request_hash   TEXT,
    stream_id      TEXT    NOT NULL,
    first_position INTEGER NOT NULL REFERENCES events (position),
    last_position  INTEGER NOT NULL REFERENCES events (position),
    CONSTRAINT commands_idempotency_unique UNIQUE (idem_scope, idem_key)
);

-- Bearer tokens, by SHA-256 hash only.
CREATE TABLE tokens (
    id         TEXT PRIMARY KEY NOT NULL,
    hash       TEXT NOT NULL,
    role       TEXT NOT NULL,
    scope      TEXT,
    name       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    CONSTRAINT tokens_hash_unique UNIQUE (hash)
);
