-- Filters are parsed and analysed by Postgres; the canonical text is stored.
SELECT qobra_sync.register_table('deals', 'deals', 'id', 'title', run_as => 'qobra_reader',
       filter => $$stage IN ('Closed Won', 'Negotiation') AND close_date BETWEEN '2026-01-01' AND '2026-12-31'$$);
SELECT filter FROM qobra_sync.tables;
SELECT p->>'id' AS id FROM qobra_sync.preview('deals') AS p;
-- Accepted: realistic conditions.
SELECT qobra_sync.alter_table('deals', filter => $$coalesce(seats, 0) > 2 AND title ILIKE '%acme%'$$);
SELECT qobra_sync.alter_table('deals', filter => $$closed_at >= now() - interval '30 years'$$);
SELECT qobra_sync.alter_table('deals', filter => $$close_date < current_date AND won IS TRUE$$);
SELECT qobra_sync.alter_table('deals', filter => $$CASE WHEN region = 'EMEA' THEN amount > 10 ELSE true END$$);
SELECT filter FROM qobra_sync.tables;
-- Refused: statements, subqueries, aggregates, windows, volatile and unknown things.
SELECT qobra_sync.alter_table('deals', filter => $$true; DROP TABLE deals$$);
SELECT qobra_sync.alter_table('deals', filter => $$true UNION SELECT FROM pg_authid$$);
SELECT qobra_sync.alter_table('deals', filter => $$id IN (SELECT 1)$$);
SELECT qobra_sync.alter_table('deals', filter => $$EXISTS (SELECT 1 FROM pg_class)$$);
SELECT qobra_sync.alter_table('deals', filter => $$count(*) > 1$$);
SELECT qobra_sync.alter_table('deals', filter => $$row_number() OVER () > 1$$);
SELECT qobra_sync.alter_table('deals', filter => $$pg_sleep(10) IS NULL$$);
SELECT qobra_sync.alter_table('deals', filter => $$random() < 0.5$$);
SELECT qobra_sync.alter_table('deals', filter => $$nextval('public.deal_seq') > 0$$);
SELECT qobra_sync.alter_table('deals', filter => $$ctid = '(0,1)'$$);
SELECT qobra_sync.alter_table('deals', filter => $$generate_series(1, 2) > 1$$);
SELECT qobra_sync.alter_table('deals', filter => $$amount$$);
SELECT qobra_sync.alter_table('deals', filter => $$no_such_column = 1$$);
SELECT qobra_sync.alter_table('deals', filter => $$true ORDER BY 1$$);
SELECT qobra_sync.alter_table('deals', filter => $$true -- $$);
SELECT qobra_sync.alter_table('deals', filter => $$current_user = 'postgres'$$);
SELECT qobra_sync.alter_table('deals', filter => $$$1 = 1$$);
SELECT qobra_sync.alter_table('deals', filter => repeat('(', 5000) || 'true' || repeat(')', 5000));
SELECT qobra_sync.alter_table('deals', filter => repeat('x', 20000));
SELECT qobra_sync.alter_table('deals', filter => '   ');
-- The stored filter is unchanged by refused ones.
SELECT filter FROM qobra_sync.tables;
-- Leave no registration behind for the next file.
SELECT count(qobra_sync.unregister_table(source)) FROM qobra_sync.tables;
