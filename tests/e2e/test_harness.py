"""The harness itself: cluster, extension, reader, fake Qobra and the Python oracle agree,
without a push by the extension."""

from helpers import assert_same_records, comparable, expected_records


def create_deals(db):
    """A small deals table with a user column and a renamed field."""
    db.rows("""CREATE TABLE deals (id int PRIMARY KEY, title text, amount numeric(12,2),
                                  close_date date, won boolean, owner text)""")
    db.rows("""INSERT INTO deals VALUES
               (1, 'Acme renewal', 1200.50, '2026-03-31', true, 'ana@acme.com'),
               (2, 'Globex "upsell"', -3.00, NULL, false, NULL),
               (3, 'Initech, phase 2', 0, '1969-07-20', NULL, 'bob@initech.io')""")
    return db.register("deals", name_column="title", user_columns=["owner"],
                       field_keys={"amount": "deal_amount"})


def test_preview_csv_template_and_direct_push_round_trip(db, fake):
    """preview() matches the Python oracle; the fake table made from csv_template() holds the
    template's rows; records posted to the fake with the API key are read back unchanged."""
    key = create_deals(db)
    preview = db.preview("deals")
    assert set(preview["1"]) == {"id", "title", "deal_amount", "close_date", "won", "owner"}
    assert_same_records(comparable(db, "deals", preview), expected_records(db, "deals"))

    definition = db.define_in_fake(fake, "deals", max_rows=100)
    assert definition["fields"]["deal_amount"] == "number"
    assert definition["fields"]["owner"] == "user"
    assert definition["record_count"] == 3
    assert fake.records(key)["1"]["deal_amount"] == preview["1"]["deal_amount"]

    assert fake.bulk(key, [preview["1"]], all=True, api_key="wrong")[0] == 401
    status, answer = fake.bulk(key, list(preview.values()), all=True, debounce=0)
    assert status == 200 and answer["import_id"]
    fake.flush()
    assert fake.records(key) == preview

    posts = fake.bulk_requests(key)
    assert [(p["status"], p["api_key_valid"], p["records"]) for p in posts] == [(401, False, None), (200, True, 3)]


def test_fake_reports_parsing_errors_per_field_type(db, fake):
    """The fake refuses a value its field type cannot take, with Qobra's wording."""
    key = create_deals(db)
    fake.define_table(key, name_field="title", fields={"deal_amount": "amount", "won": "bool"})
    status, answer = fake.bulk(key, [{"id": "1", "deal_amount": "AAAAA"}, {"id": "2", "won": True}])
    assert status == 200
    imports = fake.flush()
    details = next(i for i in imports if i["id"] == answer["import_id"])["data_tables_details"][0]
    assert details["number_of_records"] == 1
    assert details["error"]["parsing_error_details"][0]["details"] == \
        "Can't parse 'AAAAA' as float for user attribute deal_amount"
