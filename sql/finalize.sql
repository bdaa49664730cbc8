-- Last step of CREATE EXTENSION: nothing is reachable by PUBLIC, and the installation is checked
-- (right database, preloaded or not).
-- (Created here because it reads a function of the extension.)
-- Pushes in flight (any session's, when the library is preloaded): rows and bytes sent so far.
CREATE VIEW @extschema@.progress AS
SELECT p.pid, p.run_id, p.source, r.data_table_key, p.started_at,
       pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) p.started_at AS elapsed,
       p.chunks, p.rows_sent, p.bytes_sent, p.restarts
  FROM @extschema@._progress() p
  JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) p.pid
  LEFT JOIN @extschema@.runs r ON r.run_id OPERATOR(pg_catalog.=) p.run_id;

REVOKE ALL ON ALL TABLES IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON SCHEMA @extschema@ FROM PUBLIC;
SELECT @extschema@._check_installation();
