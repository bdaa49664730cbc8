-- A read as the reader leaves nothing behind. The source's own code (an RLS policy, a view, a
-- function the view calls) runs as the reader while the extension reads it; nothing it does may
-- survive the read, and none of it may reach the extension's own SQL, which runs as the caller.
-- There is no Qobra here: pushes fail to connect after reading, which is all this file needs.
SET client_min_messages = error;
SELECT qobra_sync.set_destination('qk_regress_sandbox_0000', 'http://127.0.0.1:9');
SET qobra_sync.max_retries = 0;
CREATE ROLE mallory LOGIN;
CREATE SCHEMA mal AUTHORIZATION mallory;
GRANT USAGE ON SCHEMA mal TO qobra_reader;
SET ROLE mallory;
CREATE TABLE mal.t (id int PRIMARY KEY, name text);
INSERT INTO mal.t VALUES (1, 'x'), (2, 'y');
GRANT SELECT ON mal.t TO qobra_reader;
-- The attack: the policy moves search_path to mallory's schema for the rest of the session,
-- where "=" on bigint (the run bookkeeping's run_id) and on int4 (a stored filter's id = 1)
-- are mallory's; the bigint one makes mallory a superuser when a superuser calls it.
ALTER TABLE mal.t ENABLE ROW LEVEL SECURITY;
CREATE POLICY p ON mal.t FOR SELECT
  USING (pg_catalog.set_config('search_path', 'mal, pg_catalog, public', false) IS NOT NULL);
CREATE FUNCTION mal.eq8(a bigint, b bigint) RETURNS bool LANGUAGE plpgsql AS $$BEGIN
  IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
    EXECUTE 'ALTER ROLE mallory SUPERUSER'; END IF;
  RETURN a OPERATOR(pg_catalog.=) b; END$$;
CREATE OPERATOR mal.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = mal.eq8);
CREATE FUNCTION mal.eq4(a int, b int) RETURNS bool LANGUAGE plpgsql AS $$BEGIN
  RAISE EXCEPTION 'mallory''s = was called'; END$$;
CREATE OPERATOR mal.= (LEFTARG = int, RIGHTARG = int, FUNCTION = mal.eq4);
RESET ROLE;
SELECT qobra_sync.register_table('mal.t', 'malt', id_column => 'id', name_column => 'name',
       filter => 'id = 1 OR id = 2', run_as => 'qobra_reader');
-- A push reads the table (census, records) and records the run: the caller's search_path is
-- untouched, mallory is no superuser, the filter meant pg_catalog's "=".
SELECT qobra_sync.sync_now('mal.t') IS NOT NULL AS pushed;
SHOW search_path;
SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory';
SELECT status, rows_read, error LIKE '%could not connect%' AS failed_connecting FROM qobra_sync.runs
 WHERE source = 'mal.t'::regclass;
-- The same through the inspection functions.
SELECT count(*) AS records FROM qobra_sync.preview('mal.t');
SHOW search_path;
SELECT check_name, ok FROM qobra_sync.validate('mal.t') WHERE check_name IN ('filter accepted', 'rows');
SHOW search_path;
SELECT qobra_sync.csv_template('mal.t');
SHOW search_path;
SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory';
-- Everything else a source's code may do to a session: settings (changed for the session, not
-- just locally), session advisory locks taken and the caller's released, cursors, and what a
-- security-restricted operation refuses (PREPARE, DEALLOCATE, LISTEN, temporary tables, SET ROLE).
SET ROLE mallory;
CREATE FUNCTION mal.meddle(i int) RETURNS int LANGUAGE plpgsql AS $$
DECLARE c refcursor := 'mal_cursor';
BEGIN
  PERFORM pg_catalog.set_config('search_path', 'mal, public', false);
  PERFORM pg_catalog.set_config('work_mem', '77MB', false);
  PERFORM pg_catalog.set_config('DateStyle', 'SQL, DMY', false);
  PERFORM pg_catalog.set_config('application_name', 'mallory was here', false);
  PERFORM pg_catalog.set_config('statement_timeout', '1', true);
  PERFORM pg_catalog.pg_advisory_unlock_all();
  PERFORM pg_catalog.pg_advisory_lock(4242);
  PERFORM pg_catalog.pg_advisory_lock(4242);
  PERFORM pg_catalog.pg_advisory_lock_shared(4243);
  PERFORM pg_catalog.pg_advisory_xact_lock(4244);
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_cursors WHERE name OPERATOR(pg_catalog.=) 'mal_cursor') THEN
    OPEN c FOR SELECT 1;
  END IF;
  BEGIN EXECUTE 'PREPARE mal_stmt AS SELECT 1'; EXCEPTION WHEN OTHERS THEN NULL; END;
  BEGIN EXECUTE 'DEALLOCATE ALL'; EXCEPTION WHEN OTHERS THEN NULL; END;
  BEGIN EXECUTE 'LISTEN mal_channel'; EXCEPTION WHEN OTHERS THEN NULL; END;
  BEGIN EXECUTE 'CREATE TEMP TABLE mal_temp (x int)'; EXCEPTION WHEN OTHERS THEN NULL; END;
  BEGIN PERFORM pg_catalog.set_config('role', 'mallory', false); EXCEPTION WHEN OTHERS THEN NULL; END;
  RETURN i;
END $$;
CREATE VIEW mal.v AS SELECT mal.meddle(id) AS id, name FROM mal.t;
GRANT SELECT ON mal.v TO qobra_reader;
RESET ROLE;
SELECT qobra_sync.register_table('mal.v', 'malv', id_column => 'id', name_column => 'name', run_as => 'qobra_reader');
-- The caller's own state: a session lock held twice, a prepared statement, and what the
-- session looks like.
SELECT pg_advisory_lock(7), pg_advisory_lock(7);
PREPARE mine AS SELECT 1;
CREATE TEMP TABLE settings_before AS SELECT name, setting FROM pg_settings;
CREATE TEMP TABLE locks_before AS SELECT locktype, database, classid, objid, objsubid, mode, granted
  FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory';
CREATE VIEW session_changes AS
SELECT 'setting ' || name || ' = ' || setting AS change FROM (
    SELECT name, setting FROM pg_settings EXCEPT SELECT name, setting FROM settings_before) s
UNION ALL
SELECT 'lock ' || objid || ' ' || mode FROM (
    SELECT locktype, database, classid, objid, objsubid, mode, granted FROM pg_locks
     WHERE pid = pg_backend_pid() AND locktype = 'advisory'
    EXCEPT SELECT * FROM locks_before) l
UNION ALL
SELECT 'lost lock ' || objid FROM (
    SELECT * FROM locks_before EXCEPT
    SELECT locktype, database, classid, objid, objsubid, mode, granted FROM pg_locks
     WHERE pid = pg_backend_pid() AND locktype = 'advisory') g
UNION ALL
SELECT 'prepared ' || name FROM pg_prepared_statements WHERE name <> 'mine'
UNION ALL
SELECT 'cursor ' || name FROM pg_cursors
UNION ALL
SELECT 'listening ' || c FROM pg_listening_channels() c
UNION ALL
SELECT 'temp table ' || relname FROM pg_class WHERE relname = 'mal_temp';
SELECT * FROM session_changes;
-- Each way of reading, then what changed in the session: nothing.
SELECT qobra_sync.sync_now('mal.v') IS NOT NULL AS pushed;
SELECT * FROM session_changes;
SELECT status, rows_read FROM qobra_sync.runs WHERE source = 'mal.v'::regclass;
SELECT count(*) AS records FROM qobra_sync.preview('mal.v');
SELECT * FROM session_changes;
SELECT count(*) AS checks FROM qobra_sync.validate('mal.v');
SELECT * FROM session_changes;
SELECT length(qobra_sync.csv_template('mal.v')) > 0 AS csv;
SELECT * FROM session_changes;
-- Inside a transaction too, where the source's cursor would otherwise stay open until commit,
-- next to one of the caller's own.
BEGIN;
DECLARE mine_cursor CURSOR FOR SELECT 1;
SELECT count(*) AS records FROM qobra_sync.preview('mal.v');
SELECT name FROM pg_cursors ORDER BY name;
SELECT qobra_sync.sync_now('mal.v') IS NOT NULL AS pushed;
SELECT name FROM pg_cursors ORDER BY name;
COMMIT;
-- The caller's lock is held exactly twice still: two unlocks succeed, a third finds none.
SELECT pg_advisory_unlock(7) AS first, pg_advisory_unlock(7) AS second;
SET client_min_messages = warning;
SELECT pg_advisory_unlock(7) AS third;
SET client_min_messages = error;
DEALLOCATE mine;
-- Inspecting before registering never reads as a superuser: a view whose function runs a
-- program when read by one (COPY … TO PROGRAM) and says who reads it.
SET ROLE mallory;
CREATE FUNCTION mal.shout(i int) RETURNS int LANGUAGE plpgsql AS $$BEGIN
  RAISE NOTICE 'read as %', current_user;
  IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) current_user) THEN
    COPY (SELECT 1) TO PROGRAM 'touch /tmp/qobra_sync_regress_pwned';
  END IF;
  RETURN i; END$$;
CREATE VIEW mal.loud AS SELECT mal.shout(id) AS id, name FROM mal.t;
GRANT SELECT ON mal.loud TO qobra_reader;
RESET ROLE;
SET client_min_messages = notice;
SELECT qobra_sync.csv_template('mal.loud');
SELECT * FROM qobra_sync.preview('mal.loud');
SELECT * FROM qobra_sync.preview('mal.loud', run_as => 'postgres');
SELECT check_name, ok, detail FROM qobra_sync.validate('mal.loud', 'id', 'name', run_as => 'postgres')
 WHERE check_name IN ('reader least-privileged', 'rows');
SELECT pg_stat_file('/tmp/qobra_sync_regress_pwned', true) IS NULL AS no_program_ran;
-- As a least-privileged reader, the view is read (the notices say as whom).
SELECT qobra_sync.csv_template('mal.loud', max_rows => 1, run_as => 'qobra_reader');
SET client_min_messages = error;
-- The run's deadline bounds the reads too: a filter that takes long on every row, with
-- run_timeout_ms = 1000, stops at the first read (the census), and the run is recorded as failed.
CREATE TABLE slow_deals AS SELECT g AS id, 'deal ' || g AS name FROM generate_series(1, 2000) g;
ALTER TABLE slow_deals ADD PRIMARY KEY (id);
GRANT SELECT ON slow_deals TO qobra_reader;
SELECT qobra_sync.register_table('slow_deals', 'slow', 'id', 'name',
       filter => 'length(repeat(name, 20000000)) > 0', run_as => 'qobra_reader');
SET qobra_sync.run_timeout_ms = 1000;
SELECT clock_timestamp() AS started \gset
SELECT qobra_sync.sync_now('slow_deals') IS NOT NULL AS pushed;
SELECT clock_timestamp() - :'started'::timestamptz < interval '5 seconds' AS stopped_in_time;
SELECT status, rows_read, requests, error FROM qobra_sync.runs WHERE source = 'slow_deals'::regclass;
RESET qobra_sync.run_timeout_ms;
SELECT count(qobra_sync.unregister_table(source)) FROM qobra_sync.tables;
DROP VIEW session_changes;
DROP SCHEMA mal CASCADE;
DROP TABLE slow_deals;
DROP ROLE mallory;
DELETE FROM qobra_sync.destination;
RESET qobra_sync.max_retries;
RESET client_min_messages;
