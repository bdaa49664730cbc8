"""The README's examples, run as written: every fenced SQL block (and the shell commands of the
Quick start) is taken from README.md at test time and run through psql, as a DBA pasting it
would, against a preloaded cluster and a fake Qobra. The only changes made to a block are the
placeholders a reader fills in (the API key, the key file's path, a password, a host and port),
each of which must be found where the test expects it; between blocks the test adds only what
the README tells its reader to do in prose (create the extension, create the data table in
Qobra) and checks what each step promises. The last test fails if a block was never run, so a
new example cannot be added without being run here."""

import os
import re
import subprocess
import textwrap

import pytest

from conftest import preloaded_cluster
from helpers import ROOT, WORK, Db, FakeQobra, assert_same_records, comparable, expected_records
from worker_helpers import reload_config

README = (ROOT / "README.md").read_text()
KEY_FILE = WORK / "readme" / "qobra.key"
REMOTE_PASSWORD = "ro-password-for-the-readme"

# Every fenced block of the README: (language, text without its list indentation).
BLOCKS = [(m.group(2), textwrap.dedent(m.group(3)))
          for m in re.finditer(r"^( *)```(\w*)\n(.*?)^\1```", README, re.M | re.S)]
SQL_BLOCKS = [text for lang, text in BLOCKS if lang == "sql"]
# Inline statements of the reference (`SELECT * FROM qobra_sync.status`…), with no placeholder.
INLINE = sorted({s for s in re.findall(r"`(SELECT [^`]*qobra_sync\.[^`]*)`", README)
                 if "…" not in s and "<" not in s})


class Guide:
    """Runs the README's blocks against the cluster, remembering which ones ran."""

    def __init__(self, cluster, fake):
        self.cluster, self.fake = cluster, fake
        self.ran = set()

    def block(self, lang, marker):
        """The one block of language `lang` that contains `marker`."""
        found = [text for kind, text in BLOCKS if kind == lang and marker in text]
        assert len(found) == 1, f"{len(found)} {lang} blocks of the README contain {marker!r}"
        return found[0]

    def fill(self, text, placeholders):
        """The block with its placeholders filled in; each must be in it."""
        for placeholder, value in placeholders.items():
            assert placeholder in text, f"the README's block no longer holds {placeholder!r}:\n{text}"
            text = text.replace(placeholder, value)
        return text

    def env(self, dbname):
        """libpq's environment for psql on `dbname` of the cluster, as the superuser."""
        return {**os.environ, "PGHOST": str(self.cluster.dir), "PGPORT": str(self.cluster.port),
                "PGUSER": "postgres", "PGDATABASE": dbname}

    def sql(self, marker, dbname, **placeholders):
        """Runs the SQL block holding `marker` in `dbname` with psql (stopping at the first
        error, as `-v ON_ERROR_STOP=1` does); returns what psql printed."""
        text = self.block("sql", marker)
        self.ran.add(text)
        return self.psql(self.fill(text, placeholders), dbname)

    def psql(self, text, dbname):
        """Runs SQL text with psql; fails the test with psql's output on an error."""
        proc = subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-f", "-"], input=text, text=True,
                              capture_output=True, env=self.env(dbname), timeout=120)
        assert proc.returncode == 0, f"psql failed on:\n{text}\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def sh(self, marker, dbname, cwd, **placeholders):
        """Runs the shell block holding `marker` with bash, in `cwd`."""
        text = self.fill(self.block("sh", marker), placeholders)
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", text], text=True, capture_output=True,
                              env=self.env(dbname), cwd=cwd, timeout=120)
        assert proc.returncode == 0, f"bash failed on:\n{text}\n{proc.stdout}\n{proc.stderr}"


@pytest.fixture(scope="module")
def guide():
    """A preloaded cluster with databases `sales` and `teaser` for qobra_sync and `crm` for the
    foreign-table example, and a fake Qobra; stopped at the end."""
    cluster = fake = None
    try:
        cluster = preloaded_cluster("e2e-readme-cluster", "qobra_sync.database_name = 'sales, teaser'")
        fake = FakeQobra(WORK, "fake-qobra-readme")
        with cluster.connect("postgres") as conn:
            for name in ("sales", "teaser", "crm"):
                conn.execute(f"CREATE DATABASE {name}")
        for name in ("sales", "teaser"):
            with cluster.connect(name) as conn:
                create_deals(conn)
        yield Guide(cluster, fake)
    finally:
        if fake:
            fake.stop()
        if cluster:
            cluster.stop()


def create_deals(conn):
    """The `public.deals` table the README's examples register: 40 deals in four stages."""
    conn.execute("""CREATE TABLE public.deals (id int PRIMARY KEY, title text NOT NULL, owner_email text,
                                               stage text NOT NULL, amount numeric(12,2), close_date date)""")
    conn.execute("""INSERT INTO public.deals
                    SELECT i, 'Deal ' || i, 'rep' || i % 5 || '@example.com',
                           (ARRAY['Closed Won', 'Negotiation', 'Proposal', 'Closed Lost'])[1 + i % 4],
                           i * 1000.5, DATE '2026-01-01' + i
                      FROM generate_series(1, 40) i""")


def test_the_quick_start_from_the_reader_to_the_first_push(guide, tmp_path):
    """Steps 1 to 6 of the Quick start, in database `sales`: the push succeeds and Qobra holds
    exactly the rows the registration's filter selects."""
    cluster, fake = guide.cluster, guide.fake
    # "Then, in that database, as a superuser: CREATE EXTENSION qobra_sync;" (Install on a server)
    guide.psql("CREATE EXTENSION qobra_sync;", "sales")
    guide.sql("CREATE ROLE qobra_reader NOLOGIN", "sales")
    KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
    KEY_FILE.unlink(missing_ok=True)
    guide.sh("install -m 600 -o postgres", "sales", tmp_path,
             **{"/etc/postgresql/qobra.key": str(KEY_FILE), "'qk_live_…'": f"'{fake.api_key}'"})
    assert (KEY_FILE.stat().st_mode & 0o777, KEY_FILE.read_text().strip()) == (0o600, fake.api_key)
    guide.sql("qobra_sync.api_key_file", "sales", **{"/etc/postgresql/qobra.key": str(KEY_FILE)})
    # The README's destination is Qobra's own API; here it is the fake's.
    guide.psql(f"SELECT qobra_sync.set_destination(api_key => NULL, base_url => '{fake.base_url}');", "sales")
    checked = guide.sql("qobra_sync.check_destination()", "sales")
    assert "the key is accepted" in checked and " f " not in checked, checked
    mapping = guide.sql("qobra_sync.column_mapping('public.deals'", "sales")
    assert "owner_email" in mapping and "user" in mapping
    guide.sh("qobra_sync.csv_template", "sales", tmp_path)
    csv_text = (tmp_path / "deals.csv").read_text()
    assert csv_text.splitlines()[0] == "id,title,owner_email,stage,amount,close_date", csv_text
    # "choose each field's type in Qobra's import screen as column_mapping() says"
    with cluster.connect("sales") as conn:
        types = dict(conn.execute("""SELECT field_key, qobra_type FROM qobra_sync.column_mapping(
                                       'public.deals', user_columns => '{owner_email}')
                                      WHERE synced AND field_key NOT IN ('id', 'title')""").fetchall())
    fake.define_table_from_csv("deals", csv_text, types)
    guide.sql("filter       => $$stage IN ('Closed Won', 'Negotiation')$$", "sales")
    guide.sql("qobra_sync.preview('public.deals', 5)", "sales")
    with cluster.connect("sales") as conn:
        db = Db(conn, "public")
        checks = db.rows("SELECT * FROM qobra_sync.validate('public.deals')")
        assert all(c["ok"] for c in checks), checks
        assert len(db.rows("SELECT * FROM qobra_sync.preview('public.deals', 5)")) == 5
    out = guide.sql("SELECT qobra_sync.sync_now('public.deals');", "sales")
    assert "succeeded" in out, out
    fake.flush()
    with cluster.connect("sales") as conn:
        db = Db(conn, "public")
        run = db.one("SELECT status, rows_sent FROM qobra_sync.runs ORDER BY run_id DESC LIMIT 1")
        assert run == {"status": "succeeded", "rows_sent": 20}, run
        expected = expected_records(db, "deals", "stage IN ('Closed Won', 'Negotiation')")
        assert_same_records(comparable(db, "deals", fake.records("deals")), expected)


def test_the_reference_statements_run(guide):
    """The statements the SQL reference shows inline (`SELECT * FROM qobra_sync.status`…) run
    as written on the Quick start's registration."""
    assert INLINE, "the README shows no inline statement"
    for statement in INLINE:
        guide.psql(statement.rstrip(";") + ";", "sales")


def test_the_opening_example(guide):
    """The README's first lines, in database `teaser`, where the reader role exists and may
    read the table: the key set, the table registered, validated and previewed."""
    with guide.cluster.connect("teaser") as conn:
        conn.execute("GRANT USAGE ON SCHEMA public TO qobra_reader; GRANT SELECT ON public.deals TO qobra_reader")
    out = guide.sql("CREATE EXTENSION qobra_sync;", "teaser", **{"'qk_live_…'": f"'{guide.fake.api_key}'"})
    assert "id not null" in out and '"title": "Deal 1"' in out, out
    with guide.cluster.connect("teaser") as conn:
        assert conn.execute("SELECT count(*) FROM qobra_sync.tables").fetchone() == (1,)


def test_foreign_tables_as_written(guide, tmp_path):
    """The foreign-table example, in `sales`, reading `crm.users` from database `crm` through
    postgres_fdw as a remote role that logs in with a password: registered, validated and
    pushed."""
    cluster, fake = guide.cluster, guide.fake
    with cluster.connect("crm") as conn:
        conn.execute(f"CREATE ROLE qobra_ro LOGIN PASSWORD '{REMOTE_PASSWORD}'")
        conn.execute("CREATE TABLE public.users (id int PRIMARY KEY, full_name text NOT NULL, email text)")
        conn.execute("INSERT INTO public.users SELECT i, 'User ' || i, 'u' || i || '@example.com' "
                     "FROM generate_series(1, 12) i")
        conn.execute("GRANT SELECT ON public.users TO qobra_ro")
    # The remote asks qobra_ro for its password (postgres_fdw insists on one for non-superusers).
    hba = cluster.dir / "data" / "pg_hba.conf"
    hba.write_text("host all qobra_ro 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
    reload_config(cluster)
    guide.sql("CREATE SERVER crm", "sales", **{
        "host 'crm.internal', port '5432'": f"host '127.0.0.1', port '{cluster.port}'",
        "password '…'": f"password '{REMOTE_PASSWORD}'"})
    fake.define_table("users", id_field="id", name_field="full_name", fields={"email": "string"})
    with cluster.connect("sales") as conn:
        db = Db(conn, "crm")
        checks = db.rows("SELECT * FROM qobra_sync.validate('crm.users')")
        assert all(c["ok"] for c in checks), checks
        run = db.sync("crm.users")
        assert (run["status"], run["rows_sent"]) == ("succeeded", 12), run


def test_delegating(guide):
    """`GRANT qobra_sync_operator TO app_admin;`: app_admin may then read the views and use
    the functions, and sees none of the superuser's registrations."""
    with guide.cluster.connect("sales") as conn:
        conn.execute("CREATE ROLE app_admin LOGIN")
    guide.sql("GRANT qobra_sync_operator TO app_admin;", "sales")
    with guide.cluster.connect("sales") as conn:
        conn.execute("SET ROLE app_admin")
        assert conn.execute("SELECT count(*) FROM qobra_sync.tables").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM qobra_sync.next_runs('1 hour')").fetchone() == (5,)


def test_every_sql_example_was_run(guide):
    """Each fenced SQL block of the README was run by one of the tests above."""
    missing = [text for text in SQL_BLOCKS if text not in guide.ran]
    assert not missing, "SQL blocks of the README no test runs:\n\n" + "\n\n".join(missing)
