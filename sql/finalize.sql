-- Last step of CREATE EXTENSION: nothing is reachable by PUBLIC, and the installation is checked
-- (right database, preloaded or not).
REVOKE ALL ON ALL TABLES IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON SCHEMA @extschema@ FROM PUBLIC;
SELECT @extschema@._check_installation();
