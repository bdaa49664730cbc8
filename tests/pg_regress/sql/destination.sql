-- set_destination(): superuser only, https (or http to loopback), the key never shown.
SELECT * FROM qobra_sync.destination_status;
SELECT qobra_sync.set_destination('qk_live_SECRET_123');
SELECT base_url, api_key_set FROM qobra_sync.destination_status;
SELECT qobra_sync.set_destination('qk_live_SECRET_123', 'http://127.0.0.1:8080/');
SELECT base_url, api_key_set FROM qobra_sync.destination_status;
SELECT qobra_sync.set_destination('qk_live_SECRET_123', 'http://api.qobra.co');
SELECT qobra_sync.set_destination('qk_live_SECRET_123', 'http://localhost.evil.example');
SELECT qobra_sync.set_destination('qk_live_SECRET_123', 'https://user:pw@api.qobra.co');
SELECT qobra_sync.set_destination('qk_live_SECRET_123', 'ftp://api.qobra.co');
SELECT qobra_sync.set_destination('has spaces');
SELECT qobra_sync.set_destination('');
SELECT qobra_sync.set_destination(NULL);
-- Without a stored key and without qobra_sync.api_key_file, NULL is refused.
DELETE FROM qobra_sync.destination_key;
SELECT qobra_sync.set_destination(NULL);
SELECT qobra_sync.set_destination('qk_live_SECRET_123');
-- NULL keeps what is stored: the key, the base URL, the body format.
SELECT qobra_sync.set_destination(body_format => 'array');
SELECT base_url, api_key_set, body_format FROM qobra_sync.destination_status;
SELECT qobra_sync.set_destination(body_format => 'data');
-- The destination's home is this database: its system identifier and OID.
SELECT home = (SELECT s.system_identifier || '/' || d.oid FROM pg_control_system() s, pg_database d
                WHERE d.datname = current_database()) AS home_is_here
  FROM qobra_sync.destination;
-- No view shows the key, and PUBLIC can reach nothing.
SELECT count(*) AS views_showing_the_key FROM pg_views
 WHERE schemaname = 'qobra_sync' AND definition LIKE '%api_key%' AND definition NOT LIKE '%api_key_set%';
SELECT grantee, count(*) FROM information_schema.role_table_grants
 WHERE table_schema = 'qobra_sync' AND grantee = 'PUBLIC' GROUP BY grantee;
SELECT count(*) AS public_functions FROM pg_proc p
 WHERE p.pronamespace = 'qobra_sync'::regnamespace AND has_function_privilege('qobra_admin', p.oid, 'EXECUTE');
SELECT count(*) AS functions_without_pinned_search_path FROM pg_proc p
 WHERE p.pronamespace = 'qobra_sync'::regnamespace AND NOT coalesce(p.proconfig::text LIKE '%search_path=pg_catalog, pg_temp%', false);
-- A non-superuser, even one allowed to call the function, is refused.
GRANT USAGE ON SCHEMA qobra_sync TO qobra_admin;
GRANT EXECUTE ON FUNCTION qobra_sync.set_destination(text, text) TO qobra_admin;
SET ROLE qobra_admin;
SELECT qobra_sync.set_destination('qk_live_OTHER');
SELECT * FROM qobra_sync.destination;
SELECT * FROM qobra_sync.destination_key;
RESET ROLE;
-- The key is kept apart from the destination, which pg_dump dumps; the key table is not dumped.
SELECT count(*) AS keys_stored FROM qobra_sync.destination_key;
SELECT c.relname, e.cond FROM pg_extension x, unnest(x.extconfig, x.extcondition) AS e(cfg, cond)
  JOIN pg_class c ON c.oid = e.cfg WHERE x.extname = 'qobra_sync' ORDER BY 1;
SELECT base_url FROM qobra_sync.destination_status;
-- Every function and view carries its reference text for \df+ and \d+.
SELECT count(*) AS undocumented_functions FROM pg_proc p
 WHERE p.pronamespace = 'qobra_sync'::regnamespace AND obj_description(p.oid, 'pg_proc') IS NULL;
SELECT count(*) AS undocumented_relations FROM pg_class c
 WHERE c.relnamespace = 'qobra_sync'::regnamespace AND c.relkind IN ('r', 'v') AND obj_description(c.oid, 'pg_class') IS NULL;
