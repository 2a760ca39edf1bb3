-- The trace index as posting lists: for each entity, the positions of the events that concern
-- it, a few hundred to a row, instead of one row per (entity, event).
--
-- `entity` is `project:<uuid>`, `unit:<uuid>`, `actor:<uuid>`, `community:<uuid>` or
-- `district:<uuid>`; `positions` holds ascending log positions as LEB128 varints, the first
-- one whole and each next one as its distance from the one before; `last_position` is the
-- row's last position, so an entity's rows read in log order and a row written twice (a batch
-- applied again after a failed commit) is the same row. A million-event log has about five
-- million (entity, event) pairs: as rows of their own they were most of a rebuild's writes.
-- Generations of `trace` from version 2 on write here; version 1's `trace_index` is read
-- while a version-1 generation still answers, and emptied when it is retired.

CREATE TABLE trace_postings (
    generation    INTEGER NOT NULL,
    entity        TEXT    NOT NULL,
    last_position INTEGER NOT NULL,
    positions     BLOB    NOT NULL,
    PRIMARY KEY (generation, entity, last_position)
) WITHOUT ROWID;
