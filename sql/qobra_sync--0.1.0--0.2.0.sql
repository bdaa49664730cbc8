-- qobra_sync 0.1.0 to 0.2.0 (ALTER EXTENSION qobra_sync UPDATE TO '0.2.0'). Run with the 0.2.0
-- library in place: the catalog it leaves equals a fresh 0.2.0 install, object by object.
--
-- What 0.2.0 brings to the SQL objects: the destination's home (a copy of the database
-- pushes nothing until set_destination() is called in it), registrations that may follow their
-- source by name, accept_shape(), registrations without a schedule, status that says why,
-- registrations owned by the role that made them
-- (delegation through qobra_sync_operator, row-level security on the history), the synced
-- shape recorded by each registration, the API key kept apart from the destination (never
-- dumped), history and destination in pg_dump's output, preview() and csv_template() with a
-- run_as argument, next_runs(), status.stale and status.consecutive_failures, the metrics
-- view, and foreign tables as sources.

-- The destination's key moves to a table of its own, which pg_dump never dumps.
CREATE TABLE @extschema@.destination_key (
    singleton boolean PRIMARY KEY DEFAULT true REFERENCES @extschema@.destination ON DELETE CASCADE,
    api_key   text NOT NULL
);
INSERT INTO @extschema@.destination_key (singleton, api_key)
SELECT singleton, api_key FROM @extschema@.destination;
DROP VIEW @extschema@.destination_status;
ALTER TABLE @extschema@.destination DROP COLUMN api_key;
-- How a request frames its records: 0.1.0 sent a bare array, and a destination set then keeps
-- doing so until set_destination(…, body_format => 'data') says otherwise; new ones default to
-- 'data', Qobra's convention on its other bulk endpoints.
ALTER TABLE @extschema@.destination
  ADD COLUMN body_format text NOT NULL DEFAULT 'array' CHECK (body_format OPERATOR(pg_catalog.=) ANY (ARRAY['data', 'array']));
ALTER TABLE @extschema@.destination ALTER COLUMN body_format SET DEFAULT 'data';
-- The destination's home: pushes run only from the database set_destination() was last called
-- in. A destination set in 0.1.0 has the database the update runs in as its home.
ALTER TABLE @extschema@.destination ADD COLUMN home text;
UPDATE @extschema@.destination
   SET home = (SELECT s.system_identifier::pg_catalog.text OPERATOR(pg_catalog.||) '/' OPERATOR(pg_catalog.||) d.oid::pg_catalog.text
                 FROM pg_catalog.pg_control_system() s, pg_catalog.pg_database d
                WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database());
ALTER TABLE @extschema@.destination ALTER COLUMN home SET NOT NULL;
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
-- A schedule only when one is given: registrations made without one keep the one 0.1.0 gave
-- them ('0 */6 * * *'); a new one without a schedule is pushed only when asked.
ALTER TABLE @extschema@.registrations ALTER COLUMN schedule DROP NOT NULL;
DROP FUNCTION @extschema@.register_table(regclass, text, name, name, name[], text, jsonb, jsonb, name[], text, text, name);
CREATE FUNCTION @extschema@."register_table"(
	"source" regclass,
	"data_table_key" TEXT,
	"id_column" name,
	"name_column" name,
	"user_columns" name[] DEFAULT '{}',
	"user_key" TEXT DEFAULT 'email',
	"column_types" jsonb DEFAULT '{}',
	"field_keys" jsonb DEFAULT '{}',
	"exclude_columns" name[] DEFAULT '{}',
	"filter" TEXT DEFAULT NULL,
	"schedule" TEXT DEFAULT NULL,
	"run_as" name DEFAULT NULL,
	"follow_name" bool DEFAULT false
) RETURNS void
VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'register_table_following_wrapper';
-- Registrations may follow their source by name (a relation dropped and created again).
DROP FUNCTION @extschema@.alter_table(regclass, text, name, name, name[], text, jsonb, jsonb, name[], text, text, name);
CREATE FUNCTION @extschema@."alter_table"(
	"source" regclass,
	"data_table_key" TEXT DEFAULT NULL,
	"id_column" name DEFAULT NULL,
	"name_column" name DEFAULT NULL,
	"user_columns" name[] DEFAULT NULL,
	"user_key" TEXT DEFAULT NULL,
	"column_types" jsonb DEFAULT NULL,
	"field_keys" jsonb DEFAULT NULL,
	"exclude_columns" name[] DEFAULT NULL,
	"filter" TEXT DEFAULT NULL,
	"schedule" TEXT DEFAULT NULL,
	"run_as" name DEFAULT NULL,
	"follow_name" bool DEFAULT NULL
) RETURNS void
VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'alter_table_following_wrapper';
ALTER TABLE @extschema@.registrations ADD COLUMN shape jsonb;
ALTER TABLE @extschema@.registrations ADD COLUMN shape_of text;
ALTER TABLE @extschema@.registrations ADD COLUMN follow_name boolean NOT NULL DEFAULT false;
ALTER TABLE @extschema@.registrations ADD COLUMN source_owner regrole;
UPDATE @extschema@.registrations r
   SET source_owner = (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) r.source::pg_catalog.oid)::pg_catalog.regrole;
SELECT pg_catalog.pg_extension_config_dump('@extschema@.registrations',
  'WHERE EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) source::pg_catalog.oid)');

-- The purge deletes by start time alone (a 1-second schedule writes 86,400 runs a day).
CREATE INDEX runs_started ON @extschema@.runs (started_at);
-- The imports still pending, which the worker looks at every 15 seconds.
CREATE INDEX runs_pending ON @extschema@.runs (started_at) WHERE import_status OPERATOR(pg_catalog.=) 'pending';
-- Runs: the owner of their registration, seen by members only; history in pg_dump's output.
ALTER TABLE @extschema@.runs ADD COLUMN owner regrole;
UPDATE @extschema@.runs r
   SET owner = COALESCE((SELECT g.owner FROM @extschema@.registrations g WHERE g.source OPERATOR(pg_catalog.=) r.source),
                        (SELECT extowner FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'qobra_sync')::pg_catalog.regrole);
-- The guards' baseline moves out of the history a purge shortens (see schema.sql), taken from
-- the history kept so far.
CREATE TABLE @extschema@.baselines (
    source   regclass NOT NULL,
    owner    regrole NOT NULL,
    success  jsonb,
    alive_at timestamptz,
    PRIMARY KEY (source, owner)
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.baselines',
  'WHERE EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) source::pg_catalog.oid)');
INSERT INTO @extschema@.baselines (source, owner, success, alive_at)
SELECT g.source, g.owner,
       (SELECT pg_catalog.jsonb_build_object('run_id', x.run_id, 'rows', x.rows_read, 'sent', x.rows_sent,
               'sha256', CASE WHEN NOT EXISTS (SELECT FROM @extschema@.runs y
                                                WHERE y.source OPERATOR(pg_catalog.=) x.source
                                                  AND y.run_id OPERATOR(pg_catalog.>) x.run_id AND y.possibly_partial)
                              THEN x.snapshot_sha256 END,
               'at', x.finished_at)
          FROM @extschema@.runs x
         WHERE x.source OPERATOR(pg_catalog.=) g.source AND x.status OPERATOR(pg_catalog.=) 'succeeded'
         ORDER BY x.run_id DESC LIMIT 1),
       (SELECT pg_catalog.max(x.finished_at) FROM @extschema@.runs x
         WHERE x.source OPERATOR(pg_catalog.=) g.source
           AND x.status OPERATOR(pg_catalog.=) ANY (ARRAY['succeeded', 'skipped']))
  FROM @extschema@.registrations g;
ALTER TABLE @extschema@.runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY runs_of_members ON @extschema@.runs FOR SELECT
  USING (pg_catalog.pg_has_role(owner, 'MEMBER'));
ALTER TABLE @extschema@.run_errors ENABLE ROW LEVEL SECURITY;
CREATE POLICY run_errors_of_members ON @extschema@.run_errors FOR SELECT
  USING (EXISTS (SELECT FROM @extschema@.runs r WHERE r.run_id OPERATOR(pg_catalog.=) run_errors.run_id));
SELECT pg_catalog.pg_extension_config_dump('@extschema@.runs',
  'WHERE status OPERATOR(pg_catalog.<>) ''running'' AND EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) source::pg_catalog.oid)');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.runs_run_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.run_errors',
  'WHERE EXISTS (SELECT FROM @extschema@.runs r JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) r.source::pg_catalog.oid
                  WHERE r.run_id OPERATOR(pg_catalog.=) run_errors.run_id AND r.status OPERATOR(pg_catalog.<>) ''running'')');

-- The views, as 0.2.0 defines them: each shows only what belongs to registrations of roles the
-- reader is a member of.
CREATE VIEW @extschema@.tables WITH (security_barrier) AS
SELECT source, data_table_key, id_column, name_column, user_columns, user_key, column_types,
       field_keys, exclude_columns, filter, schedule, run_as::pg_catalog.text::pg_catalog.name AS run_as, paused,
       next_run_at, owner::pg_catalog.text::pg_catalog.name AS owner, shape, follow_name
  FROM @extschema@.registrations
 WHERE pg_catalog.pg_has_role(owner, 'MEMBER');

CREATE VIEW @extschema@.destination_status AS
SELECT d.base_url, k.api_key IS NOT NULL AS api_key_set, d.updated_at,
       CASE WHEN COALESCE(pg_catalog.current_setting('qobra_sync.api_key_file', true), '') OPERATOR(pg_catalog.<>) ''
            THEN 'api_key_file'
            WHEN k.api_key IS NOT NULL THEN 'set_destination' END AS key_source,
       d.body_format
  FROM @extschema@.destination d LEFT JOIN @extschema@.destination_key k ON true;

CREATE VIEW @extschema@.progress WITH (security_barrier) AS
SELECT p.pid, p.run_id, p.source, r.data_table_key, p.started_at,
       pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) p.started_at AS elapsed,
       p.chunks, p.rows_sent, p.bytes_sent, p.restarts
  FROM @extschema@._progress() p
  JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) p.pid
  LEFT JOIN @extschema@.runs r ON r.run_id OPERATOR(pg_catalog.=) p.run_id
  LEFT JOIN @extschema@.registrations g ON g.source OPERATOR(pg_catalog.=) p.source
 WHERE pg_catalog.pg_has_role(COALESCE(g.owner, r.owner), 'MEMBER');

-- preview() and csv_template() read as run_as (the registration's by default), and take
-- register_table()'s options, to inspect before registering exactly what will be sent.
DROP FUNCTION @extschema@.preview(regclass, integer);
CREATE FUNCTION @extschema@."preview"(
	"source" regclass,
	"max_rows" INT DEFAULT 10,
	"run_as" name DEFAULT NULL,
	"id_column" name DEFAULT NULL,
	"name_column" name DEFAULT NULL,
	"user_columns" name[] DEFAULT NULL,
	"user_key" TEXT DEFAULT NULL,
	"column_types" jsonb DEFAULT NULL,
	"field_keys" jsonb DEFAULT NULL,
	"exclude_columns" name[] DEFAULT NULL,
	"filter" TEXT DEFAULT NULL
) RETURNS SETOF jsonb
VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'preview_as_wrapper';
DROP FUNCTION @extschema@.csv_template(regclass, integer);
CREATE FUNCTION @extschema@."csv_template"(
	"source" regclass,
	"max_rows" INT DEFAULT 100,
	"run_as" name DEFAULT NULL,
	"id_column" name DEFAULT NULL,
	"name_column" name DEFAULT NULL,
	"user_columns" name[] DEFAULT NULL,
	"user_key" TEXT DEFAULT NULL,
	"column_types" jsonb DEFAULT NULL,
	"field_keys" jsonb DEFAULT NULL,
	"exclude_columns" name[] DEFAULT NULL,
	"filter" TEXT DEFAULT NULL
) RETURNS TEXT
VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'csv_template_as_wrapper';

-- unregister_table() also takes the data table key, for a source that is gone.
DROP FUNCTION @extschema@.unregister_table(regclass);
CREATE FUNCTION @extschema@."unregister_table"(
	"source" regclass DEFAULT NULL,
	"data_table_key" TEXT DEFAULT NULL
) RETURNS void
VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'unregister_table_or_key_wrapper';
COMMENT ON FUNCTION @extschema@.unregister_table(regclass, text) IS 'Removes a registration (its run history stays until purged), named by its source or, when the source is gone, by the data table it feeds.';

COMMENT ON FUNCTION @extschema@.alter_table(regclass, text, name, name, name[], text, jsonb, jsonb, name[], text, text, name, boolean) IS
  'Changes a registration: NULL keeps a value, an empty filter or schedule removes it. With only source, confirms a renamed source and accepts added columns (a renamed, dropped or retyped column needs accept_shape).';
-- accept_shape() accepts a source's changed columns, apart from confirming its new name.
CREATE FUNCTION @extschema@."accept_shape"(
	"source" regclass
) RETURNS void
VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'accept_shape_wrapper';
COMMENT ON FUNCTION @extschema@.accept_shape(regclass) IS
  'Accepts the source''s current synced columns as the registration''s shape, whatever changed (columns renamed, dropped, retyped, added), and confirms a renamed source.';

-- column_mapping() and validate() take every register_table() option too.
DROP FUNCTION @extschema@.column_mapping(regclass, name[], jsonb);
CREATE FUNCTION @extschema@."column_mapping"(
	"source" regclass,
	"user_columns" name[] DEFAULT NULL,
	"column_types" jsonb DEFAULT NULL,
	"id_column" name DEFAULT NULL,
	"name_column" name DEFAULT NULL,
	"field_keys" jsonb DEFAULT NULL,
	"exclude_columns" name[] DEFAULT NULL
) RETURNS TABLE (
	"column_name" name,
	"pg_type" TEXT,
	"qobra_type" TEXT,
	"allowed_types" TEXT[],
	"field_key" TEXT,
	"synced" bool,
	"note" TEXT
)
VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'column_mapping_with_options_wrapper';
COMMENT ON FUNCTION @extschema@.column_mapping(regclass, name[], jsonb, name, name, jsonb, name[]) IS
  'How each column maps to a Qobra field: Postgres type, Qobra type, allowed types, field key, synced or why not; under register_table''s column options, each NULL keeping the registration''s.';
DROP FUNCTION @extschema@.validate(regclass, name, name, name[], text, text, name);
CREATE FUNCTION @extschema@."validate"(
	"source" regclass,
	"id_column" name DEFAULT NULL,
	"name_column" name DEFAULT NULL,
	"user_columns" name[] DEFAULT NULL,
	"user_key" TEXT DEFAULT NULL,
	"filter" TEXT DEFAULT NULL,
	"run_as" name DEFAULT NULL,
	"column_types" jsonb DEFAULT NULL,
	"field_keys" jsonb DEFAULT NULL,
	"exclude_columns" name[] DEFAULT NULL
) RETURNS TABLE (
	"check_name" TEXT,
	"ok" bool,
	"detail" TEXT
)
VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'validate_with_options_wrapper';
COMMENT ON FUNCTION @extschema@.validate(regclass, name, name, name[], text, text, name, jsonb, jsonb, name[]) IS
  'Checks every requirement for pushing a source (columns, ids, user values, filter, reader, destination) and reports each with counts and samples; under register_table''s options, each NULL keeping the registration''s.';

-- set_destination() takes body_format; check_destination() tells whether Qobra can be reached.
DROP FUNCTION @extschema@.set_destination(text, text);
CREATE FUNCTION @extschema@."set_destination"(
	"api_key" TEXT DEFAULT NULL,
	"base_url" TEXT DEFAULT NULL,
	"body_format" TEXT DEFAULT NULL
) RETURNS void
VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'set_destination_with_format_wrapper';
CREATE FUNCTION @extschema@."check_destination"() RETURNS TABLE (
	"check_name" TEXT,
	"ok" bool,
	"detail" TEXT
)
STRICT VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'check_destination_wrapper';

-- sync_now() can fail the statement when the push fails (raise_on_failure).
DROP FUNCTION @extschema@.sync_now(regclass, boolean);
CREATE FUNCTION @extschema@."sync_now"(
	"source" regclass,
	"force" bool DEFAULT false,
	"raise_on_failure" bool DEFAULT false
) RETURNS bigint
VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'sync_now_or_raise_wrapper';

-- next_runs(): the times a schedule gives, as the worker computes them.
CREATE FUNCTION @extschema@."next_runs"(
	"schedule" TEXT,
	"after" timestamp with time zone DEFAULT pg_catalog.now(),
	"count" INT DEFAULT 5,
	"timezone" TEXT DEFAULT pg_catalog.current_setting('qobra_sync.timezone')
) RETURNS SETOF timestamp with time zone
STABLE PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'next_runs_wrapper';

-- status gains stale and consecutive_failures (it reads next_runs()); metrics is new.
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

-- What \df+ and \d+ show.
COMMENT ON FUNCTION @extschema@.set_destination(text, text, text) IS
  'Sets Qobra''s API key and base URL (superuser only; https, or http to loopback), and how requests frame their records (body_format: data or array); NULL keeps what is stored. Pushes run from this database only: calling it in a copy confirms the copy is to push. The key is never shown again; NULL when qobra_sync.api_key_file holds it.';
COMMENT ON FUNCTION @extschema@.check_destination() IS
  'Whether pushes can reach Qobra, by requests that change nothing there: address, connection and certificate (through the proxy), API key accepted, body format.';
COMMENT ON FUNCTION @extschema@.register_table(regclass, text, name, name, name[], text, jsonb, jsonb, name[], text, text, name, boolean) IS
  'Registers a table, partitioned table, view, materialized view or foreign table for pushes to the Qobra data table data_table_key (on schedule when one is given; follow_name: to a relation created again under its name). Everything is checked before it is stored.';
COMMENT ON FUNCTION @extschema@.preview(regclass, integer, name, name, name, name[], text, jsonb, jsonb, name[], text) IS
  'The records exactly as a push would send them, ordered by id, read as run_as (the registration''s by default); register_table''s options, each NULL keeping the registration''s, show them before registering.';
COMMENT ON FUNCTION @extschema@.csv_template(regclass, integer, name, name, name, name[], text, jsonb, jsonb, name[], text) IS
  'A CSV (header = field keys, then sample rows) to create the data table in Qobra by hand before the first push, read as run_as (the registration''s by default); register_table''s options make its header what the registration will send.';
COMMENT ON FUNCTION @extschema@.sync_now(regclass, boolean, boolean) IS
  'Pushes a registered source now, in this session; returns the run id (outcome in qobra_sync.runs). force overrides the deletion guard and skip_unchanged; raise_on_failure fails the statement when the run fails or is blocked.';
COMMENT ON FUNCTION @extschema@.next_runs(text, timestamp with time zone, integer, text) IS
  'The next count times a schedule fires after a time, in a time zone, as the worker computes them.';
COMMENT ON VIEW @extschema@.tables IS 'What is registered: one row per source, with the canonical filter and the next run time.';
COMMENT ON VIEW @extschema@._health IS 'Internal: the health of every registration, read by status and metrics (granted to no one).';
COMMENT ON VIEW @extschema@.status IS 'One row per registration: last outcome, last success, next run, last error, stale, consecutive failures, last failure, last imports'' outcome.';
COMMENT ON VIEW @extschema@.metrics IS 'One row per registration: counters over the kept history and gauges, for a Prometheus exporter.';
COMMENT ON VIEW @extschema@.progress IS 'Pushes in flight in any session of this database (when preloaded): chunks, rows and bytes sent so far.';
COMMENT ON VIEW @extschema@.destination_status IS 'Where pushes go, without the key.';
COMMENT ON TABLE @extschema@.destination IS 'Qobra''s API base URL, the body format, and the database pushes run from (its home). Owner only.';
COMMENT ON TABLE @extschema@.baselines IS 'The guards'' baseline of each registration: its last successful run and when Qobra last held its snapshot (kept whatever the history purge removes). Owner only.';
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
