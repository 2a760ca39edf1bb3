-- The trace index as posting lists (as on SQLite; see its 0004 for the format): for each
-- entity, the positions of the events that concern it, a few hundred to a row.

CREATE TABLE trace_postings (
    generation    BIGINT NOT NULL,
    entity        TEXT COLLATE "C" NOT NULL,
    last_position BIGINT NOT NULL,
    positions     BYTEA  NOT NULL,
    PRIMARY KEY (generation, entity, last_position)
);
