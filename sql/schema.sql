-- qobra_sync's own tables and views. Nothing here is granted to PUBLIC. The extension owner (a
-- superuser) reads and changes everything; the role qobra_sync_operator (see finalize) reads
-- the views and runs, and sees there only what belongs to registrations of roles it is a
-- member of.

-- The destination: Qobra's API base URL, and how a request frames its records ('data':
-- {"data": [records]}, Qobra's convention on its other bulk endpoints; 'array': a bare array).
-- One row at most; pg_dump dumps it.
CREATE TABLE @extschema@.destination (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    base_url    text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- (Came with 0.2.0; an upgraded table has it last, so has this one.)
    body_format text NOT NULL DEFAULT 'data' CHECK (body_format OPERATOR(pg_catalog.=) ANY (ARRAY['data', 'array'])),
    -- The database set_destination() was last called in, '<system identifier>/<database OID>':
    -- pushes run only from it, so that a copy (a restored dump, a template's copy, a cluster
    -- upgraded with pg_upgrade) never pushes until set_destination() is called in it.
    home        text NOT NULL
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.destination', '');

-- The API key set_destination() stored (none when qobra_sync.api_key_file provides it). Kept
-- apart from the destination so that pg_dump never dumps it: a restored database has its
-- destination and no key until set_destination() is called again. Never shown by any view or
-- function (destination_status says whether there is one and where it comes from).
CREATE TABLE @extschema@.destination_key (
    singleton boolean PRIMARY KEY DEFAULT true REFERENCES @extschema@.destination ON DELETE CASCADE,
    api_key   text NOT NULL
);

-- Registrations: one row per source, stored by OID (regclass), with the name it had when it was
-- last registered or altered, so that a dropped or renamed source is noticed, never confused
-- with another relation.
CREATE TABLE @extschema@.registrations (
    source          regclass PRIMARY KEY,
    source_name     text NOT NULL,
    data_table_key  text NOT NULL UNIQUE,
    id_column       name NOT NULL,
    name_column     name NOT NULL,
    user_columns    name[] NOT NULL DEFAULT '{}',
    user_key        text NOT NULL DEFAULT 'email' CHECK (user_key OPERATOR(pg_catalog.=) ANY (ARRAY['email', 'id'])),
    column_types    jsonb NOT NULL DEFAULT '{}',
    field_keys      jsonb NOT NULL DEFAULT '{}',
    exclude_columns name[] NOT NULL DEFAULT '{}',
    filter          text,
    -- NULL: pushed only when asked (sync_now, request_sync).
    schedule        text,
    run_as          regrole NOT NULL,
    paused          boolean NOT NULL DEFAULT false,
    next_run_at     timestamptz,
    requested_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- (The columns below came with 0.2.0; an upgraded table has them last, so has this one.)
    -- The role that registered the source: it, its members and superusers may change, push
    -- and inspect the registration, and see its runs.
    owner           regrole NOT NULL,
    -- The synced shape, as registered or last altered: each synced column's attnum, name, type,
    -- Qobra type and field key. A push is blocked while the source no longer matches it.
    shape           jsonb,
    -- Where the shape's attnums belong, '<system identifier>/<database OID>/<relation OID>':
    -- elsewhere in a restored dump, whose columns are numbered afresh (the shape is then matched
    -- by column name).
    shape_of        text,
    -- Whether the registration follows its source by name: a relation created under that name
    -- (a table dropped and created again by a deploy) takes its place once its synced columns
    -- match the shape (see registry/follow.rs).
    follow_name     boolean NOT NULL DEFAULT false,
    -- The source's owner when it was registered, altered or followed: a relation that takes the
    -- source's name is followed only if the same role owns it (a role that may only create
    -- tables in the schema cannot put its own rows in the source's place).
    source_owner    regrole
);
-- pg_dump dumps the registrations of relations that exist (a registration whose source was
-- dropped would come back pointing at whatever has its OID in the new database).
SELECT pg_catalog.pg_extension_config_dump('@extschema@.registrations',
  'WHERE EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) source::pg_catalog.oid)');

-- The guards' baseline of a registration (its source, as its owner registered it), kept apart
-- from the history a purge shortens and from the registration's row (which an alter_table() in
-- progress holds): the last successful run ({"run_id", "rows", "sent", "sha256", "at"}; sha256
-- null once a later run may have left Qobra partial), and when Qobra last held the snapshot (a
-- success or a skip). pg_dump dumps those of relations that exist, as the registrations.
CREATE TABLE @extschema@.baselines (
    source   regclass NOT NULL,
    owner    regrole NOT NULL,
    success  jsonb,
    alive_at timestamptz,
    PRIMARY KEY (source, owner)
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.baselines',
  'WHERE EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) source::pg_catalog.oid)');

-- What is registered, as users read it: the registrations of the roles the reader is a member
-- of (every one for a superuser).
CREATE VIEW @extschema@.tables WITH (security_barrier) AS
SELECT source, data_table_key, id_column, name_column, user_columns, user_key, column_types,
       field_keys, exclude_columns, filter, schedule, run_as::pg_catalog.text::pg_catalog.name AS run_as, paused,
       next_run_at, owner::pg_catalog.text::pg_catalog.name AS owner, shape, follow_name
  FROM @extschema@.registrations
 WHERE pg_catalog.pg_has_role(owner, 'MEMBER');

-- Where pushes go, without the key: whether set_destination() stored one, and where pushes take
-- it from (the file qobra_sync.api_key_file names wins over a stored key).
CREATE VIEW @extschema@.destination_status AS
SELECT d.base_url, k.api_key IS NOT NULL AS api_key_set, d.updated_at,
       CASE WHEN COALESCE(pg_catalog.current_setting('qobra_sync.api_key_file', true), '') OPERATOR(pg_catalog.<>) ''
            THEN 'api_key_file'
            WHEN k.api_key IS NOT NULL THEN 'set_destination' END AS key_source,
       d.body_format
  FROM @extschema@.destination d LEFT JOIN @extschema@.destination_key k ON true;

-- Runs: one row per attempt at a push, whatever its outcome. `source` may outlive its relation.
CREATE TABLE @extschema@.runs (
    run_id           bigserial PRIMARY KEY,
    source           regclass NOT NULL,
    source_name      text NOT NULL,
    data_table_key   text NOT NULL,
    trigger          text NOT NULL CHECK (trigger OPERATOR(pg_catalog.=) ANY (ARRAY['manual', 'schedule', 'request'])),
    status           text NOT NULL CHECK (status OPERATOR(pg_catalog.=) ANY (ARRAY['running', 'succeeded', 'failed', 'blocked', 'skipped', 'interrupted'])),
    started_at       timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    finished_at      timestamptz,
    rows_read        bigint NOT NULL DEFAULT 0,
    rows_sent        bigint NOT NULL DEFAULT 0,
    rows_rejected    bigint NOT NULL DEFAULT 0,
    bytes_sent       bigint NOT NULL DEFAULT 0,
    requests         integer NOT NULL DEFAULT 0,
    retries          integer NOT NULL DEFAULT 0,
    restarts         integer NOT NULL DEFAULT 0,
    import_ids       text[] NOT NULL DEFAULT '{}',
    import_status    text CHECK (import_status OPERATOR(pg_catalog.=) ANY (ARRAY['pending', 'finished', 'failed', 'unknown'])),
    snapshot_sha256  text,
    possibly_partial boolean NOT NULL DEFAULT false,
    error            text,
    -- The registration's owner when the run started: who may see the run.
    owner            regrole
);
CREATE INDEX runs_source_started ON @extschema@.runs (source, started_at);
-- The purge deletes by start time alone (a 1-second schedule writes 86,400 runs a day).
CREATE INDEX runs_started ON @extschema@.runs (started_at);
-- The imports still pending, which the worker looks at every 15 seconds.
CREATE INDEX runs_pending ON @extschema@.runs (started_at) WHERE import_status OPERATOR(pg_catalog.=) 'pending';
-- pg_dump dumps the history of the sources that exist (as registrations above), but not runs
-- still running (a restored copy would stay so), and the sequence, so that restored runs keep
-- their ids and new ones follow them.
SELECT pg_catalog.pg_extension_config_dump('@extschema@.runs',
  'WHERE status OPERATOR(pg_catalog.<>) ''running'' AND EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) source::pg_catalog.oid)');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.runs_run_id_seq', '');
-- Roles other than the extension owner see only the runs of registrations of roles they are
-- members of.
ALTER TABLE @extschema@.runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY runs_of_members ON @extschema@.runs FOR SELECT
  USING (pg_catalog.pg_has_role(owner, 'MEMBER'));

-- Rows of a run that did not make it into Qobra: rejected by us before sending ('push') or
-- reported by Qobra's import ('import').
CREATE TABLE @extschema@.run_errors (
    run_id      bigint NOT NULL REFERENCES @extschema@.runs ON DELETE CASCADE,
    origin      text NOT NULL CHECK (origin OPERATOR(pg_catalog.=) ANY (ARRAY['push', 'import'])),
    line_number bigint,
    "row"       jsonb,
    details     text NOT NULL
);
CREATE INDEX run_errors_run ON @extschema@.run_errors (run_id);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.run_errors',
  'WHERE EXISTS (SELECT FROM @extschema@.runs r JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) r.source::pg_catalog.oid
                  WHERE r.run_id OPERATOR(pg_catalog.=) run_errors.run_id AND r.status OPERATOR(pg_catalog.<>) ''running'')');
ALTER TABLE @extschema@.run_errors ENABLE ROW LEVEL SECURITY;
CREATE POLICY run_errors_of_members ON @extschema@.run_errors FOR SELECT
  USING (EXISTS (SELECT FROM @extschema@.runs r WHERE r.run_id OPERATOR(pg_catalog.=) run_errors.run_id));
