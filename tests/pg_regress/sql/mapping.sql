-- column_mapping(): every type of the mapping table, domains, user columns, overrides, exclusions.
SELECT * FROM qobra_sync.column_mapping('deals');
-- User columns map to user; an integer column holds ids, not emails (user_key => 'id').
SELECT column_name, qobra_type, note FROM qobra_sync.column_mapping('deals', user_columns => '{owner_email}')
 WHERE column_name = 'owner_email';
SELECT column_name, qobra_type, note FROM qobra_sync.column_mapping('deals', user_columns => '{seats}');
-- Overrides inside the allowed set apply.
SELECT column_name, qobra_type, note FROM qobra_sync.column_mapping('deals',
       column_types => '{"stage": "picklist", "amount": "amount", "discount": "percentage", "region": "multipicklist"}')
 WHERE note IS NOT NULL AND synced;
-- An override outside the allowed set names the allowed types.
SELECT * FROM qobra_sync.column_mapping('deals', column_types => '{"close_date": "number"}');
SELECT * FROM qobra_sync.column_mapping('deals', column_types => '{"fee": "number"}');
SELECT * FROM qobra_sync.column_mapping('deals', column_types => '{"won": "string"}');
-- Unknown Qobra type, unknown column, malformed JSON arguments.
SELECT * FROM qobra_sync.column_mapping('deals', column_types => '{"amount": "currency"}');
SELECT * FROM qobra_sync.column_mapping('deals', column_types => '{"nope": "number"}');
SELECT * FROM qobra_sync.column_mapping('deals', column_types => '["amount"]');
SELECT * FROM qobra_sync.column_mapping('deals', column_types => '{"amount": 1}');
-- A user column that cannot hold users.
SELECT * FROM qobra_sync.column_mapping('deals', user_columns => '{amount}');
SELECT * FROM qobra_sync.column_mapping('deals', user_columns => '{ref}');
-- Other sources.
SELECT * FROM qobra_sync.column_mapping('sales');
SELECT * FROM qobra_sync.column_mapping('won_deals');
SELECT * FROM qobra_sync.column_mapping('deal_totals');
-- Relations that cannot be sources.
SELECT * FROM qobra_sync.column_mapping('deal_seq');
SELECT * FROM qobra_sync.column_mapping('deals_stage');
SELECT * FROM qobra_sync.column_mapping('money_pair');
SELECT * FROM qobra_sync.column_mapping('no_such_table');
SELECT * FROM qobra_sync.column_mapping(NULL);
