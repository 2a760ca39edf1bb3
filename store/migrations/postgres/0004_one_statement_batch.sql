-- A batch decided on stream heads the writer already knew, written in one statement: its own
-- implicit transaction, so one round trip both writes it and (at the statement's end) commits
-- it, against four for a batch prepared under locks (BEGIN, lianxi_prepare_batch,
-- lianxi_write_batch, COMMIT). See store/src/postgres/writer.rs.
--
-- `appended` are the streams the batch appends to, with the head each was decided on
-- (`appended_version`, 0 for a stream with no events, and `appended_hash`, NULL then); `read`
-- are the streams it only requires unchanged, at `read_version`. The streams are locked as
-- lianxi_prepare_batch locks them, then their heads are compared with those: if any differs
-- (another process, or a batch of this one that failed, got there first), nothing is written
-- and the statement fails with SQLSTATE LX001, and the writer prepares the batch under locks.
-- Otherwise the rest is lianxi_write_batch's, and a command id or idempotency key already in
-- the log fails the statement on the table's unique constraints, as there.
CREATE FUNCTION lianxi_append_batch(
    appended text[], appended_version bigint[], appended_hash text[],
    read text[], read_version bigint[],
    e_id uuid[], e_stream text[], e_version bigint[], e_type text[], e_schema integer[],
    e_data text[], e_metadata text[], e_recorded_at timestamptz[], e_hash text[],
    e_command uuid[],
    c_id uuid[], c_scope text[], c_key text[], c_request_hash text[], c_stream text[],
    c_count bigint[], c_last integer[], writer text)
RETURNS SETOF bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    moved text;
BEGIN
    PERFORM lianxi_lock_streams(appended, read);
    -- A statement of its own: under READ COMMITTED it sees every commit made before the locks
    -- were granted.
    SELECT s.stream INTO moved
      FROM unnest(appended || read,
                  appended_version || read_version,
                  appended_hash || array_fill(NULL::text, ARRAY[cardinality(read)]),
                  array_fill(true, ARRAY[cardinality(appended)])
                      || array_fill(false, ARRAY[cardinality(read)]))
           AS s (stream, version, hash, chained)
      LEFT JOIN LATERAL (
          SELECT e.version, e.hash FROM events AS e
           WHERE e.stream_id = s.stream
           ORDER BY e.version DESC LIMIT 1) AS latest ON true
     WHERE coalesce(latest.version, 0) <> s.version
        OR (s.chained AND latest.hash IS DISTINCT FROM s.hash)
     LIMIT 1;
    IF moved IS NOT NULL THEN
        RAISE EXCEPTION 'stream % is no longer at the head this batch was decided on', moved
              USING ERRCODE = 'LX001';
    END IF;
    RETURN QUERY SELECT * FROM lianxi_write_batch(
        e_id, e_stream, e_version, e_type, e_schema, e_data, e_metadata, e_recorded_at, e_hash,
        e_command, c_id, c_scope, c_key, c_request_hash, c_stream, c_count, c_last, writer);
END;
$$;
