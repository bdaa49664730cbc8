-- Filters: 20+ realistic ones accepted with exactly the right rows, 90 hostile ones refused,
-- and proof that none of the refused ones did anything.
CREATE TABLE opportunities AS
SELECT g AS id,
       (ARRAY['Acme', 'Globex', 'Initech', 'Hooli', 'Umbrella'])[1 + g % 5] || CASE WHEN g % 3 = 0 THEN ' renewal' ELSE ' new deal' END AS name,
       (ARRAY['Prospecting', 'Negotiation', 'Closed Won', 'Closed Lost'])[1 + g % 4] AS stage_name,
       round((g * 731 % 20000)::numeric + 0.25, 2) AS amount,
       date '2025-01-01' + (g * 17 % 730) AS close_date,
       (ARRAY['ana', 'bob', 'carl'])[1 + g % 3] || '@' || (ARRAY['acme.com', 'globex.io'])[1 + g % 2] AS owner_email,
       (ARRAY['EMEA', 'NA', 'APAC'])[1 + g % 3] AS region,
       CASE WHEN g % 7 = 0 THEN NULL ELSE g * 13 % 101 END AS probability,
       g % 4 = 2 AS is_won,
       timestamptz '2024-06-01 00:00+00' + g * interval '11 days 3 hours' AS created_at,
       (CASE WHEN g % 2 = 0 THEN 'EUR' ELSE 'USD' END)::char(3) AS currency
  FROM generate_series(1, 60) g;
ALTER TABLE opportunities ADD PRIMARY KEY (id);
GRANT SELECT ON opportunities TO qobra_reader;
CREATE SEQUENCE opp_seq;
SELECT qobra_sync.register_table('opportunities', 'opportunities', 'id', 'name',
       user_columns => '{owner_email}', run_as => 'qobra_reader');
-- accepts(f): sets the filter, then compares preview()'s ids with the rows Postgres selects itself.
CREATE FUNCTION accepts(f text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE expected int[]; got int[];
BEGIN
    PERFORM qobra_sync.alter_table('opportunities', filter => f);
    EXECUTE format('SELECT coalesce(array_agg(id ORDER BY id), ''{}'') FROM opportunities WHERE %s', f) INTO expected;
    SELECT coalesce(array_agg((p->>'id')::int ORDER BY (p->>'id')::int), '{}') INTO got
      FROM qobra_sync.preview('opportunities', 1000) AS p;
    RETURN CASE WHEN expected = got THEN 'same ' || cardinality(got) || ' rows'
                ELSE 'MISMATCH: ' || expected::text || ' <> ' || got::text END;
END $$;
SELECT f AS realistic_filter, accepts(f) FROM (VALUES
  ($$stage_name = 'Closed Won'$$),
  ($$stage_name = 'Closed Won' AND close_date >= date '2026-01-01'$$),
  ($$amount > 10000$$),
  ($$amount BETWEEN 1000 AND 5000$$),
  ($$region IN ('EMEA', 'NA')$$),
  ($$region NOT IN ('APAC')$$),
  ($$owner_email LIKE '%@acme.com'$$),
  ($$owner_email ILIKE '%GLOBEX%'$$),
  ($$name ~* 'renewal'$$),
  ($$close_date < date '2026-06-01' - 30 AND current_date > date '2000-01-01'$$),
  ($$created_at >= now() - interval '100 years'$$),
  ($$is_won$$),
  ($$NOT is_won AND probability >= 50$$),
  ($$probability IS NULL$$),
  ($$coalesce(probability, 0) < 20$$),
  ($$CASE WHEN region = 'EMEA' THEN amount > 2000 ELSE amount > 8000 END$$),
  ($$lower(stage_name) = 'closed lost'$$),
  ($$date_trunc('month', created_at) >= timestamptz '2025-06-01 00:00+00'$$),
  ($$extract(year FROM close_date) = 2026$$),
  ($$length(name) > 14$$),
  ($$currency = 'EUR'$$),
  ($$amount::int % 2 = 0$$),
  ($$nullif(region, 'NA') IS NOT NULL$$),
  ($$close_date BETWEEN '2025-01-01' AND '2025-06-30' OR stage_name = 'Negotiation'$$),
  ($$to_char(close_date, 'YYYY-MM') = '2026-03'$$),
  ($$greatest(amount, 5000) = amount AND least(probability, 50) = 50$$)
) AS t(f);
SELECT filter AS canonical_text_of_the_last FROM qobra_sync.tables WHERE source = 'opportunities'::regclass;
-- User-defined objects a filter must not reach.
CREATE FUNCTION evil_fn(int) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE FUNCTION dblink(text, text) RETURNS text LANGUAGE sql AS 'SELECT $1';
CREATE FUNCTION evil_eq(int, int) RETURNS boolean LANGUAGE sql AS 'SELECT $1 = $2';
CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = evil_eq);
CREATE COLLATION evil (provider = libc, locale = 'C');
CREATE TYPE mood AS ENUM ('happy');
-- refuses(f): the outcome of setting filter f, as SQLSTATE: message.
CREATE FUNCTION refuses(f text) RETURNS text LANGUAGE sql AS
$$ SELECT try(format('SELECT qobra_sync.alter_table(%L, filter => %L)', 'opportunities', f)) $$;
SELECT qobra_sync.alter_table('opportunities', filter => 'amount > 0');
SELECT left(f, 70) AS hostile_filter, refuses(f) FROM (VALUES
  ($$true; DROP TABLE opportunities$$),
  ($$true); DROP TABLE opportunities; --$$),
  ($$amount > 0; COMMIT; DROP TABLE opportunities$$),
  ($$/* comment */ true; SELECT 1$$),
  ($$U&'\0027' = name; DROP TABLE opportunities$$),
  ($$1 = 1 UNION SELECT NULL$$),
  ($$true UNION ALL SELECT FROM pg_authid$$),
  ($$true) OR (SELECT true$$),
  ($$id IN (SELECT oid FROM pg_authid)$$),
  ($$EXISTS (SELECT 1 FROM pg_shadow)$$),
  ($$(SELECT true)$$),
  ($$id = ANY (ARRAY(SELECT 1))$$),
  ($$name = (SELECT rolpassword FROM pg_authid LIMIT 1)$$),
  ($$count(*) > 0$$),
  ($$sum(amount) > 0$$),
  ($$rank() OVER (ORDER BY amount) = 1$$),
  ($$generate_series(1, 3) = 1$$),
  ($$unnest(ARRAY[1, 2]) = 1$$),
  ($$pg_sleep(5) IS NOT NULL$$),
  ($$pg_sleep_for('5 seconds') IS NOT NULL$$),
  ($$(pg_catalog.pg_sleep(1))::text = ''$$),
  ($$COALESCE(NULL, pg_sleep(1)) IS NULL$$),
  ($$CASE WHEN true THEN pg_sleep(1) IS NULL END$$),
  ($$set_config('search_path', 'evil', false) IS NOT NULL$$),
  ($$pg_advisory_lock(1) IS NOT NULL$$),
  ($$pg_try_advisory_lock(1)$$),
  ($$pg_terminate_backend(pg_backend_pid())$$),
  ($$pg_cancel_backend(1)$$),
  ($$nextval('public.opp_seq') > 0$$),
  ($$setval('public.opp_seq', 100) > 0$$),
  ($$pg_read_file('/etc/passwd') <> ''$$),
  ($$pg_read_binary_file('/etc/passwd') IS NOT NULL$$),
  ($$pg_ls_dir('.') IS NOT NULL$$),
  ($$lo_import('/etc/passwd') > 0$$),
  ($$lo_export(1, '/tmp/x') > 0$$),
  ($$lo_unlink(1) > 0$$),
  ($$random() > 0.5$$),
  ($$clock_timestamp() > now()$$),
  ($$txid_current() > 0$$),
  ($$pg_current_xact_id() IS NOT NULL$$),
  ($$pg_stat_reset() IS NOT NULL$$),
  ($$pg_reload_conf()$$),
  ($$pg_notify('c', 'x') IS NOT NULL$$),
  ($$query_to_xml('select 1', true, true, '') IS NOT NULL$$),
  ($$current_setting('qobra_sync.database_name') <> ''$$),
  ($$has_table_privilege('pg_authid', 'SELECT')$$),
  ($$pg_backend_pid() > 0$$),
  ($$inet_client_addr() IS NULL$$),
  ($$format('%s', name) <> ''$$),
  ($$current_user = 'postgres'$$),
  ($$session_user = 'postgres'$$),
  ($$public.evil_fn(id)$$),
  ($$public.dblink('x', 'y') IS NOT NULL$$),
  ($$id OPERATOR(public.===) 1$$),
  ($$name COLLATE public.evil = 'x'$$),
  ($$'happy'::public.mood IS NOT NULL$$),
  ($$amount::public.positive_amount > 0$$),
  ($$'pg_sleep'::regproc IS NOT NULL$$),
  ($$stage_name::regproc IS NOT NULL$$),
  ($$'public.opportunities'::regclass IS NOT NULL$$),
  ($$'int4'::regtype IS NOT NULL$$),
  ($$stage_name::regtype IS NOT NULL$$),
  ($$'public'::regnamespace IS NOT NULL$$),
  ($$'english'::regconfig IS NOT NULL$$),
  ($$region::regconfig IS NOT NULL$$),
  ($$'postgres'::regrole IS NOT NULL$$),
  ($$'=(int4,int4)'::regoperator IS NOT NULL$$),
  ($$'postgres=r/postgres'::aclitem IS NOT NULL$$),
  ($$(owner_email || '=r/postgres')::aclitem IS NOT NULL$$),
  ($$ARRAY['pg_sleep']::regproc[] IS NOT NULL$$),
  ($$'{pg_sleep}'::regproc[] IS NOT NULL$$),
  ($$'1.00'::money > '0'::money$$),
  ($$ctid IS NOT NULL$$),
  ($$xmin::text <> ''$$),
  ($$tableoid > 0$$),
  ($$opportunities IS NOT NULL$$),
  ($$$1 = 1$$),
  ($$amount$$),
  ($$name || 'x'$$),
  ($$no_such_column = 1$$),
  ($$true ORDER BY 1$$),
  ($$true LIMIT 1$$),
  ($$true FOR UPDATE$$),
  ($$true GROUP BY id$$),
  ($$true HAVING true$$),
  ($$true WINDOW w AS ()$$),
  ($$WITH x AS (SELECT 1) SELECT true$$),
  ($$amount >$$),
  ($$'unterminated$$),
  ('   '),
  (repeat('(', 100000) || 'true' || repeat(')', 100000)),
  ('amount > 0 OR ' || repeat('name = ''x'' OR ', 100000) || 'true')
) AS t(f);
-- Nothing a refused filter said was done, and the stored filter is the last accepted one.
SELECT count(*) AS opportunities_rows, (SELECT last_value FROM opp_seq) AS seq_value,
       (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory') AS advisory_locks,
       (SELECT count(*) FROM pg_largeobject_metadata) AS large_objects,
       current_setting('search_path') AS search_path
  FROM opportunities;
SELECT filter FROM qobra_sync.tables WHERE source = 'opportunities'::regclass;
-- Harmless tricks are accepted as the plain conditions they are, and so are constants and casts
-- whose text conversion is immutable (or a date/time one, under the settings every read pins).
SELECT f AS trick, accepts(f) FROM (VALUES
  ($$true -- ; DROP TABLE opportunities$$),
  ($q$name <> $x$; DROP TABLE opportunities; $x$$q$),
  ($$name <> E'\x27; DROP TABLE opportunities; --'$$),
  ($$/* ; DROP TABLE opportunities */ amount > 100$$),
  ($$name::jsonb IS NULL OR true$$),
  ($$'$.a'::jsonpath IS NOT NULL$$),
  ($$'10:20:10,14,15'::txid_snapshot IS NOT NULL$$),
  ($$region = ANY ('{EMEA,NA}'::text[])$$),
  ($$probability = ANY ('{1,2,3}')$$),
  ($$'[1,50)'::int4range @> probability$$)
) AS t(f);
SELECT count(*) AS still_there FROM opportunities;
SELECT count(qobra_sync.unregister_table(source)) FROM qobra_sync.tables;
