-- register_table(), the tables view, alter_table(), pause(), resume(), unregister_table().
SELECT qobra_sync.register_table('deals', 'deals', 'id', 'title',
       user_columns => '{owner_email}',
       column_types => '{"stage": "picklist", "amount": "amount"}',
       field_keys => '{"title": "name", "owner_email": "owner"}',
       exclude_columns => '{ref,payload}',
       filter => $$stage = 'Closed Won' OR close_date >= date '2026-01-01'$$,
       schedule => '15 minutes',
       run_as => 'qobra_reader');
SELECT source, data_table_key, id_column, name_column, user_columns, user_key, column_types, field_keys,
       exclude_columns, filter, schedule, run_as, paused, next_run_at IS NOT NULL AS scheduled
  FROM qobra_sync.tables;
-- column_mapping() now reflects the registration.
SELECT column_name, qobra_type, field_key, synced, note FROM qobra_sync.column_mapping('deals');
-- Every kind of source can be registered.
SELECT qobra_sync.register_table('sales', 'sales', 'id', 'name', run_as => 'qobra_reader');
SELECT qobra_sync.register_table('won_deals', 'won', 'id', 'title', run_as => 'qobra_reader', schedule => '@daily');
SELECT qobra_sync.register_table('deal_totals', 'totals', 'stage', 'stage', run_as => 'qobra_reader', schedule => '0 8 * * 1-5');
SELECT source, data_table_key, schedule FROM qobra_sync.tables ORDER BY data_table_key;
-- Registering twice, or to a data table another source feeds.
SELECT qobra_sync.register_table('deals', 'deals2', 'id', 'title', run_as => 'qobra_reader');
CREATE TABLE deals_copy AS SELECT * FROM deals;
GRANT SELECT ON deals_copy TO qobra_reader;
SELECT qobra_sync.register_table('deals_copy', 'deals', 'id', 'title', run_as => 'qobra_reader');
-- alter_table(): NULL keeps, values replace, '' removes the filter; every change is re-checked.
SELECT qobra_sync.alter_table('deals', schedule => '30 seconds', filter => '');
SELECT filter, schedule, field_keys FROM qobra_sync.tables WHERE source = 'deals'::regclass;
SELECT qobra_sync.alter_table('deals', column_types => '{"close_date": "number"}');
SELECT qobra_sync.alter_table('deals', schedule => 'sometimes');
SELECT qobra_sync.alter_table('deals_copy', schedule => '1 hour');
-- pause() / resume().
SELECT qobra_sync.pause('deals');
SELECT paused FROM qobra_sync.tables WHERE source = 'deals'::regclass;
SELECT qobra_sync.resume('deals');
SELECT paused, next_run_at > now() AS next_run_in_future FROM qobra_sync.tables WHERE source = 'deals'::regclass;
SELECT qobra_sync.pause('deals_copy');
-- unregister_table().
SELECT qobra_sync.unregister_table('deal_totals');
SELECT qobra_sync.unregister_table('deal_totals');
SELECT count(*) FROM qobra_sync.tables;
-- Bad arguments, each with its own clear error.
SELECT qobra_sync.register_table('deals_copy', 'copy', 'nope', 'title', run_as => 'qobra_reader');
SELECT qobra_sync.register_table('deals_copy', 'copy', 'ref', 'title', run_as => 'qobra_reader');
SELECT qobra_sync.register_table('deals_copy', 'copy', 'close_date', 'title', run_as => 'qobra_reader');
SELECT qobra_sync.register_table('deals_copy', 'copy', 'id', 'payload', run_as => 'qobra_reader');
SELECT qobra_sync.register_table('deals_copy', 'copy', 'id', 'title', user_key => 'login', run_as => 'qobra_reader');
SELECT qobra_sync.register_table('deals_copy', 'copy', 'id', 'title', user_columns => '{seats}', run_as => 'qobra_reader');
SELECT qobra_sync.register_table('deals_copy', 'copy', 'id', 'title', field_keys => '{"stage": "title"}', run_as => 'qobra_reader');
SELECT qobra_sync.register_table('deals_copy', 'copy', 'id', 'title', field_keys => '{"stage": ["a"]}', run_as => 'qobra_reader');
SELECT qobra_sync.register_table('deals_copy', 'copy', 'id', 'title', field_keys => '"stage"', run_as => 'qobra_reader');
SELECT qobra_sync.register_table('deals_copy', 'copy', 'id', 'title', exclude_columns => '{id}', run_as => 'qobra_reader');
SELECT qobra_sync.register_table('deals_copy', 'copy/../x', 'id', 'title', run_as => 'qobra_reader');
SELECT qobra_sync.register_table('deals_copy', 'copy', 'id', 'title', schedule => '61 * * * *', run_as => 'qobra_reader');
SELECT qobra_sync.register_table('deals_copy', 'copy', 'id', 'title', schedule => '0 seconds', run_as => 'qobra_reader');
SELECT qobra_sync.register_table('deals_copy', 'copy', 'id', 'title', run_as => 'nobody_here');
SELECT qobra_sync.register_table(NULL, 'copy', 'id', 'title', run_as => 'qobra_reader');
SELECT qobra_sync.register_table('deals_copy', NULL, 'id', 'title', run_as => 'qobra_reader');
SELECT qobra_sync.register_table('deals_copy', 'copy', NULL, 'title', run_as => 'qobra_reader');
SELECT qobra_sync.register_table('deals_copy', 'copy', 'id', NULL, run_as => 'qobra_reader');
SELECT qobra_sync.register_table('deal_seq', 'seq', 'last_value', 'last_value', run_as => 'qobra_reader');
SELECT qobra_sync.register_table('deals_stage', 'idx', 'stage', 'stage', run_as => 'qobra_reader');
-- Readers that must be refused: the superuser calling without run_as, a superuser, a member of
-- pg_read_server_files, and a role that cannot read the source.
SELECT qobra_sync.register_table('deals_copy', 'copy', 'id', 'title');
SELECT qobra_sync.register_table('deals_copy', 'copy', 'id', 'title', run_as => 'qobra_super');
GRANT SELECT ON deals_copy TO qobra_file_reader;
SELECT qobra_sync.register_table('deals_copy', 'copy', 'id', 'title', run_as => 'qobra_file_reader');
SELECT qobra_sync.register_table('deals_copy', 'copy', 'id', 'title', run_as => 'qobra_admin');
-- A dropped or renamed source is noticed, never confused with another relation.
SELECT qobra_sync.register_table('deals_copy', 'copy', 'id', 'title', run_as => 'qobra_reader');
ALTER TABLE deals_copy RENAME TO deals_renamed;
SELECT count(*) FROM qobra_sync.preview('deals_renamed');
SELECT qobra_sync.alter_table('deals_renamed');
SELECT count(*) FROM qobra_sync.preview('deals_renamed');
DROP TABLE deals_renamed;
SELECT source::oid > 0 AS kept_by_oid FROM qobra_sync.tables WHERE data_table_key = 'copy';
SELECT try($$SELECT qobra_sync.preview(source) FROM qobra_sync.tables WHERE data_table_key = 'copy'$$);
-- Once the relation is gone, the registration is named by the data table it feeds.
SELECT qobra_sync.unregister_table(data_table_key => 'copy');
SELECT qobra_sync.unregister_table(data_table_key => 'copy');
SELECT qobra_sync.unregister_table('deals', 'deals');
SELECT qobra_sync.unregister_table();
-- Leave no registration behind for the next file.
SELECT count(qobra_sync.unregister_table(source)) FROM qobra_sync.tables;
