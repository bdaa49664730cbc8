-- Last step of CREATE EXTENSION: nothing is reachable by PUBLIC, and the installation is checked
-- (right database, preloaded or not).
-- (Created here because it reads a function of the extension.)
-- Pushes in flight (any session's, when the library is preloaded): rows and bytes sent so far;
-- those of registrations of roles the reader is a member of.
CREATE VIEW @extschema@.progress WITH (security_barrier) AS
SELECT p.pid, p.run_id, p.source, r.data_table_key, p.started_at,
       pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) p.started_at AS elapsed,
       p.chunks, p.rows_sent, p.bytes_sent, p.restarts
  FROM @extschema@._progress() p
  JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) p.pid
  LEFT JOIN @extschema@.runs r ON r.run_id OPERATOR(pg_catalog.=) p.run_id
  LEFT JOIN @extschema@.registrations g ON g.source OPERATOR(pg_catalog.=) p.source
 WHERE pg_catalog.pg_has_role(COALESCE(g.owner, r.owner), 'MEMBER');

-- What \df+ and \d+ show: the same words as the README's reference.
COMMENT ON FUNCTION @extschema@.set_destination(text, text) IS
  'Sets Qobra''s API key and base URL (superuser only; https, or http to loopback). The key is never shown again; NULL when qobra_sync.api_key_file holds it.';
COMMENT ON FUNCTION @extschema@.register_table(regclass, text, name, name, name[], text, jsonb, jsonb, name[], text, text, name) IS
  'Registers a table, partitioned table, view or materialized view for pushes to the Qobra data table data_table_key. Everything is checked before it is stored.';
COMMENT ON FUNCTION @extschema@.alter_table(regclass, text, name, name, name[], text, jsonb, jsonb, name[], text, text, name) IS
  'Changes a registration: NULL keeps a value, an empty filter removes the filter. With only source, confirms a renamed source.';
COMMENT ON FUNCTION @extschema@.unregister_table(regclass) IS 'Removes a registration (its run history stays until purged).';
COMMENT ON FUNCTION @extschema@.pause(regclass) IS 'Stops the scheduled pushes of a source until resume().';
COMMENT ON FUNCTION @extschema@.resume(regclass) IS 'Resumes the scheduled pushes of a paused source.';
COMMENT ON FUNCTION @extschema@.column_mapping(regclass, name[], jsonb) IS
  'How each column maps to a Qobra field: Postgres type, Qobra type, allowed types, field key, synced or why not.';
COMMENT ON FUNCTION @extschema@.validate(regclass, name, name, name[], text, text, name) IS
  'Checks every requirement for pushing a source (columns, ids, user values, filter, reader, destination) and reports each with counts and samples.';
COMMENT ON FUNCTION @extschema@.preview(regclass, integer, name) IS
  'The records exactly as a push would send them, ordered by id, read as run_as (the registration''s by default).';
COMMENT ON FUNCTION @extschema@.csv_template(regclass, integer, name) IS
  'A CSV (header = field keys, then sample rows) to create the data table in Qobra by hand before the first push, read as run_as (the registration''s by default).';
COMMENT ON FUNCTION @extschema@.reader_from_service_account(jsonb) IS
  'Cloud SQL: the IAM database user of a GCP service account (client_email without .gserviceaccount.com), to use as run_as. The private key is never kept.';
COMMENT ON FUNCTION @extschema@.sync_now(regclass, boolean) IS
  'Pushes a registered source now, in this session; returns the run id (outcome in qobra_sync.runs). force overrides the deletion guard and skip_unchanged.';
COMMENT ON FUNCTION @extschema@.request_sync(regclass) IS 'Asks the worker to push a registered source right after this transaction commits.';
COMMENT ON FUNCTION @extschema@.poll_imports() IS
  'Looks once at Qobra''s imports of recent runs and records their outcome and parsing errors; returns how many runs were settled.';
COMMENT ON FUNCTION @extschema@._progress() IS 'Internal: the pushes in flight, from shared memory (see the progress view).';
COMMENT ON FUNCTION @extschema@._check_installation() IS 'Internal: checks the database and preloading at CREATE EXTENSION.';
COMMENT ON VIEW @extschema@.tables IS 'What is registered: one row per source, with the canonical filter and the next run time.';
COMMENT ON VIEW @extschema@.status IS 'One row per registration: last outcome, last success, next run, last error.';
COMMENT ON VIEW @extschema@.progress IS 'Pushes in flight in any session (when preloaded): chunks, rows and bytes sent so far.';
COMMENT ON VIEW @extschema@.destination_status IS 'Where pushes go, without the key.';
COMMENT ON TABLE @extschema@.runs IS 'One row per attempt at a push, whatever its outcome.';
COMMENT ON TABLE @extschema@.run_errors IS 'Rows rejected before sending (origin push) or reported by Qobra''s import (origin import).';
COMMENT ON TABLE @extschema@.registrations IS 'Registrations, stored by OID (read them through the tables view).';
COMMENT ON TABLE @extschema@.destination IS 'Qobra''s API base URL. Owner only.';
COMMENT ON TABLE @extschema@.destination_key IS 'The API key set_destination() stored. Owner only; never shown by any view or function, never dumped.';

REVOKE ALL ON ALL TABLES IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON SCHEMA @extschema@ FROM PUBLIC;

-- Delegating: the role qobra_sync_operator may use every function but set_destination and
-- poll_imports, and read the views and the run history; a DBA delegates with one grant
-- (GRANT qobra_sync_operator TO app_admin). What an operator may do is checked inside each
-- function (they run as the extension owner): it acts only on the registrations of roles it
-- is a member of, reads only as a role it may SET ROLE to, and sees only those registrations
-- and their runs. The role is created once per cluster, if missing (roles are not objects of a
-- database), and is never dropped by DROP EXTENSION.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'qobra_sync_operator') THEN
        CREATE ROLE qobra_sync_operator NOLOGIN;
        COMMENT ON ROLE qobra_sync_operator IS 'Operates qobra_sync: register, change, push and inspect the registrations of the roles one is a member of.';
    END IF;
END
$$;
GRANT USAGE ON SCHEMA @extschema@ TO qobra_sync_operator;
GRANT EXECUTE ON FUNCTION
    @extschema@.register_table(regclass, text, name, name, name[], text, jsonb, jsonb, name[], text, text, name),
    @extschema@.alter_table(regclass, text, name, name, name[], text, jsonb, jsonb, name[], text, text, name),
    @extschema@.unregister_table(regclass), @extschema@.pause(regclass), @extschema@.resume(regclass),
    @extschema@.column_mapping(regclass, name[], jsonb),
    @extschema@.validate(regclass, name, name, name[], text, text, name),
    @extschema@.preview(regclass, integer, name), @extschema@.csv_template(regclass, integer, name),
    @extschema@.reader_from_service_account(jsonb),
    @extschema@.sync_now(regclass, boolean), @extschema@.request_sync(regclass), @extschema@._progress()
  TO qobra_sync_operator;
GRANT SELECT ON @extschema@.tables, @extschema@.status, @extschema@.progress, @extschema@.destination_status,
    @extschema@.runs, @extschema@.run_errors
  TO qobra_sync_operator;
SELECT @extschema@._check_installation();
