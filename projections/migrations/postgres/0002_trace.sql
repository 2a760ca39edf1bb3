-- The supervisors' trace index: for each event, the entities it concerns (as on SQLite).
--
-- One row per (entity, event): `entity` is `project:<uuid>`, `unit:<uuid>`, `actor:<uuid>`,
-- `community:<uuid>` or `district:<uuid>`, `position` the event's log position. A trace reads
-- the positions of one entity in order (the primary key is that index) and then the events
-- themselves from the log. Rows belong to a generation of the `trace` projection, like
-- documents: they are written in the same transaction as its checkpoint, and the rows of a
-- generation that no longer answers are deleted by the projector.

CREATE TABLE trace_index (
    generation BIGINT NOT NULL,
    entity     TEXT COLLATE "C" NOT NULL,
    position   BIGINT NOT NULL,
    PRIMARY KEY (generation, entity, position)
);
