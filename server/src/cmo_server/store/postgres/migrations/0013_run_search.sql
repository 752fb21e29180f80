-- ListRuns by id prefix reads one range of this index in id order, byte by byte: in the database's
-- collation (en_US and most others) the ids that start with a prefix are not one range of the
-- primary key, and a search would read every run of the namespace.
CREATE INDEX runs_by_id ON runs (namespace, run_id COLLATE "C");
