-- CREATE EXTENSION is refused outside qobra_sync.database_name when preloaded, saying what to set.
SELECT current_setting('qobra_sync.database_name') AS worker_database;
CREATE DATABASE qobra_sync_elsewhere;
\c qobra_sync_elsewhere
-- From 18 on, an error raised by an extension script says where (CONTEXT): not ours to show.
\set SHOW_CONTEXT never
CREATE EXTENSION qobra_sync;
\set SHOW_CONTEXT errors
SELECT count(*) AS installed FROM pg_extension WHERE extname = 'qobra_sync';
\c qobra_sync_regress
DROP DATABASE qobra_sync_elsewhere;
-- The worker runs in the configured database (it started before the database existed, so give
-- it the second it takes to come back).
DO $$
BEGIN
    FOR i IN 1..100 LOOP
        PERFORM pg_stat_clear_snapshot();
        EXIT WHEN EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'qobra_sync worker');
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
SELECT backend_type, datname FROM pg_stat_activity WHERE backend_type = 'qobra_sync worker';
