-- Every error class carries its own SQLSTATE.
SELECT try(s) FROM (VALUES
  ($$SELECT qobra_sync.column_mapping('deals', column_types => '{"close_date": "number"}')$$),
  ($$SELECT qobra_sync.column_mapping('deals', column_types => '{"amount": "currency"}')$$),
  ($$SELECT qobra_sync.column_mapping('deals', column_types => '{"nope": "number"}')$$),
  ($$SELECT qobra_sync.column_mapping('deals', column_types => '[]')$$),
  ($$SELECT qobra_sync.column_mapping('deal_seq')$$),
  ($$SELECT qobra_sync.column_mapping(NULL)$$),
  ($$SELECT qobra_sync.register_table('deals', 'deals', 'id', 'title')$$),
  ($$SELECT qobra_sync.register_table('deals', 'deals', 'id', 'title', run_as => 'nobody_here')$$),
  ($$SELECT qobra_sync.register_table('deals', 'deals', 'id', 'title', field_keys => '{"stage": "title"}', run_as => 'qobra_reader')$$),
  ($$SELECT qobra_sync.register_table('deals', 'deals', 'id', 'title', filter => 'true; select 1', run_as => 'qobra_reader')$$),
  ($$SELECT qobra_sync.register_table('deals', 'deals', 'id', 'title', filter => 'amount >', run_as => 'qobra_reader')$$),
  ($$SELECT qobra_sync.register_table('deals', 'deals', 'id', 'title', schedule => 'soon', run_as => 'qobra_reader')$$),
  ($$SELECT qobra_sync.alter_table('deals', schedule => '1 hour')$$),
  ($$SELECT qobra_sync.set_destination('k', 'http://example.com')$$)
) AS t(s);
-- reader_from_service_account(): the Cloud SQL IAM user of a service account.
SELECT qobra_sync.reader_from_service_account('{"type": "service_account", "project_id": "acme-prod",
  "private_key": "-----BEGIN PRIVATE KEY-----\nSECRET\n-----END PRIVATE KEY-----\n",
  "client_email": "qobra-reader@acme-prod.iam.gserviceaccount.com"}');
-- Each invalid one is refused with its reason (called directly: a secret is taken only from a
-- statement that calls the function itself).
SELECT qobra_sync.reader_from_service_account('{"type": "authorized_user", "project_id": "p", "client_email": "a@p.iam.gserviceaccount.com", "private_key": "SECRET"}');
SELECT qobra_sync.reader_from_service_account('{"type": "service_account", "project_id": "p", "private_key": "SECRET"}');
SELECT qobra_sync.reader_from_service_account('{"type": "service_account", "project_id": "p", "client_email": "ana@acme.com", "private_key": "SECRET"}');
SELECT qobra_sync.reader_from_service_account('{"type": "service_account", "client_email": "a@p.iam.gserviceaccount.com"}');
SELECT qobra_sync.reader_from_service_account('[]');
-- From dynamic SQL (or a DO block, or a function), where the secret would stay in text no filter
-- reaches: refused, whatever the JSON.
SELECT try(format('SELECT qobra_sync.reader_from_service_account(%L)', '{"type": "service_account", "project_id": "p", "client_email": "a@p.iam.gserviceaccount.com", "private_key": "SECRET"}'));
