-- Secrets passed to set_destination() and reader_from_service_account() never reach the server
-- log, whatever error the statement hits: the test command greps the log for SECRET afterwards,
-- and checks that the log filter was at work. Messages PostgreSQL quotes the statement's words
-- in come back redacted to the caller too.
-- Errors raised before the function body runs: no privilege on the schema, a wrong type.
CREATE ROLE qobra_nobody NOLOGIN;
SET ROLE qobra_nobody;
SELECT qobra_sync.set_destination('qk_live_SECRET_nobody');
RESET ROLE;
SELECT qobra_sync.set_destination('qk_live_SECRET_typed'::int);
SELECT qobra_sync.set_destination(qk_live_SECRET_bare);
SELECT qobra_sync.set_destination('qk_live_SECRET_syntax' 'x');
-- An error elsewhere in the statement, after the function ran.
SELECT qobra_sync.set_destination('qk_live_SECRET_then_error', 'http://127.0.0.1:9'), 1 / 0;
-- A private key in service-account JSON that does not parse (PostgreSQL's CONTEXT line quotes
-- the JSON up to the error).
SELECT qobra_sync.reader_from_service_account('{"type": "service_account", "private_key": "-----BEGIN SECRET
KEY-----"}');
SELECT qobra_sync.reader_from_service_account('{"type": "service_account", "project_id": "p", "private_key": "SECRET_k"}'::jsonb, 1);
-- Every statement logged (log_statement, log_min_duration_statement): not these.
SET log_statement = 'all';
SET log_min_duration_statement = 0;
SELECT qobra_sync.set_destination('qk_live_SECRET_logged', 'http://127.0.0.1:9');
SELECT qobra_sync.reader_from_service_account('{"type": "service_account", "project_id": "p",
       "client_email": "ana@p.iam.gserviceaccount.com", "private_key": "SECRET_logged"}');
RESET log_statement;
RESET log_min_duration_statement;
-- Other statements are logged as usual (the filter only hides what holds a secret).
SELECT 1 / 0 AS logged_as_usual;
DELETE FROM qobra_sync.destination;
DROP ROLE qobra_nobody;
