-- The event log on PostgreSQL: events, the commands that wrote them, API tokens, and the two
-- functions that keep readers from skipping events (see store/src/postgres.rs).
--
-- `events` is append-only (triggers refuse UPDATE, DELETE and TRUNCATE). Positions come from a
-- sequence, so they increase but may leave a gap where a transaction rolled back; (stream_id,
-- version) is unique, so the database itself refuses a second writer of the same version.

CREATE SEQUENCE events_position_seq AS bigint MINVALUE 1 START 1 CACHE 1 NO CYCLE;

CREATE TABLE events (
    position       bigint      PRIMARY KEY,
    id             uuid        NOT NULL,
    stream_id      text        NOT NULL,
    version        bigint      NOT NULL CHECK (version >= 1),
    event_type     text        NOT NULL,
    schema_version integer     NOT NULL,
    -- `json`, not `jsonb`: the text is kept exactly as hashed.
    data           json        NOT NULL,
    metadata       json        NOT NULL,
    recorded_at    timestamptz NOT NULL,
    hash           text        NOT NULL,
    command_id     uuid        NOT NULL,
    CONSTRAINT events_id_unique UNIQUE (id),
    CONSTRAINT events_stream_version_unique UNIQUE (stream_id, version)
);

ALTER SEQUENCE events_position_seq OWNED BY events.position;

CREATE INDEX events_command_id ON events (command_id);

CREATE FUNCTION lianxi_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: % refused', TG_OP;
END;
$$;

CREATE TRIGGER events_no_update_or_delete BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION lianxi_refuse_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION lianxi_refuse_change();

-- One row per command that appended, written in the same transaction as its events. A command
-- without an idempotency key has NULL scope/key; NULLs never collide in a UNIQUE constraint.
CREATE TABLE commands (
    command_id     uuid   PRIMARY KEY,
    idem_scope     text,
    idem_key       text,
    request_hash   text,
    stream_id      text   NOT NULL,
    event_count    bigint NOT NULL CHECK (event_count >= 1),
    last_position  bigint NOT NULL,
    CONSTRAINT commands_idempotency_unique UNIQUE (idem_scope, idem_key)
);

-- Bearer tokens, by SHA-256 hash only.
CREATE TABLE tokens (
    id         uuid        PRIMARY KEY,
    hash       text        NOT NULL,
    role       text        NOT NULL,
    scope      uuid,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL,
    CONSTRAINT tokens_hash_unique UNIQUE (hash)
);

-- A writer's first step before it takes positions: it announces, as a shared advisory lock
-- held until its transaction ends, a number below every position it will take. Readers see the
-- lock in pg_locks whether or not the transaction has committed.
--
-- The lock's key is the sequence's last handed-out value (0 before the first), read before any
-- of this transaction's nextval calls, so every position it takes is greater. Shared, so writers
-- never wait for one another here.
CREATE FUNCTION lianxi_reserve_positions(how_many integer) RETURNS SETOF bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    floor_position bigint;
BEGIN
    SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END
      INTO floor_position FROM events_position_seq;
    PERFORM pg_advisory_xact_lock_shared(floor_position);
    RETURN QUERY SELECT nextval('events_position_seq') FROM generate_series(1, how_many);
END;
$$;

-- The highest position a reader may read up to without ever skipping an event that commits
-- later at a lower position: every position at or below it is committed (and visible to the
-- reader's next statement) or will never be.
--
-- First the sequence's last handed-out value, then the lowest key announced by a writer still in
-- progress (any bigint advisory lock in this database): a writer that had taken a position by the
-- first step still holds its lock at the second, or has finished. The order of the two steps is
-- what makes this safe, so they are two statements of one function. Transactions that never
-- write the log hold no such lock and never hold readers back, unlike pg_snapshot_xmin.
CREATE FUNCTION lianxi_safe_position() RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    handed_out bigint;
    lowest_in_flight bigint;
BEGIN
    SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END
      INTO handed_out FROM events_position_seq;
    SELECT min((l.classid::bigint << 32) | l.objid::bigint)
      INTO lowest_in_flight
      FROM pg_locks AS l
     WHERE l.locktype = 'advisory'
       AND l.objsubid = 1
       -- lianxi's keys are never negative; a negative key is someone else's lock.
       AND l.classid::bigint < 2147483648
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database());
    RETURN least(handed_out, coalesce(lowest_in_flight, handed_out));
END;
$$;

-- Up to `page` events after position `after`, never past the safe position. The events are read
-- by a statement of their own, so under READ COMMITTED its snapshot is taken after the safe
-- position was (a VOLATILE function takes a fresh snapshot for each statement).
CREATE FUNCTION lianxi_read_all(after bigint, page bigint)
RETURNS TABLE ("position" bigint, id uuid, stream_id text, version bigint, event_type text,
               schema_version integer, data text, metadata text, recorded_at timestamptz,
               hash text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    safe bigint := lianxi_safe_position();
BEGIN
    RETURN QUERY
        SELECT e.position, e.id, e.stream_id, e.version, e.event_type, e.schema_version,
               e.data::text, e.metadata::text, e.recorded_at, e.hash
          FROM events AS e
         WHERE e.position > after AND e.position <= safe
         ORDER BY e.position
         LIMIT page;
END;
$$;

-- The last event a reader can read: the highest position at or below the safe position.
CREATE FUNCTION lianxi_head() RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    safe bigint := lianxi_safe_position();
BEGIN
    RETURN coalesce((SELECT max(e.position) FROM events AS e WHERE e.position <= safe), 0);
END;
$$;

-- Every stream a batch writes or reads facts from, locked in one global order so writers of
-- different processes never deadlock: exclusive for streams it appends to, shared for streams it
-- only requires unchanged. The two-key form keeps these apart from the positions' bigint locks.
CREATE FUNCTION lianxi_lock_streams(appended text[], read text[]) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    item record;
BEGIN
    FOR item IN
        SELECT key, bool_or(exclusive) AS exclusive
          FROM (SELECT hashtext(s) AS key, true AS exclusive FROM unnest(appended) AS s
                UNION ALL
                SELECT hashtext(s), false FROM unnest(read) AS s) AS wanted
         GROUP BY key
         ORDER BY key
    LOOP
        IF item.exclusive THEN
            PERFORM pg_advisory_xact_lock(1819833204, item.key);
        ELSE
            PERFORM pg_advisory_xact_lock_shared(1819833204, item.key);
        END IF;
    END LOOP;
END;
$$;
