-- Last step of CREATE EXTENSION: nothing is reachable by PUBLIC, and the installation is checked
-- (right database, preloaded or not).
-- (The views below are created here because they read functions of the extension.)
-- Pushes in flight in this database (any session's, when the library is preloaded): rows and bytes sent so far;
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

-- The health of every registration, for status and metrics (which filter it) and no one else:
-- its last outcome, its last success and when Qobra last held its snapshot (kept in the
-- registration: a purge of the history changes neither), its next run, and whether it is
-- stale: Qobra has not held its snapshot (a success, or a skip) within two periods of its
-- schedule (if it has one), or its last three runs failed, blocked or interrupted. A paused
-- registration is never stale. Only the runs of the registration's owner count: a source registered again by
-- another role starts afresh.
CREATE VIEW @extschema@._health WITH (security_barrier) AS
SELECT r.source, r.owner, r.data_table_key, r.paused, r.next_run_at,
       last.run_id AS last_run_id, last.status AS last_status, last.started_at AS last_started_at,
       last.finished_at AS last_finished_at, (b.success OPERATOR(pg_catalog.->>) 'at')::pg_catalog.timestamptz AS last_success_at,
       (b.success OPERATOR(pg_catalog.->>) 'sent')::pg_catalog.int8 AS last_success_rows, b.alive_at,
       NOT r.paused AND (f.failures OPERATOR(pg_catalog.>=) 3
           OR CASE WHEN r.schedule IS NULL THEN false
                   ELSE (SELECT t FROM @extschema@.next_runs(r.schedule, COALESCE(b.alive_at, r.created_at), 2,
                                                             COALESCE(pg_catalog.current_setting('qobra_sync.timezone', true), 'UTC')) t
                          ORDER BY t DESC LIMIT 1) OPERATOR(pg_catalog.<=) pg_catalog.now() END) AS stale,
       f.failures AS consecutive_failures
  FROM @extschema@.registrations r
  LEFT JOIN @extschema@.baselines b ON b.source OPERATOR(pg_catalog.=) r.source AND b.owner OPERATOR(pg_catalog.=) r.owner
  LEFT JOIN LATERAL (SELECT x.run_id, x.status, x.started_at, x.finished_at FROM @extschema@.runs x
                      WHERE x.source OPERATOR(pg_catalog.=) r.source AND x.owner OPERATOR(pg_catalog.=) r.owner
                      ORDER BY x.run_id DESC LIMIT 1) last ON true
  LEFT JOIN LATERAL (SELECT x.run_id FROM @extschema@.runs x
                      WHERE x.source OPERATOR(pg_catalog.=) r.source AND x.owner OPERATOR(pg_catalog.=) r.owner
                        AND x.status OPERATOR(pg_catalog.=) ANY (ARRAY['succeeded', 'skipped'])
                      ORDER BY x.run_id DESC LIMIT 1) fresh ON true
  CROSS JOIN LATERAL (SELECT pg_catalog.count(*)::pg_catalog.int4 AS failures FROM @extschema@.runs x
                       WHERE x.source OPERATOR(pg_catalog.=) r.source AND x.owner OPERATOR(pg_catalog.=) r.owner
                         AND x.status OPERATOR(pg_catalog.=) ANY (ARRAY['failed', 'blocked', 'interrupted'])
                         AND x.run_id OPERATOR(pg_catalog.>) COALESCE(fresh.run_id, 0)) f;

-- One row per registration (of the roles the reader is a member of), to answer "why": its
-- health, its last run's error, rejected rows and possibly_partial, its last failure, and the
-- outcome of its last imports.
CREATE VIEW @extschema@.status WITH (security_barrier) AS
SELECT h.source, h.data_table_key, h.paused, h.next_run_at, h.last_run_id, h.last_status,
       h.last_started_at, h.last_finished_at, h.last_success_at, h.last_success_rows,
       l.error AS last_error, h.stale, h.consecutive_failures,
       l.rows_rejected AS last_rows_rejected, l.possibly_partial AS last_possibly_partial,
       f.finished_at AS last_failure_at, f.error AS last_failure,
       i.run_id AS last_import_run_id, i.import_status AS last_import_status, i.import_errors AS last_import_errors
  FROM @extschema@._health h
  LEFT JOIN @extschema@.runs l ON l.run_id OPERATOR(pg_catalog.=) h.last_run_id
  LEFT JOIN LATERAL (SELECT x.finished_at, x.error FROM @extschema@.runs x
                      WHERE x.source OPERATOR(pg_catalog.=) h.source AND x.owner OPERATOR(pg_catalog.=) h.owner
                        AND x.status OPERATOR(pg_catalog.=) ANY (ARRAY['failed', 'blocked', 'interrupted'])
                      ORDER BY x.run_id DESC LIMIT 1) f ON true
  LEFT JOIN LATERAL (SELECT x.run_id, x.import_status,
                            (SELECT pg_catalog.count(*) FROM @extschema@.run_errors e
                              WHERE e.run_id OPERATOR(pg_catalog.=) x.run_id AND e.origin OPERATOR(pg_catalog.=) 'import') AS import_errors
                       FROM @extschema@.runs x
                      WHERE x.source OPERATOR(pg_catalog.=) h.source AND x.owner OPERATOR(pg_catalog.=) h.owner
                        AND x.import_status IS NOT NULL
                      ORDER BY x.run_id DESC LIMIT 1) i ON true
 WHERE pg_catalog.pg_has_role(h.owner, 'MEMBER');

-- One row per registration, as a Prometheus exporter reads it (docs/postgres_exporter.yaml):
-- counters over the run history kept (qobra_sync.history_days; they drop when old runs are
-- purged, which Prometheus takes as a reset) and gauges, NaN where there is no value yet;
-- the source schema-qualified whatever the reader's search_path. Numbers and states only, no
-- error text: the registrations of the roles the reader is a member of, and every one for a
-- member of pg_monitor (the role monitoring agents log in as).
CREATE VIEW @extschema@.metrics WITH (security_barrier) AS
SELECT COALESCE(pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(k.relname),
                s.source::pg_catalog.text) AS source, s.data_table_key,
       COALESCE(c.succeeded, 0) AS runs_succeeded_total, COALESCE(c.failed, 0) AS runs_failed_total,
       COALESCE(c.blocked, 0) AS runs_blocked_total, COALESCE(c.skipped, 0) AS runs_skipped_total,
       COALESCE(c.interrupted, 0) AS runs_interrupted_total,
       COALESCE(c.rows_sent, 0) AS rows_sent_total, COALESCE(c.bytes_sent, 0) AS bytes_sent_total,
       COALESCE(c.imports_failed, 0) AS imports_failed_total, COALESCE(c.imports_unknown, 0) AS imports_unknown_total,
       COALESCE(pg_catalog.date_part('epoch', pg_catalog.now() OPERATOR(pg_catalog.-) s.alive_at), 'NaN') AS seconds_since_last_success,
       COALESCE(pg_catalog.date_part('epoch', s.last_finished_at OPERATOR(pg_catalog.-) s.last_started_at), 'NaN') AS last_run_duration_seconds,
       COALESCE(pg_catalog.date_part('epoch', s.next_run_at OPERATOR(pg_catalog.-) pg_catalog.now()), 'NaN') AS next_run_in_seconds,
       s.consecutive_failures, s.stale::pg_catalog.int4 AS stale, s.paused::pg_catalog.int4 AS paused,
       (s.last_status OPERATOR(pg_catalog.=) 'running')::pg_catalog.int4 AS running
  FROM @extschema@._health s
  LEFT JOIN pg_catalog.pg_class k ON k.oid OPERATOR(pg_catalog.=) s.source::pg_catalog.oid
  LEFT JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) k.relnamespace
  LEFT JOIN LATERAL (
       SELECT pg_catalog.count(*) FILTER (WHERE x.status OPERATOR(pg_catalog.=) 'succeeded') AS succeeded,
              pg_catalog.count(*) FILTER (WHERE x.status OPERATOR(pg_catalog.=) 'failed') AS failed,
              pg_catalog.count(*) FILTER (WHERE x.status OPERATOR(pg_catalog.=) 'blocked') AS blocked,
              pg_catalog.count(*) FILTER (WHERE x.status OPERATOR(pg_catalog.=) 'skipped') AS skipped,
              pg_catalog.count(*) FILTER (WHERE x.status OPERATOR(pg_catalog.=) 'interrupted') AS interrupted,
              pg_catalog.count(*) FILTER (WHERE x.import_status OPERATOR(pg_catalog.=) 'failed') AS imports_failed,
              pg_catalog.count(*) FILTER (WHERE x.import_status OPERATOR(pg_catalog.=) 'unknown') AS imports_unknown,
              pg_catalog.sum(x.rows_sent)::pg_catalog.int8 AS rows_sent, pg_catalog.sum(x.bytes_sent)::pg_catalog.int8 AS bytes_sent
         FROM @extschema@.runs x
        WHERE x.source OPERATOR(pg_catalog.=) s.source AND x.owner OPERATOR(pg_catalog.=) s.owner) c ON true
 WHERE pg_catalog.pg_has_role(s.owner, 'MEMBER') OR pg_catalog.pg_has_role('pg_monitor', 'MEMBER');

-- What \df+ and \d+ show: the same words as the README's reference.
COMMENT ON FUNCTION @extschema@.set_destination(text, text, text) IS
  'Sets Qobra''s API key and base URL (superuser only; https, or http to loopback), and how requests frame their records (body_format: data or array); NULL keeps what is stored. Pushes run from this database only: calling it in a copy confirms the copy is to push. The key is never shown again; NULL when qobra_sync.api_key_file holds it.';
COMMENT ON FUNCTION @extschema@.check_destination() IS
  'Whether pushes can reach Qobra, by requests that change nothing there: address, connection and certificate (through the proxy), API key accepted, body format.';
COMMENT ON FUNCTION @extschema@.register_table(regclass, text, name, name, name[], text, jsonb, jsonb, name[], text, text, name, boolean) IS
  'Registers a table, partitioned table, view, materialized view or foreign table for pushes to the Qobra data table data_table_key (on schedule when one is given; follow_name: to a relation created again under its name). Everything is checked before it is stored.';
COMMENT ON FUNCTION @extschema@.alter_table(regclass, text, name, name, name[], text, jsonb, jsonb, name[], text, text, name, boolean) IS
  'Changes a registration: NULL keeps a value, an empty filter or schedule removes it. With only source, confirms a renamed source and accepts added columns (a renamed, dropped or retyped column needs accept_shape).';
COMMENT ON FUNCTION @extschema@.unregister_table(regclass, text) IS 'Removes a registration (its run history stays until purged), named by its source or, when the source is gone, by the data table it feeds.';
COMMENT ON FUNCTION @extschema@.accept_shape(regclass) IS
  'Accepts the source''s current synced columns as the registration''s shape, whatever changed (columns renamed, dropped, retyped, added), and confirms a renamed source.';
COMMENT ON FUNCTION @extschema@.pause(regclass) IS 'Stops the scheduled pushes of a source until resume().';
COMMENT ON FUNCTION @extschema@.resume(regclass) IS 'Resumes the scheduled pushes of a paused source.';
COMMENT ON FUNCTION @extschema@.column_mapping(regclass, name[], jsonb, name, name, jsonb, name[]) IS
  'How each column maps to a Qobra field: Postgres type, Qobra type, allowed types, field key, synced or why not; under register_table''s column options, each NULL keeping the registration''s.';
COMMENT ON FUNCTION @extschema@.validate(regclass, name, name, name[], text, text, name, jsonb, jsonb, name[]) IS
  'Checks every requirement for pushing a source (columns, ids, user values, filter, reader, destination) and reports each with counts and samples; under register_table''s options, each NULL keeping the registration''s.';
COMMENT ON FUNCTION @extschema@.preview(regclass, integer, name, name, name, name[], text, jsonb, jsonb, name[], text) IS
  'The records exactly as a push would send them, ordered by id, read as run_as (the registration''s by default); register_table''s options, each NULL keeping the registration''s, show them before registering.';
COMMENT ON FUNCTION @extschema@.csv_template(regclass, integer, name, name, name, name[], text, jsonb, jsonb, name[], text) IS
  'A CSV (header = field keys, then sample rows) to create the data table in Qobra by hand before the first push, read as run_as (the registration''s by default); register_table''s options make its header what the registration will send.';
COMMENT ON FUNCTION @extschema@.reader_from_service_account(jsonb) IS
  'Cloud SQL: the IAM database user of a GCP service account (client_email without .gserviceaccount.com), to use as run_as. The private key is never kept.';
COMMENT ON FUNCTION @extschema@.sync_now(regclass, boolean, boolean) IS
  'Pushes a registered source now, in this session; returns the run id (outcome in qobra_sync.runs). force overrides the deletion guard and skip_unchanged; raise_on_failure fails the statement when the run fails or is blocked.';
COMMENT ON FUNCTION @extschema@.request_sync(regclass) IS 'Asks the worker to push a registered source right after this transaction commits.';
COMMENT ON FUNCTION @extschema@.poll_imports() IS
  'Looks once at Qobra''s imports of recent runs and records their outcome and parsing errors; returns how many runs were settled.';
COMMENT ON FUNCTION @extschema@.next_runs(text, timestamp with time zone, integer, text) IS
  'The next count times a schedule fires after a time, in a time zone, as the worker computes them.';
COMMENT ON FUNCTION @extschema@._progress() IS 'Internal: the pushes in flight, from shared memory (see the progress view).';
COMMENT ON FUNCTION @extschema@._check_installation() IS 'Internal: checks the database and preloading at CREATE EXTENSION.';
COMMENT ON VIEW @extschema@.tables IS 'What is registered: one row per source, with the canonical filter and the next run time.';
COMMENT ON VIEW @extschema@._health IS 'Internal: the health of every registration, read by status and metrics (granted to no one).';
COMMENT ON VIEW @extschema@.status IS 'One row per registration: last outcome, last success, next run, last error, stale, consecutive failures, last failure, last imports'' outcome.';
COMMENT ON VIEW @extschema@.metrics IS 'One row per registration: counters over the kept history and gauges, for a Prometheus exporter.';
COMMENT ON VIEW @extschema@.progress IS 'Pushes in flight in any session of this database (when preloaded): chunks, rows and bytes sent so far.';
COMMENT ON VIEW @extschema@.destination_status IS 'Where pushes go, without the key.';
COMMENT ON TABLE @extschema@.runs IS 'One row per attempt at a push, whatever its outcome.';
COMMENT ON TABLE @extschema@.run_errors IS 'Rows rejected before sending (origin push) or reported by Qobra''s import (origin import).';
COMMENT ON TABLE @extschema@.baselines IS 'The guards'' baseline of each registration: its last successful run and when Qobra last held its snapshot (kept whatever the history purge removes). Owner only.';
COMMENT ON TABLE @extschema@.registrations IS 'Registrations, stored by OID (read them through the tables view).';
COMMENT ON TABLE @extschema@.destination IS 'Qobra''s API base URL, the body format, and the database pushes run from (its home). Owner only.';
COMMENT ON TABLE @extschema@.destination_key IS 'The API key set_destination() stored. Owner only; never shown by any view or function, never dumped.';

-- Only the grants made below: default privileges (ALTER DEFAULT PRIVILEGES) in force when the
-- objects were created, and any grant made by hand (before an upgrade, say: on a table, a
-- column, through a grant option), are revoked from every role but each object's owner, so
-- that the table that holds the key, above all, is readable by its owner alone.
DO $$
DECLARE
    held record;
BEGIN
    FOR held IN
        SELECT pg_catalog.format('%s %I.%I', CASE WHEN c.relkind OPERATOR(pg_catalog.=) 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
                                 n.nspname, c.relname) AS object, a.grantee
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
          CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a
         WHERE n.nspname OPERATOR(pg_catalog.=) '@extschema@' AND a.grantee OPERATOR(pg_catalog.<>) c.relowner
        UNION
        -- Column privileges: a table's REVOKE ALL takes them too.
        SELECT pg_catalog.format('TABLE %I.%I', n.nspname, c.relname), a.grantee
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
          JOIN pg_catalog.pg_attribute t ON t.attrelid OPERATOR(pg_catalog.=) c.oid
          CROSS JOIN LATERAL pg_catalog.aclexplode(t.attacl) a
         WHERE n.nspname OPERATOR(pg_catalog.=) '@extschema@' AND a.grantee OPERATOR(pg_catalog.<>) c.relowner
        UNION
        SELECT pg_catalog.format('FUNCTION %I.%I(%s)', n.nspname, p.proname,
                                 pg_catalog.pg_get_function_identity_arguments(p.oid)), a.grantee
          FROM pg_catalog.pg_proc p
          JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
          CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) a
         WHERE n.nspname OPERATOR(pg_catalog.=) '@extschema@' AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
        UNION
        SELECT pg_catalog.format('SCHEMA %I', n.nspname), a.grantee
          FROM pg_catalog.pg_namespace n
          CROSS JOIN LATERAL pg_catalog.aclexplode(n.nspacl) a
         WHERE n.nspname OPERATOR(pg_catalog.=) '@extschema@' AND a.grantee OPERATOR(pg_catalog.<>) n.nspowner
    LOOP
        -- CASCADE: grants made through a grant option go with the one they came from.
        EXECUTE pg_catalog.format('REVOKE ALL ON %s FROM %s CASCADE', held.object,
            CASE WHEN held.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                 ELSE held.grantee::pg_catalog.regrole::pg_catalog.text END);
    END LOOP;
END
$$;
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
    @extschema@.register_table(regclass, text, name, name, name[], text, jsonb, jsonb, name[], text, text, name, boolean),
    @extschema@.alter_table(regclass, text, name, name, name[], text, jsonb, jsonb, name[], text, text, name, boolean),
    @extschema@.unregister_table(regclass, text), @extschema@.accept_shape(regclass), @extschema@.pause(regclass), @extschema@.resume(regclass),
    @extschema@.column_mapping(regclass, name[], jsonb, name, name, jsonb, name[]),
    @extschema@.validate(regclass, name, name, name[], text, text, name, jsonb, jsonb, name[]),
    @extschema@.preview(regclass, integer, name, name, name, name[], text, jsonb, jsonb, name[], text),
    @extschema@.csv_template(regclass, integer, name, name, name, name[], text, jsonb, jsonb, name[], text),
    @extschema@.reader_from_service_account(jsonb),
    @extschema@.sync_now(regclass, boolean, boolean), @extschema@.request_sync(regclass), @extschema@._progress(),
    @extschema@.next_runs(text, timestamp with time zone, integer, text), @extschema@.check_destination()
  TO qobra_sync_operator;
GRANT SELECT ON @extschema@.tables, @extschema@.status, @extschema@.progress, @extschema@.destination_status,
    @extschema@.runs, @extschema@.run_errors, @extschema@.metrics
  TO qobra_sync_operator;
-- Monitoring without a superuser: members of pg_monitor (the role postgres_exporter and other
-- agents log in as) read the metrics view (numbers and states of every registration, no error
-- text, no row values), which calls next_runs().
GRANT USAGE ON SCHEMA @extschema@ TO pg_monitor;
GRANT EXECUTE ON FUNCTION @extschema@.next_runs(text, timestamp with time zone, integer, text) TO pg_monitor;
GRANT SELECT ON @extschema@.metrics TO pg_monitor;
SELECT @extschema@._check_installation();
