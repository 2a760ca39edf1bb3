-- Room on every page of `documents` for a document's next version. A live batch rewrites the
-- same hot documents (a community's board, a unit's profile, a quarter's statistics) again and
-- again; with free space on its page an update is HOT: no new entry in either index, a third of
-- the WAL, and the old version pruned in place. Applies to pages written from now on (a new
-- generation's documents); a full table keeps its pages until it is rewritten.
ALTER TABLE documents SET (fillfactor = 70);
