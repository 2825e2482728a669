-- Task listings by status, type and name: each filter combination reads index ranges in its keyset
-- order (id, newest first), however rare its rows are among the tasks of one status, type or name.
--
-- Before, a combination was served by the index of one filter with the others checked on the heap:
-- ?status=dead&type=publish on 2,000,000 tasks walked 20,000 dead tasks (22 ms with a custom plan),
-- or the whole primary key with a generic one (1.3 s). Now the tasks of one (status, type) pair
-- are one range of tasks_status_type_id_idx, and those of one (name, status, type) one range of
-- tasks_name_status_type_id_idx. A listing finds the pairs that exist with a loose index scan (one
-- index probe per pair, about 30 in all), reads the newest page of each pair's range and keeps the
-- newest of those (data/queries/api.sql, list_tasks_by_*).
--
-- The two indexes replace the three they make redundant ((status, id), (type, id), (name, id)):
-- every write of a task (insert, and each status change, as none is a HOT update) maintains one
-- index fewer. Built in the migration's transaction, so writes to tasks wait for the build.
CREATE INDEX tasks_status_type_id_idx ON tasks (status, type, id);
CREATE INDEX tasks_name_status_type_id_idx ON tasks (name, status, type, id);
DROP INDEX tasks_status_id_idx;
DROP INDEX tasks_type_id_idx;
DROP INDEX tasks_name_id_idx;
