-- qobra_sync 0.1.0 to 0.2.0 (ALTER EXTENSION qobra_sync UPDATE TO '0.2.0'). Run with the 0.2.0
-- library in place: the catalog it leaves equals a fresh 0.2.0 install, object by object.
--
-- What 0.2.0 brings to the SQL objects: registrations owned by the role that made them
-- (delegation through qobra_sync_operator, row-level security on the history), the synced
-- shape recorded by each registration, the API key kept apart from the destination (never
-- dumped), history and destination in pg_dump's output, and preview() and csv_template() with
-- a run_as argument.

-- The destination's key moves to a table of its own, which pg_dump never dumps.
CREATE TABLE @extschema@.destination_key (
    singleton boolean PRIMARY KEY DEFAULT true REFERENCES @extschema@.destination ON DELETE CASCADE,
    api_key   text NOT NULL
);
INSERT INTO @extschema@.destination_key (singleton, api_key)
SELECT singleton, api_key FROM @extschema@.destination;
DROP VIEW @extschema@.destination_status;
ALTER TABLE @extschema@.destination DROP COLUMN api_key;
SELECT pg_catalog.pg_extension_config_dump('@extschema@.destination', '');

-- Registrations: their owner (in 0.1.0 only the extension owner could register), their synced
-- shape (recorded at each one's next push) and the relation the shape belongs to.
DROP VIEW @extschema@.tables;
DROP VIEW @extschema@.status;
DROP VIEW @extschema@.progress;
ALTER TABLE @extschema@.registrations ADD COLUMN owner regrole;
UPDATE @extschema@.registrations
   SET owner = (SELECT extowner FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'qobra_sync')::pg_catalog.regrole;
ALTER TABLE @extschema@.registrations ALTER COLUMN owner SET NOT NULL;
ALTER TABLE @extschema@.registrations ADD COLUMN shape jsonb;
ALTER TABLE @extschema@.registrations ADD COLUMN shape_of oid;
SELECT pg_catalog.pg_extension_config_dump('@extschema@.registrations',
  'WHERE EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) source::pg_catalog.oid)');

-- Runs: the owner of their registration, seen by members only; history in pg_dump's output.
ALTER TABLE @extschema@.runs ADD COLUMN owner regrole;
UPDATE @extschema@.runs r
   SET owner = COALESCE((SELECT g.owner FROM @extschema@.registrations g WHERE g.source OPERATOR(pg_catalog.=) r.source),
                        (SELECT extowner FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'qobra_sync')::pg_catalog.regrole);
ALTER TABLE @extschema@.runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY runs_of_members ON @extschema@.runs FOR SELECT
  USING (pg_catalog.pg_has_role(owner, 'MEMBER'));
ALTER TABLE @extschema@.run_errors ENABLE ROW LEVEL SECURITY;
CREATE POLICY run_errors_of_members ON @extschema@.run_errors FOR SELECT
  USING (EXISTS (SELECT FROM @extschema@.runs r WHERE r.run_id OPERATOR(pg_catalog.=) run_errors.run_id));
SELECT pg_catalog.pg_extension_config_dump('@extschema@.runs',
  'WHERE EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) source::pg_catalog.oid)');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.runs_run_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.run_errors',
  'WHERE EXISTS (SELECT FROM @extschema@.runs r JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) r.source::pg_catalog.oid
                  WHERE r.run_id OPERATOR(pg_catalog.=) run_errors.run_id)');

-- The views, as 0.2.0 defines them: each shows only what belongs to registrations of roles the
-- reader is a member of.
CREATE VIEW @extschema@.tables WITH (security_barrier) AS
SELECT source, data_table_key, id_column, name_column, user_columns, user_key, column_types,
       field_keys, exclude_columns, filter, schedule, run_as::pg_catalog.text::pg_catalog.name AS run_as, paused,
       next_run_at, owner::pg_catalog.text::pg_catalog.name AS owner, shape
  FROM @extschema@.registrations
 WHERE pg_catalog.pg_has_role(owner, 'MEMBER');

CREATE VIEW @extschema@.destination_status AS
SELECT d.base_url, k.api_key IS NOT NULL AS api_key_set, d.updated_at,
       CASE WHEN COALESCE(pg_catalog.current_setting('qobra_sync.api_key_file', true), '') OPERATOR(pg_catalog.<>) ''
            THEN 'api_key_file'
            WHEN k.api_key IS NOT NULL THEN 'set_destination' END AS key_source
  FROM @extschema@.destination d LEFT JOIN @extschema@.destination_key k ON true;

CREATE VIEW @extschema@.status WITH (security_barrier) AS
SELECT r.source, r.data_table_key, r.paused, r.next_run_at,
       last.run_id AS last_run_id, last.status AS last_status, last.started_at AS last_started_at,
       last.finished_at AS last_finished_at, ok.finished_at AS last_success_at,
       ok.rows_sent AS last_success_rows, last.error AS last_error
  FROM @extschema@.registrations r
  LEFT JOIN LATERAL (SELECT * FROM @extschema@.runs x WHERE x.source OPERATOR(pg_catalog.=) r.source
                      ORDER BY x.run_id DESC LIMIT 1) last ON true
  LEFT JOIN LATERAL (SELECT * FROM @extschema@.runs x WHERE x.source OPERATOR(pg_catalog.=) r.source
                        AND x.status OPERATOR(pg_catalog.=) 'succeeded'
                      ORDER BY x.run_id DESC LIMIT 1) ok ON true
 WHERE pg_catalog.pg_has_role(r.owner, 'MEMBER');

CREATE VIEW @extschema@.progress WITH (security_barrier) AS
SELECT p.pid, p.run_id, p.source, r.data_table_key, p.started_at,
       pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) p.started_at AS elapsed,
       p.chunks, p.rows_sent, p.bytes_sent, p.restarts
  FROM @extschema@._progress() p
  JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) p.pid
  LEFT JOIN @extschema@.runs r ON r.run_id OPERATOR(pg_catalog.=) p.run_id
  LEFT JOIN @extschema@.registrations g ON g.source OPERATOR(pg_catalog.=) p.source
 WHERE pg_catalog.pg_has_role(COALESCE(g.owner, r.owner), 'MEMBER');

-- The functions an operator may use run as the extension owner and check who calls them.
ALTER FUNCTION @extschema@.register_table(regclass, text, name, name, name[], text, jsonb, jsonb, name[], text, text, name) SECURITY DEFINER;
ALTER FUNCTION @extschema@.alter_table(regclass, text, name, name, name[], text, jsonb, jsonb, name[], text, text, name) SECURITY DEFINER;
ALTER FUNCTION @extschema@.unregister_table(regclass) SECURITY DEFINER;
ALTER FUNCTION @extschema@.pause(regclass) SECURITY DEFINER;
ALTER FUNCTION @extschema@.resume(regclass) SECURITY DEFINER;
ALTER FUNCTION @extschema@.column_mapping(regclass, name[], jsonb) SECURITY DEFINER;
ALTER FUNCTION @extschema@.validate(regclass, name, name, name[], text, text, name) SECURITY DEFINER;
ALTER FUNCTION @extschema@.sync_now(regclass, boolean) SECURITY DEFINER;
ALTER FUNCTION @extschema@.request_sync(regclass) SECURITY DEFINER;

-- preview() and csv_template() read as run_as (the registration's by default).
DROP FUNCTION @extschema@.preview(regclass, integer);
CREATE FUNCTION @extschema@."preview"(
	"source" regclass,
	"max_rows" INT DEFAULT 10,
	"run_as" name DEFAULT NULL
) RETURNS SETOF jsonb
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'preview_as_wrapper';
DROP FUNCTION @extschema@.csv_template(regclass, integer);
CREATE FUNCTION @extschema@."csv_template"(
	"source" regclass,
	"max_rows" INT DEFAULT 100,
	"run_as" name DEFAULT NULL
) RETURNS TEXT
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'csv_template_as_wrapper';

-- What \df+ and \d+ show.
COMMENT ON FUNCTION @extschema@.set_destination(text, text) IS
  'Sets Qobra''s API key and base URL (superuser only; https, or http to loopback). The key is never shown again; NULL when qobra_sync.api_key_file holds it.';
COMMENT ON FUNCTION @extschema@.preview(regclass, integer, name) IS
  'The records exactly as a push would send them, ordered by id, read as run_as (the registration''s by default).';
COMMENT ON FUNCTION @extschema@.csv_template(regclass, integer, name) IS
  'A CSV (header = field keys, then sample rows) to create the data table in Qobra by hand before the first push, read as run_as (the registration''s by default).';
COMMENT ON VIEW @extschema@.tables IS 'What is registered: one row per source, with the canonical filter and the next run time.';
COMMENT ON VIEW @extschema@.status IS 'One row per registration: last outcome, last success, next run, last error.';
COMMENT ON VIEW @extschema@.progress IS 'Pushes in flight in any session (when preloaded): chunks, rows and bytes sent so far.';
COMMENT ON VIEW @extschema@.destination_status IS 'Where pushes go, without the key.';
COMMENT ON TABLE @extschema@.destination IS 'Qobra''s API base URL. Owner only.';
COMMENT ON TABLE @extschema@.destination_key IS 'The API key set_destination() stored. Owner only; never shown by any view or function, never dumped.';

REVOKE ALL ON ALL TABLES IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA @extschema@ FROM PUBLIC;

-- Delegating: the role qobra_sync_operator (created once per cluster, never dropped by DROP
-- EXTENSION; see the install script of 0.2.0).
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
