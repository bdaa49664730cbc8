-- Reading never writes: validate(), preview() and csv_template() leave the source's row
-- counters untouched and fire no trigger; row-level security applies to the reader.
CREATE TABLE trap (event text, at timestamptz DEFAULT now());
CREATE TABLE watched (id int PRIMARY KEY, name text, owner text, region text);
INSERT INTO watched VALUES (1, 'a', 'ana@acme.com', 'EMEA'), (2, 'b', 'bob@acme.com', 'NA'), (3, 'c', 'carl@acme.com', 'EMEA');
CREATE FUNCTION trap_row() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN INSERT INTO public.trap (event) VALUES (TG_OP || ' ' || TG_TABLE_NAME); RETURN NULL; END $$;
CREATE TRIGGER trap_rows AFTER INSERT OR UPDATE OR DELETE ON watched FOR EACH ROW EXECUTE FUNCTION trap_row();
CREATE TRIGGER trap_truncate AFTER TRUNCATE ON watched FOR EACH STATEMENT EXECUTE FUNCTION trap_row();
GRANT SELECT ON watched TO qobra_reader;
CREATE VIEW watched_counters AS
SELECT n_tup_ins, n_tup_upd, n_tup_del, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'watched';
SELECT pg_stat_force_next_flush();
SELECT pg_sleep(0.1);
SELECT pg_stat_clear_snapshot();
CREATE TABLE before AS SELECT * FROM watched_counters;
SELECT * FROM before;  -- the 3 inserts above are counted: the counters are live
SELECT qobra_sync.register_table('watched', 'watched', 'id', 'name', user_columns => '{owner}',
       filter => $$region = 'EMEA'$$, run_as => 'qobra_reader');
SELECT count(*) AS checks FROM qobra_sync.validate('watched');
SELECT count(*) AS records FROM qobra_sync.preview('watched');
SELECT length(qobra_sync.csv_template('watched')) > 0 AS csv;
SELECT pg_stat_force_next_flush();
SELECT pg_sleep(0.1);
SELECT pg_stat_clear_snapshot();
SELECT (SELECT row(b.*) FROM before b) = (SELECT row(w.*) FROM watched_counters w) AS counters_unchanged,
       (SELECT count(*) FROM trap) AS trap_rows;
-- Row-level security of the source applies to the reader.
ALTER TABLE watched ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_na ON watched FOR SELECT TO qobra_reader USING (region = 'NA');
SELECT qobra_sync.alter_table('watched', filter => '');
SELECT p->>'id' AS visible_to_reader FROM qobra_sync.preview('watched') AS p;
SELECT check_name, detail FROM qobra_sync.validate('watched') WHERE check_name IN ('id not null', 'rows');
-- A reader without SELECT is reported by validate() and refused by alter_table().
REVOKE SELECT ON watched FROM qobra_reader;
SELECT check_name, ok, detail FROM qobra_sync.validate('watched') WHERE check_name = 'reader can read';
SELECT qobra_sync.alter_table('watched', schedule => '1 hour');
SELECT count(qobra_sync.unregister_table(source)) FROM qobra_sync.tables;
