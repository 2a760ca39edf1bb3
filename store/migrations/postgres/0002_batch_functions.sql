-- A group commit in two statements instead of seven: what a batch depends on, read after its
-- streams are locked, and everything it writes, with its positions taken inside.
--
-- Round trips to a busy server cost more than the statements themselves, and one writer
-- connection per server writes every batch; see store/src/postgres/writer.rs.

-- Locks the batch's streams (see lianxi_lock_streams), then returns the heads of those streams
-- (kind 'head': stream_id, version, hash) and the earlier commands that share a command id or an
-- idempotency key with the batch (kind 'command': command_id, idem_scope, idem_key,
-- request_hash). Each lookup is a statement of its own, so under READ COMMITTED it sees every
-- commit made before the locks were granted.
CREATE FUNCTION lianxi_prepare_batch(appended text[], read text[], command_ids uuid[],
                                     scopes text[], keys text[])
RETURNS TABLE (kind text, stream_id text, version bigint, hash text, command_id text,
               idem_scope text, idem_key text, request_hash text)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM lianxi_lock_streams(appended, read);
    RETURN QUERY
        SELECT 'head', s.stream, latest.version, latest.hash,
               NULL::text, NULL::text, NULL::text, NULL::text
          FROM unnest(appended || read) AS s (stream)
          CROSS JOIN LATERAL (
              SELECT e.version, e.hash FROM events AS e
               WHERE e.stream_id = s.stream
               ORDER BY e.version DESC LIMIT 1) AS latest;
    -- One index lookup per id and per key (LATERAL … LIMIT 1 keeps the planner from hashing the
    -- whole table: it cannot tell how few ids an array holds).
    RETURN QUERY
        SELECT 'command', NULL::text, NULL::bigint, NULL::text,
               c.command_id::text, c.idem_scope, c.idem_key, c.request_hash
          FROM unnest(command_ids) AS wanted (id)
          CROSS JOIN LATERAL (
              SELECT * FROM commands AS found WHERE found.command_id = wanted.id LIMIT 1) AS c
        UNION
        SELECT 'command', NULL::text, NULL::bigint, NULL::text,
               c.command_id::text, c.idem_scope, c.idem_key, c.request_hash
          FROM unnest(scopes, keys) AS wanted (scope, key)
          CROSS JOIN LATERAL (
              SELECT * FROM commands AS found
               WHERE found.idem_scope = wanted.scope AND found.idem_key = wanted.key
               LIMIT 1) AS c;
END;
$$;

-- Writes a decided batch: takes positions for its events (announcing the floor first, see
-- lianxi_reserve_positions), inserts the events in the order given and one row per command
-- (`c_last` is the 1-based index of the command's last event in the event arrays), notifies
-- lianxi_events with `<writer>:<last position>` (so a store can tell its own commits from
-- others'), and returns the positions in event order.
CREATE FUNCTION lianxi_write_batch(
    e_id uuid[], e_stream text[], e_version bigint[], e_type text[], e_schema integer[],
    e_data text[], e_metadata text[], e_recorded_at timestamptz[], e_hash text[],
    e_command uuid[],
    c_id uuid[], c_scope text[], c_key text[], c_request_hash text[], c_stream text[],
    c_count bigint[], c_last integer[], writer text)
RETURNS SETOF bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    positions bigint[];
BEGIN
    positions := ARRAY(SELECT p FROM lianxi_reserve_positions(cardinality(e_id)) AS p ORDER BY p);
    INSERT INTO events (position, id, stream_id, version, event_type, schema_version, data,
                        metadata, recorded_at, hash, command_id)
    SELECT positions[i], e_id[i], e_stream[i], e_version[i], e_type[i], e_schema[i],
           e_data[i]::json, e_metadata[i]::json, e_recorded_at[i], e_hash[i], e_command[i]
      FROM generate_subscripts(e_id, 1) AS i;
    INSERT INTO commands (command_id, idem_scope, idem_key, request_hash, stream_id,
                          event_count, last_position)
    SELECT c_id[j], c_scope[j], c_key[j], c_request_hash[j], c_stream[j], c_count[j],
           positions[c_last[j]]
      FROM generate_subscripts(c_id, 1) AS j;
    PERFORM pg_notify('lianxi_events', writer || ':' || positions[cardinality(positions)]);
    RETURN QUERY SELECT unnest(positions);
END;
$$;
