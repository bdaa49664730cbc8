-- Schema drift: a registration records its synced shape; a synced column renamed, dropped or
-- retyped blocks pushes (Qobra untouched) until accept_shape(source) accepts the new shape; a
-- column added since is not sent until alter_table(source) accepts it, which accepts nothing
-- else: confirming a renamed source and accepting a lost column are separate acts. There is no Qobra here: a push that gets past
-- the guard fails to connect, which tells it apart from a blocked one.
SET client_min_messages = error;
SELECT qobra_sync.set_destination('qk_regress_drift_0000', 'http://127.0.0.1:9');
SET qobra_sync.max_retries = 0;
CREATE TABLE drifting (id int PRIMARY KEY, name text, amount numeric, stage text, closed date);
INSERT INTO drifting VALUES (1, 'a', 10, 'won', '2026-01-01'), (2, 'b', 20, 'lost', '2026-02-01');
GRANT SELECT ON drifting TO qobra_reader;
SELECT qobra_sync.register_table('drifting', 'drifting', 'id', 'name', run_as => 'qobra_reader',
       schedule => '0 0 29 2 *');
SELECT e->>'column' AS "column", e->>'pg_type' AS pg_type, e->>'qobra_type' AS qobra_type, e->>'field_key' AS field_key
  FROM qobra_sync.tables, jsonb_array_elements(shape) e WHERE source = 'drifting'::regclass;
-- last_run(): the status and error of the last run of drifting.
CREATE FUNCTION last_run() RETURNS TABLE (status text, requests int, error text) LANGUAGE sql AS
$$ SELECT status, requests, CASE WHEN error LIKE '%could not connect%' THEN '(could not connect: the push got past the guard)' ELSE error END
     FROM qobra_sync.runs WHERE source = 'drifting'::regclass ORDER BY run_id DESC LIMIT 1 $$;
SELECT qobra_sync.sync_now('drifting') IS NOT NULL AS pushed;
SELECT * FROM last_run();
-- A renamed column blocks the push, and says how to keep its key.
ALTER TABLE drifting RENAME COLUMN amount TO amount_eur;
SELECT qobra_sync.sync_now('drifting') IS NOT NULL AS pushed;
SELECT * FROM last_run();
SELECT check_name, ok, detail FROM qobra_sync.validate('drifting') WHERE check_name IN ('shape unchanged', 'rows');
SELECT try($$SELECT * FROM qobra_sync.preview('drifting')$$);
-- Changing only the schedule does not accept the new shape.
SELECT qobra_sync.alter_table('drifting', schedule => '0 0 28 2 *');
SELECT check_name, ok FROM qobra_sync.validate('drifting') WHERE check_name = 'shape unchanged';
-- Accepting it under the old field key.
SELECT qobra_sync.alter_table('drifting', field_keys => '{"amount_eur": "amount"}');
SELECT * FROM qobra_sync.preview('drifting', 1);
SELECT qobra_sync.sync_now('drifting') IS NOT NULL AS pushed;
SELECT * FROM last_run();
-- An added column is not sent until accepted, and is reported as new.
ALTER TABLE drifting ADD COLUMN region text DEFAULT 'EMEA';
SELECT column_name, synced, note FROM qobra_sync.column_mapping('drifting') WHERE column_name = 'region';
SELECT check_name, ok, detail FROM qobra_sync.validate('drifting') WHERE check_name = 'shape unchanged';
SELECT * FROM qobra_sync.preview('drifting', 1);
SELECT qobra_sync.alter_table('drifting');
SELECT * FROM qobra_sync.preview('drifting', 1);
-- A dropped column, and a column whose type no longer maps to its Qobra type.
ALTER TABLE drifting DROP COLUMN stage;
ALTER TABLE drifting ALTER COLUMN closed TYPE text;
SELECT qobra_sync.sync_now('drifting') IS NOT NULL AS pushed;
SELECT * FROM last_run();
-- alter_table(source) alone does not accept them (a WARNING says so); accept_shape() does.
SET client_min_messages = warning;
SELECT qobra_sync.alter_table('drifting');
SET client_min_messages = error;
SELECT check_name, ok FROM qobra_sync.validate('drifting') WHERE check_name = 'shape unchanged';
SELECT qobra_sync.accept_shape('drifting');
SELECT check_name, ok FROM qobra_sync.validate('drifting') WHERE check_name = 'shape unchanged';
-- A type change within the same Qobra type does not block.
ALTER TABLE drifting ALTER COLUMN amount_eur TYPE double precision;
SELECT qobra_sync.sync_now('drifting') IS NOT NULL AS pushed;
SELECT * FROM last_run();
-- A view whose definition changes is covered the same way.
CREATE VIEW drifting_view AS SELECT id, name, amount_eur AS amount FROM drifting;
GRANT SELECT ON drifting_view TO qobra_reader;
SELECT qobra_sync.register_table('drifting_view', 'drifting_view', 'id', 'name', run_as => 'qobra_reader',
       schedule => '0 0 29 2 *');
CREATE OR REPLACE VIEW drifting_view AS SELECT id, name, amount_eur AS amount, region FROM drifting;
SELECT column_name, synced, note FROM qobra_sync.column_mapping('drifting_view') WHERE column_name = 'region';
ALTER VIEW drifting_view RENAME COLUMN amount TO total;
SELECT qobra_sync.sync_now('drifting_view') IS NOT NULL AS pushed;
SELECT status, error FROM qobra_sync.runs WHERE source = 'drifting_view'::regclass ORDER BY run_id DESC LIMIT 1;
-- A registration without a recorded shape (made before shapes were recorded) gets one at its
-- next push.
UPDATE qobra_sync.registrations SET shape = NULL WHERE source = 'drifting'::regclass;
SELECT qobra_sync.sync_now('drifting') IS NOT NULL AS pushed;
SELECT jsonb_array_length(shape) AS recorded_columns FROM qobra_sync.tables WHERE source = 'drifting'::regclass;
-- Leave nothing behind.
SELECT count(qobra_sync.unregister_table(source)) FROM qobra_sync.tables;
DROP FUNCTION last_run();
DROP VIEW drifting_view;
DROP TABLE drifting;
RESET qobra_sync.max_retries;
RESET client_min_messages;
