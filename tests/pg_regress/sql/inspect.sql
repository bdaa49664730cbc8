-- validate(), preview() and csv_template(), before and after registering.
SELECT * FROM qobra_sync.validate('deals', 'id', 'title', user_columns => '{owner_email}', run_as => 'qobra_reader');
-- Table-level violations: NULL and duplicate ids, missing columns, bad filter, unfit reader.
SELECT * FROM qobra_sync.validate('sales', 'id', 'name', run_as => 'qobra_reader');
SELECT check_name, ok, detail FROM qobra_sync.validate('sales', 'nope', 'nope2', run_as => 'qobra_super') WHERE NOT ok;
SELECT check_name, ok, detail FROM qobra_sync.validate('deals', 'id', 'title', filter => 'pg_sleep(1) IS NULL', run_as => 'qobra_admin') WHERE NOT ok;
-- user_key 'id': any non-empty value.
SELECT check_name, ok, detail FROM qobra_sync.validate('deals', 'id', 'title', user_columns => '{owner_email}', user_key => 'id', run_as => 'qobra_reader')
 WHERE check_name IN ('user values valid', 'rows');
-- preview(): the exact records, with every encoding of the mapping table.
SELECT qobra_sync.register_table('deals', 'deals', 'id', 'title', user_columns => '{owner_email}',
       field_keys => '{"title": "name", "owner_email": "owner"}', exclude_columns => '{ref,payload}', run_as => 'qobra_reader');
SELECT * FROM qobra_sync.preview('deals');
SELECT * FROM qobra_sync.preview('deals', max_rows => 1);
SELECT qobra_sync.csv_template('deals');
-- A filter limits the rows.
SELECT qobra_sync.alter_table('deals', filter => $$stage = 'Closed Won'$$);
SELECT p->>'id' AS id FROM qobra_sync.preview('deals') AS p;
SELECT * FROM qobra_sync.validate('deals');
-- Other kinds of sources, before registering: read as the run_as given.
SELECT * FROM qobra_sync.preview('won_deals', 2, run_as => 'qobra_reader');
SELECT qobra_sync.csv_template('deal_totals', run_as => 'qobra_reader');
-- Nothing is ever read as a role register_table would refuse as run_as: not as the calling
-- superuser (the source is not registered and no run_as is given), not as another one.
SELECT * FROM qobra_sync.preview('won_deals', 2);
SELECT qobra_sync.csv_template('deal_totals');
SELECT * FROM qobra_sync.preview('won_deals', run_as => 'qobra_super');
SELECT qobra_sync.csv_template('deal_totals', run_as => 'qobra_file_reader');
SELECT check_name, ok, detail FROM qobra_sync.validate('won_deals', 'id', 'title', filter => 'id > 0', run_as => 'qobra_file_reader')
 WHERE check_name IN ('filter accepted', 'reader least-privileged', 'rows');
-- Leave no registration behind for the next file.
SELECT count(qobra_sync.unregister_table(source)) FROM qobra_sync.tables;
