-- Runs first, in a fresh database: the extension, a least-privileged reader, and fixtures.
CREATE EXTENSION qobra_sync;
CREATE ROLE qobra_reader NOLOGIN;
CREATE ROLE qobra_admin NOLOGIN;
CREATE ROLE qobra_super SUPERUSER NOLOGIN;
CREATE ROLE qobra_file_reader NOLOGIN IN ROLE pg_read_server_files;
CREATE DOMAIN positive_amount AS numeric(14,2) CHECK (VALUE >= 0);
CREATE DOMAIN email AS text;
-- One column of every type of the mapping table, plus two unsupported ones.
CREATE TABLE deals (
    id          bigint PRIMARY KEY,
    title       text NOT NULL,
    owner_email email,
    stage       character varying(40),
    region      character(6),
    seats       integer,
    discount    smallint,
    amount      numeric,
    net         positive_amount,
    ratio       double precision,
    score       real,
    legacy      float,
    fee         money,
    won         boolean,
    close_date  date,
    created     timestamp,
    closed_at   timestamptz,
    flags       bit(4),
    tags        bit varying(8),
    ref         uuid,
    payload     jsonb
);
INSERT INTO deals VALUES
 (1, 'Acme renewal', 'ana@acme.com', 'Closed Won', 'EMEA', 10, 5, 12345678901234567890123456789012345678.25, 1200.50, 0.1, 1.5, 2.25, 1234.56, true, '2026-03-31', '2026-03-31 09:30:00', '2026-03-31 12:00:00+02', B'1010', B'101', '5f0c6a3e-1111-4a4b-8c8c-000000000001', '{}'),
 (2, 'Globex "new" deal', 'bob@globex.com', 'Negotiation', 'NA', NULL, NULL, -0.5, 0, -1e-7, NULL, NULL, -99.99, false, '1969-07-20', '1969-07-20 20:17:40', '1969-07-20 20:17:40+00', B'0000', B'', NULL, NULL),
 (3, E'Initech\nline two \\ ✓ 🚀 ''quoted''', 'carl@initech.io', 'Closed Won', 'APAC', 3, 0, 100, 100, 1e300, -3.4e38, 1, 0, NULL, '0001-01-01', '9999-12-31 23:59:59.999999', '2026-06-30 23:59:59.5-08', NULL, NULL, NULL, NULL),
 (4, 'Hooli', 'not-an-email', 'Closed Lost', 'EMEA', 1, 1, 1, 1, 1, 1, 1, 1, true, '2026-01-01', NULL, NULL, NULL, NULL, NULL, NULL),
 (5, 'Edge values', 'dana@edge.dev', 'Closed Won', 'EMEA', 1, 1, 'NaN', 1, 'Infinity', 'NaN', 1, 1, true, 'infinity', NULL, '-infinity', NULL, NULL, NULL, NULL);
GRANT SELECT ON deals TO qobra_reader;
-- Sources of every allowed kind, and relations that cannot be sources.
CREATE TABLE sales (id int, name text, region text, amount numeric) PARTITION BY LIST (region);
CREATE TABLE sales_emea PARTITION OF sales FOR VALUES IN ('EMEA');
CREATE TABLE sales_na PARTITION OF sales FOR VALUES IN ('NA');
INSERT INTO sales VALUES (1, 'a', 'EMEA', 1), (2, 'b', 'NA', 2), (2, 'b again', 'NA', 3), (NULL, 'c', 'EMEA', 4);
CREATE VIEW won_deals AS SELECT id, title, amount FROM deals WHERE won;
CREATE MATERIALIZED VIEW deal_totals AS SELECT stage, sum(amount) AS total, count(*)::int AS n FROM deals GROUP BY stage;
GRANT SELECT ON sales, won_deals, deal_totals TO qobra_reader;
CREATE SEQUENCE deal_seq;
CREATE INDEX deals_stage ON deals (stage);
CREATE TYPE money_pair AS (a numeric, b numeric);
-- try(sql): runs a statement and shows its outcome as SQLSTATE: message, for the error-class tests.
CREATE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE state text; message text;
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
    RETURN state || ': ' || message;
END $$;
