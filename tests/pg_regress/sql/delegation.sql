-- Delegating qobra_sync: one grant (qobra_sync_operator) lets a role operate the extension on
-- the registrations of roles it is a member of, reading only as roles it may SET ROLE to. The
-- matrix: every function and view, for a superuser, the owner, a member of the owner, an
-- unrelated operator, and an operator that may act as the reader but owns nothing.
SET client_min_messages = error;
SELECT qobra_sync.set_destination('qk_regress_delegation_0000', 'http://127.0.0.1:9');
SET qobra_sync.max_retries = 0;
CREATE ROLE d_reader NOLOGIN;
CREATE ROLE d_hr_reader NOLOGIN;
CREATE ROLE d_owner NOLOGIN IN ROLE qobra_sync_operator, d_reader;
CREATE ROLE d_member NOLOGIN IN ROLE qobra_sync_operator, d_owner;
CREATE ROLE d_other NOLOGIN IN ROLE qobra_sync_operator;
CREATE ROLE d_hr_admin NOLOGIN IN ROLE qobra_sync_operator, d_hr_reader;
CREATE TABLE d_deals (id int PRIMARY KEY, name text, amount numeric);
INSERT INTO d_deals VALUES (1, 'a', 10), (2, 'b', 20);
GRANT SELECT ON d_deals TO d_reader;
CREATE TABLE salaries (id int PRIMARY KEY, name text, salary numeric);
INSERT INTO salaries VALUES (1, 'ceo', 1000000), (2, 'cto', 900000);
GRANT SELECT ON salaries TO d_hr_reader;
-- The owner registers its table, as a role it may act as; the operator role needs no grant on
-- any table of the extension.
SET ROLE d_owner;
SELECT qobra_sync.register_table('d_deals', 'd_deals', 'id', 'name', run_as => 'd_reader', schedule => '0 0 29 2 *');
SELECT source, owner, run_as FROM qobra_sync.tables;
RESET ROLE;
-- calls(): each call of the matrix, as the role the session is set to, with its outcome.
CREATE FUNCTION calls() RETURNS TABLE (call text, outcome text) LANGUAGE sql AS $$
SELECT c, try(c) FROM (VALUES
  ($q$SELECT qobra_sync.alter_table('d_deals', schedule => '0 0 29 2 *')$q$),
  ($q$SELECT qobra_sync.pause('d_deals')$q$),
  ($q$SELECT qobra_sync.resume('d_deals')$q$),
  ($q$SELECT * FROM qobra_sync.column_mapping('d_deals')$q$),
  ($q$SELECT * FROM qobra_sync.validate('d_deals')$q$),
  ($q$SELECT * FROM qobra_sync.preview('d_deals')$q$),
  ($q$SELECT qobra_sync.csv_template('d_deals')$q$),
  ($q$SELECT qobra_sync.sync_now('d_deals')$q$),
  ($q$SELECT qobra_sync.request_sync('d_deals')$q$),
  ($q$SELECT qobra_sync.set_destination('qk_regress_delegation_0000', 'http://127.0.0.1:9')$q$),
  ($q$SELECT qobra_sync.poll_imports()$q$),
  ($q$SELECT * FROM qobra_sync.destination$q$),
  ($q$SELECT * FROM qobra_sync.registrations$q$)
) AS t(c) $$;
-- seen(): how many rows of each view the role the session is set to sees.
CREATE FUNCTION seen() RETURNS TABLE (view text, visible_rows bigint) LANGUAGE sql AS $$
SELECT 'tables', (SELECT count(*) FROM qobra_sync.tables)
UNION ALL SELECT 'status', (SELECT count(*) FROM qobra_sync.status)
UNION ALL SELECT 'runs', (SELECT count(*) FROM qobra_sync.runs WHERE source = 'd_deals'::regclass)
UNION ALL SELECT 'run_errors', (SELECT count(*) FROM qobra_sync.run_errors)
UNION ALL SELECT 'progress', (SELECT count(*) FROM qobra_sync.progress)
UNION ALL SELECT 'destination_status', (SELECT count(*) FROM qobra_sync.destination_status) $$;
SET ROLE postgres;
SELECT * FROM calls();
SELECT * FROM seen();
SET ROLE d_owner;
SELECT * FROM calls();
SELECT * FROM seen();
SET ROLE d_member;
SELECT * FROM calls();
SELECT * FROM seen();
SET ROLE d_other;
SELECT * FROM calls();
SELECT * FROM seen();
SET ROLE d_hr_admin;
SELECT * FROM calls();
SELECT * FROM seen();
RESET ROLE;
-- The escalation: an operator that cannot read salaries, naming as run_as a role that can.
-- Refused at every entry point; nothing is read (validate reports it and reads nothing).
SET ROLE d_other;
SELECT try($$SELECT qobra_sync.register_table('salaries', 'salaries', 'id', 'name', run_as => 'd_hr_reader')$$);
SELECT try($$SELECT * FROM qobra_sync.preview('salaries', run_as => 'd_hr_reader')$$);
SELECT try($$SELECT qobra_sync.csv_template('salaries', run_as => 'd_hr_reader')$$);
SELECT check_name, ok, detail FROM qobra_sync.validate('salaries', 'id', 'name', run_as => 'd_hr_reader')
 WHERE check_name IN ('reader least-privileged', 'rows');
SELECT try($$SELECT * FROM qobra_sync.preview('salaries')$$);
SELECT try($$SELECT qobra_sync.alter_table('d_deals', run_as => 'd_hr_reader')$$);
-- Not even the owner may hand its registration to a reader it cannot act as.
SET ROLE d_owner;
SELECT try($$SELECT qobra_sync.alter_table('d_deals', run_as => 'd_hr_reader')$$);
RESET ROLE;
-- An operator that may act as the reader registers salaries; others still cannot inspect it.
SET ROLE d_hr_admin;
SELECT qobra_sync.register_table('salaries', 'salaries', 'id', 'name', run_as => 'd_hr_reader', schedule => '0 0 29 2 *');
SELECT count(*) AS previewed FROM qobra_sync.preview('salaries');
SET ROLE d_other;
SELECT try($$SELECT * FROM qobra_sync.preview('salaries')$$);
SELECT try($$SELECT qobra_sync.sync_now('salaries')$$);
SELECT count(*) AS salaries_registrations_seen FROM qobra_sync.tables WHERE source = 'salaries'::regclass;
RESET ROLE;
-- Membership revoked between two runs: the second is blocked, naming both roles.
SELECT qobra_sync.sync_now('salaries') IS NOT NULL AS first_run;
REVOKE d_hr_reader FROM d_hr_admin;
SELECT qobra_sync.sync_now('salaries') IS NOT NULL AS second_run;
SELECT status, requests, error FROM qobra_sync.runs WHERE source = 'salaries'::regclass ORDER BY run_id;
-- A source that fails to read is a failed run with PostgreSQL's message and SQLSTATE, not an
-- error: the reader lost its privilege, a view divides by zero.
REVOKE SELECT ON d_deals FROM d_reader;
CREATE VIEW d_broken AS SELECT id, name, 1 / (id - id) AS boom FROM d_deals;
GRANT SELECT ON d_broken TO d_reader;
GRANT SELECT ON d_deals TO d_reader;
SET ROLE d_owner;
SELECT qobra_sync.register_table('d_broken', 'd_broken', 'id', 'name', run_as => 'd_reader', schedule => '0 0 29 2 *');
RESET ROLE;
SELECT qobra_sync.sync_now('d_broken') IS NOT NULL AS ran;
REVOKE SELECT ON d_deals FROM d_reader;
SELECT qobra_sync.sync_now('d_deals') IS NOT NULL AS ran;
SELECT source, status, error FROM qobra_sync.runs
 WHERE source IN ('d_broken'::regclass, 'd_deals'::regclass) AND status = 'failed' AND error NOT LIKE '%could not connect%'
 ORDER BY run_id;
-- Unregistering: refused to others, allowed to a member of the owner.
SET ROLE d_other;
SELECT try($$SELECT qobra_sync.unregister_table('d_deals')$$);
SET ROLE d_member;
SELECT try($$SELECT qobra_sync.unregister_table('d_deals')$$);
-- Leave nothing behind.
RESET ROLE;
SELECT count(qobra_sync.unregister_table(source)) FROM qobra_sync.tables;
DROP VIEW d_broken;
DROP TABLE d_deals, salaries;
DROP FUNCTION calls(), seen();
DROP ROLE d_owner, d_member, d_other, d_hr_admin, d_reader, d_hr_reader;
DELETE FROM qobra_sync.destination;
RESET qobra_sync.max_retries;
RESET client_min_messages;
