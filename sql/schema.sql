-- qobra_sync's own tables and views. Nothing here is granted to PUBLIC: only the extension
-- owner (a superuser) reads or changes them unless it grants access.

-- The destination: Qobra's API base URL and the API key. One row at most. Never shown by any
-- view or function (destination_status shows api_key_set only); not dumped by pg_dump.
CREATE TABLE @extschema@.destination (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    base_url   text NOT NULL,
    api_key    text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
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
    schedule        text NOT NULL,
    run_as          regrole NOT NULL,
    paused          boolean NOT NULL DEFAULT false,
    next_run_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now()
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.registrations', '');

-- What is registered, as users read it.
CREATE VIEW @extschema@.tables AS
SELECT source, data_table_key, id_column, name_column, user_columns, user_key, column_types,
       field_keys, exclude_columns, filter, schedule, run_as::pg_catalog.text::pg_catalog.name AS run_as, paused,
       next_run_at
  FROM @extschema@.registrations;

-- Where pushes go, without the key.
CREATE VIEW @extschema@.destination_status AS
SELECT base_url, true AS api_key_set, updated_at
  FROM @extschema@.destination;
