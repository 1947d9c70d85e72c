"""A company's records from a SQL query ([data] url + query): against SQLite, and against a real
PostgreSQL server these tests start, up to a round between real processes in which one company's
records come from PostgreSQL and the others' from CSV files.

The rows of a query get the same checks as a file's, with the same messages (naming the query's
row instead of the file's line), and no password ever shows in an error, a log line or a repr.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
import traceback
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import assert_same_integers, example, write_csv
from support.postgres import PostgresServer, why_not_available

from monoculture.client.config import client_sections, load_client_config
from monoculture.client.sources import input_digest, load_records, sql_query, sql_rows
from monoculture.core.config import render_toml
from monoculture.core.dataset import DuplicatePolicy, InputSpec
from monoculture.core.errors import ConfigError, InputError, MonocultureError

Row = tuple[object, ...]


def sqlite_spec(
    tmp_path: Path, rows: list[Row], columns: str = "id, failed", **settings: object
) -> InputSpec:
    """A SQLite table of `rows` (columns without a declared type: values stay as given) and a
    spec reading it with SELECT *."""
    database = tmp_path / "records.db"
    with sqlite3.connect(database) as connection:
        connection.execute(f"CREATE TABLE records ({columns})")
        marks = ", ".join("?" * len(columns.split(",")))
        connection.executemany(f"INSERT INTO records VALUES ({marks})", rows)
    connection.close()
    query = sql_query(f"sqlite:///{database}", "SELECT * FROM records ORDER BY rowid")
    return InputSpec(sql=query, **settings)  # type: ignore[arg-type]


def csv_spec(tmp_path: Path, rows: list[Row], header: str = "id,failed", **settings: object) -> InputSpec:
    lines = [",".join("" if v is None else str(v) for v in row) for row in rows]
    path = tmp_path / "records.csv"
    path.write_text(header + "\n" + "".join(line + "\n" for line in lines), encoding="utf-8")
    return InputSpec(path, **settings)  # type: ignore[arg-type]


def example_rows(company: str) -> list[Row]:
    lines = example("digit", company).read_text(encoding="utf-8").splitlines()[1:]
    return [(line.split(",")[0], int(line.split(",")[1])) for line in lines]


@pytest.fixture(autouse=True)
def _folders(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()


def error_of(spec: InputSpec, groups: bool = False) -> MonocultureError:
    with pytest.raises(MonocultureError) as caught:
        load_records(spec, groups=groups)
    return caught.value


# --- SQLite --------------------------------------------------------------------------------------


def test_a_query_reads_the_same_records_as_the_csv_file(tmp_path: Path) -> None:
    from_file = load_records(InputSpec(example("digit", "google")))
    from_query = load_records(sqlite_spec(tmp_path, example_rows("google")))
    assert list(from_query.ids) == list(from_file.ids)
    assert from_query.failed.tolist() == from_file.failed.tolist()
    assert from_query.rows_read == from_file.rows_read == 2000


def test_group_labels_and_duplicate_policies_read_as_from_the_file(tmp_path: Path) -> None:
    rows: list[Row] = [("a", 1, "x"), ("b", 0, "y"), ("a", 0, "x"), ("c", "true", "y"), ("b", 0, "y")]
    for policy in ("keep-first", "any-failed", "drop-conflicting"):
        folder = tmp_path / policy
        folder.mkdir()
        settings = {"group_column": "g", "duplicates": DuplicatePolicy(policy)}
        sql = load_records(sqlite_spec(folder, rows, "id, failed, g", **settings), groups=True)
        csv = load_records(csv_spec(folder, rows, "id,failed,g", **settings), groups=True)
        assert sql.as_mapping() == csv.as_mapping(), policy
        assert sql.group_mapping() == csv.group_mapping(), policy
        assert (sql.rows_merged, sql.ids_dropped) == (csv.rows_merged, csv.ids_dropped), policy


# Each bad input, as rows of a table and of a CSV file: the same message from both, the query's
# row (counted from 1) where the file has its line (the header is line 1).
BAD_ROWS = [
    ("an empty id", [("a", 1), ("", 0)], 2, "column 'id' is empty"),
    ("a NULL id", [("a", 1), (None, 0)], 2, "column 'id' is empty"),
    ("a too long id", [("a", 1), ("x" * 1025, 0)], 2, "id is 1025 characters long, above the limit of 1024"),
    ("a failure value of 2", [("a", "2")], 1, "column 'failed' is '2'; failure values must be 0/1"),
    ("a failure value of yes", [("a", 1), ("b", "yes")], 2, "column 'failed' is 'yes'"),
    ("a NULL failure value", [("a", None)], 1, "column 'failed' is"),
]


@pytest.mark.parametrize(("case", "rows", "row", "message"), BAD_ROWS, ids=[c[0] for c in BAD_ROWS])
def test_a_bad_row_is_refused_naming_the_querys_row(
    tmp_path: Path, case: str, rows: list[Row], row: int, message: str
) -> None:
    sql = error_of(sqlite_spec(tmp_path, rows))
    csv = error_of(csv_spec(tmp_path, rows))
    assert isinstance(sql, InputError)
    assert message in sql.message
    assert sql.where == f"query on sqlite:///{tmp_path / 'records.db'}, row {row}"
    assert csv.where == f"{tmp_path / 'records.csv'}:{row + 1}"
    if case != "a NULL failure value":  # None in a table, "" in a file
        assert sql.message == csv.message


def test_numbers_a_database_holds_are_checked_as_numbers(tmp_path: Path) -> None:
    """An integer 2 is no failure value; a float id is no id; integer ids and 0/1 are fine."""
    assert "column 'failed' is 2;" in error_of(sqlite_spec(tmp_path / "a", [("a", 2)])).message
    assert "holds a float, ids must be text" in error_of(sqlite_spec(tmp_path / "b", [(1.5, 1)])).message
    assert load_records(sqlite_spec(tmp_path / "c", [(7, 1), (8, 0)])).as_mapping() == {"7": 1, "8": 0}


def test_repeated_ids_are_refused_as_in_a_file_naming_rows(tmp_path: Path) -> None:
    rows: list[Row] = [("a", 1), ("b", 0), ("a", 0)]
    sql = error_of(sqlite_spec(tmp_path, rows))
    csv = error_of(csv_spec(tmp_path, rows))
    assert "'a' (row 1: 1, row 3: 0)" in sql.message
    assert "'a' (line 2: 1, line 4: 0)" in csv.message
    assert sql.message.replace("row 1", "line 2").replace("row 3", "line 4") == csv.message
    assert sql.hint == csv.hint


def test_missing_columns_no_rows_and_bad_labels_are_refused(tmp_path: Path) -> None:
    missing = error_of(sqlite_spec(tmp_path / "a", [("a", 1)], "person, failed"))
    assert missing.message == "has no column 'id' (columns: person, failed)"
    assert "SELECT person AS id" in missing.hint
    empty = error_of(sqlite_spec(tmp_path / "b", []))
    assert empty.message == "returned no rows"
    labels = sqlite_spec(tmp_path / "c", [("a", 1, "x"), ("b", 0, None)], "id, failed, g", group_column="g")
    bad_label = error_of(labels, groups=True)
    assert bad_label.message == "column 'g' is empty; every record needs a group label"
    assert bad_label.where.endswith(", row 2")
    assert load_records(labels).as_mapping() == {"a": 1, "b": 0}  # labels unread without groups


def test_a_failing_query_and_a_missing_database_are_clear_errors(tmp_path: Path) -> None:
    spec = sqlite_spec(tmp_path, [("a", 1)])
    assert spec.sql is not None
    broken = error_of(replace(spec, sql=replace(spec.sql, query="SELECT * FROM no_such_table")))
    assert broken.message.startswith("the query failed (no such table: no_such_table)")
    absent = sql_query(f"sqlite:///{tmp_path / 'absent.db'}", "SELECT 1")
    error = error_of(InputSpec(sql=absent))
    assert error.message == "database file not found"
    assert not (tmp_path / "absent.db").exists()  # not created empty


def test_the_input_digest_follows_the_rows_not_their_order(tmp_path: Path) -> None:
    spec = sqlite_spec(tmp_path, [("a", 1), ("b", 0)])
    assert spec.sql is not None
    before = input_digest(spec)
    reordered = replace(spec, sql=replace(spec.sql, query="SELECT * FROM records ORDER BY id DESC"))
    assert input_digest(reordered) == before
    with sqlite3.connect(tmp_path / "records.db") as connection:
        connection.execute("UPDATE records SET failed = 0 WHERE id = 'a'")
    connection.close()
    assert input_digest(spec) != before


def test_a_restarted_daemon_refuses_to_resume_over_changed_rows(tmp_path: Path) -> None:
    """What a file's changed bytes do at a restart, changed rows do too: the round's sealed state
    holds the digest of the query's rows at join, and rows read again must match it."""
    from monoculture.client.daemon import CompanyRound
    from monoculture.core.dataset import reading_digest
    from monoculture.core.psi_crypto import TagOpener

    spec = sqlite_spec(tmp_path, [("a", 1), ("b", 0)])
    held = CompanyRound.fresh(
        "round-1", "google", TagOpener().public_key, roster=("google", "ibm"),
        digest=input_digest(spec), reading=reading_digest(spec),
    )  # fmt: skip
    assert held.take_records(spec).as_mapping() == {"a": 1, "b": 0}  # unchanged: read again
    with sqlite3.connect(tmp_path / "records.db") as connection:
        connection.execute("INSERT INTO records VALUES ('c', 1)")
    connection.close()
    with pytest.raises(InputError, match="changed since this company joined the round") as caught:
        held.take_records(spec)
    assert caught.value.where == spec.origin


# --- Configuration -------------------------------------------------------------------------------

CLIENT = '[client]\ncompany = "google"\ncoordinator = "127.0.0.1:1"\n'


def write_config(tmp_path: Path, data: str) -> Path:
    path = tmp_path / "client.toml"
    path.write_text(CLIENT + "[data]\n" + data, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ('path = "a.csv"\nurl = "sqlite:///r.db"\nquery = "SELECT 1"\n', "give path"),
        ('id_column = "id"\n', "give path (a CSV or Parquet file) or url and query"),
        ('url = "sqlite:///r.db"\n', "url and query go together"),
        ('path = "a.csv"\npassword_env = "X"\n', "password_env and password_file are for a database url"),
        ('url = "sqlite:///r.db"\nquery = "SELECT 1"\npassword_env = "A"\npassword_file = "p"\n', "not both"),
        ('url = "no url at all:s3cret"\nquery = "SELECT 1"\n', "[data] url is not an SQLAlchemy URL"),
        ('url = "postgresql://u@h/d"\nquery = "  "\n', "[data] query is empty"),
        ('url = "postgresql://u:s3cret@h/d"\nquery = "SELECT 1"\npassword_env = "A"\n', "holds a password"),
        (
            'url = "postgresql://u@h/d"\nquery = "SELECT 1"\npassword_env = "MONO_UNSET_VAR"\n',
            "MONO_UNSET_VAR",
        ),
        ('url = "postgresql://u@h/d"\nquery = "SELECT 1"\npassword_file = "absent"\n', "cannot be read"),
    ],
)
def test_data_section_errors(tmp_path: Path, data: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_client_config(write_config(tmp_path, data), insecure=True)
    assert message in caught.value.message
    assert "s3cret" not in caught.value.diagnostics()


def test_a_database_config_loads_renders_and_loads_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONO_DB_PASSWORD", "s3cret")
    data = 'url = "sqlite:///records.db"\nquery = "SELECT * FROM records"\n'
    config = load_client_config(write_config(tmp_path, data), insecure=True)
    assert config.data.path is None and config.data.sql is not None
    assert config.data.sql.url == f"sqlite:///{tmp_path / 'records.db'}"  # relative to the file
    remote = 'url = "postgresql+psycopg://reader@db:5432/r"\nquery = "SELECT 1"\n'
    remote += 'password_env = "MONO_DB_PASSWORD"\n'
    config = load_client_config(write_config(tmp_path, remote), insecure=True)
    again = tmp_path / "again.toml"
    again.write_text(render_toml(client_sections(config), comments=True), encoding="utf-8")
    assert load_client_config(again, insecure=True) == config
    assert "s3cret" not in again.read_text(encoding="utf-8")


def test_a_password_in_the_url_is_warned_about_and_never_shown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = 'url = "postgresql+psycopg://reader:s3cret@127.0.0.1:1/r"\nquery = "SELECT 1 AS id, 0 AS failed"\n'
    with caplog.at_level(logging.WARNING):
        config = load_client_config(write_config(tmp_path, data), insecure=True)
    assert "url holds a password" in caplog.text and "s3cret" not in caplog.text
    assert "s3cret" not in repr(config) and "s3cret" not in str(config.data)
    assert config.data.origin == "query on postgresql+psycopg://reader:***@127.0.0.1:1/r"
    error = error_of(config.data)
    assert error.message.startswith("cannot connect to the database")
    assert "s3cret" not in error.diagnostics()


def test_driver_text_echoing_the_connection_string_is_cleaned(tmp_path: Path) -> None:
    """A driver's message may repeat the URL or a libpq connection string: both are masked."""
    from monoculture.client import sources

    query = sql_query("postgresql+psycopg://u:p%40ss@h/d", "SELECT 1")
    echoed = "bad: postgresql+psycopg://u:p%40ss@h/d, host=h password=p@ss user=u, p@ss"
    cleaned = sources._cleaned(echoed, query, None)
    assert "p@ss" not in cleaned and "p%40ss" not in cleaned
    assert cleaned == "bad: postgresql+psycopg://u:***@h/d, host=h password=*** user=u, ***"


# --- PostgreSQL ----------------------------------------------------------------------------------

READER_PASSWORD = "reader-pw-7b1c0d2e9f"
GOOGLE_ROWS = example_rows("google")
READERS_QUERIES = "SELECT query FROM pg_stat_activity WHERE usename = 'reader'"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One server for this session: a table of the digit example's google rows, readable by a
    `reader` role that logs in with a password and may only SELECT."""
    reason = why_not_available()
    if reason:
        pytest.skip(reason)
    server = PostgresServer.start()
    try:
        server.execute(
            f"CREATE ROLE reader LOGIN PASSWORD '{READER_PASSWORD}'",
            "CREATE TABLE outcomes (person text, model_failed integer, cohort text, position integer)",
            "GRANT SELECT ON outcomes TO reader",
            "CREATE SEQUENCE tickets",
            "GRANT USAGE ON SEQUENCE tickets TO reader",
            "INSERT INTO outcomes VALUES (%s, %s, %s, %s)",
            rows=[(i, f, "odd" if n % 2 else "even", n) for n, (i, f) in enumerate(GOOGLE_ROWS, start=1)],
        )
        yield server
    finally:
        server.stop()


def reader_spec(server: PostgresServer, query: str = "", **settings: object) -> InputSpec:
    sql = sql_query(
        server.url("reader"),
        query or "SELECT person AS id, model_failed AS failed, cohort FROM outcomes ORDER BY person",
        password_env="MONO_TEST_PG_PASSWORD",
    )
    return InputSpec(sql=sql, **settings)  # type: ignore[arg-type]


@pytest.fixture
def reader_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONO_TEST_PG_PASSWORD", READER_PASSWORD)


def test_postgres_rows_equal_the_csv_files(postgres: PostgresServer, reader_password: None) -> None:
    records = load_records(reader_spec(postgres))
    assert records.as_mapping() == load_records(InputSpec(example("digit", "google"))).as_mapping()
    grouped = load_records(reader_spec(postgres, group_column="cohort"), groups=True)
    assert set(grouped.group_mapping().values()) == {"even", "odd"}


def test_postgres_rows_are_streamed_from_a_server_side_cursor_read_only(
    postgres: PostgresServer, reader_password: None
) -> None:
    """Paused after its first row, the reader holds a cursor on the server and fetches in batches,
    in a read-only transaction: the table is never held whole."""
    spec = reader_spec(postgres, "SELECT n::text AS id, n % 2 AS failed FROM generate_series(1, 200000) n")
    rows = sql_rows(spec, False)
    assert next(rows)[1:4] == (1, "1", 1)
    import psycopg

    conninfo = f"host={postgres.host} port={postgres.port} user=owner dbname=postgres"
    with psycopg.connect(conninfo, password=postgres.owner_password) as watcher:
        queries = [q for (q,) in watcher.execute(READERS_QUERIES)]
    assert any(q.startswith("FETCH FORWARD") for q in queries), queries
    rows.close()
    # DECLARE refuses INSERT and UPDATE; a function that writes is refused by the read-only transaction.
    writing = reader_spec(postgres, "SELECT nextval('tickets')::text AS id, 0 AS failed")
    assert "cannot execute nextval() in a read-only transaction" in error_of(writing).message


def test_a_daemon_config_reads_postgres_with_its_password_file(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    (tmp_path / "db-password").write_text(READER_PASSWORD + "\n", encoding="utf-8")
    data = f'url = "{postgres.url("reader")}"\nquery = "{GOOGLE_QUERY}"\npassword_file = "db-password"\n'
    config = load_client_config(write_config(tmp_path, data), insecure=True)
    assert len(load_records(config.data)) == 2000


@pytest.mark.parametrize("where", ["password", "server"])
def test_a_wrong_password_or_no_server_is_a_clear_error_without_the_secret(
    postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    secret = "wrong-secret-0e4f"
    monkeypatch.setenv("MONO_TEST_PG_PASSWORD", secret)
    spec = reader_spec(postgres)
    if where == "server":  # port 1: nothing listens there
        closed = postgres.url("reader").replace(f":{postgres.port}/", ":1/")
        spec = InputSpec(sql=sql_query(closed, "SELECT 1", password_env="MONO_TEST_PG_PASSWORD"))
    with caplog.at_level(logging.DEBUG):
        error = error_of(spec)
    assert isinstance(error, InputError)
    assert error.message.startswith("cannot connect to the database")
    expected = (
        'password authentication failed for user "reader"' if where == "password" else "Connection refused"
    )
    assert expected in error.message
    shown = "\n".join([error.diagnostics(), repr(error), *traceback.format_exception(error), caplog.text])
    assert secret not in shown


def plaintext(tmp_path: Path, google: Path, microsoft: Path, ibm: Path) -> dict[str, object]:
    out = tmp_path / "plain.json"
    args = [sys.executable, "-m", "monoculture", "plaintext", "--out", str(out)]
    for name, source in (("google", google), ("microsoft", microsoft), ("ibm", ibm)):
        args += ["--company", f"{name}={source}"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(out.read_text()))


GOOGLE_QUERY = "SELECT person AS id, model_failed AS failed FROM outcomes"
ROUND_ROWS = 600  # the round runs over the digit example's first 600 individuals (the whole: 2000)


@pytest.mark.e2e
def test_a_postgres_backed_company_takes_part_in_a_round(
    tmp_path: Path, postgres: PostgresServer, reader_password: None
) -> None:
    """A round between real processes over mTLS: google's daemon reads its records from
    PostgreSQL (password from its environment), microsoft's and ibm's from CSV. The result equals
    `monoculture plaintext` over CSV files holding the same records, and over google's daemon
    config (which reads the same query)."""
    from monoculture.research.simulate import CompanyInput, run_round

    csv = {
        name: write_csv(tmp_path / f"{name}.csv", example_rows(name)[:ROUND_ROWS])  # type: ignore[arg-type]
        for name in ("google", "microsoft", "ibm")
    }
    query = f"{GOOGLE_QUERY} WHERE position <= {ROUND_ROWS}"
    companies = [
        CompanyInput("google", reader_spec(postgres, query)),
        CompanyInput("microsoft", InputSpec(csv["microsoft"])),
        CompanyInput("ibm", InputSpec(csv["ibm"])),
    ]
    run = run_round(companies, tmp_path / "round", timeout=300)
    assert run.result["shared_individuals"] == ROUND_ROWS
    google_config = tmp_path / "round" / "client-google.toml"
    assert "password_env" in google_config.read_text(encoding="utf-8")
    for google in (csv["google"], google_config):
        plain = plaintext(tmp_path, google, csv["microsoft"], csv["ibm"])
        assert_same_integers(run.result, plain)
        assert run.result["homogenization"] == pytest.approx(plain["homogenization"], rel=1e-12)
    written = [p.read_text(errors="replace") for p in (tmp_path / "round").rglob("*") if p.is_file()]
    assert not any(READER_PASSWORD in text for text in written)


def test_a_reader_stopped_by_a_bad_row_closes_its_connection(
    postgres: PostgresServer, reader_password: None
) -> None:
    """A reader stopped early (a bad row) closes its connection: nothing stays on the server."""
    spec = reader_spec(postgres, "SELECT CASE WHEN n = 5 THEN NULL ELSE n::text END AS id, 0 AS failed "
                       "FROM generate_series(1, 100) n")  # fmt: skip
    assert error_of(spec).where.endswith(", row 5")
    import psycopg

    conninfo = f"host={postgres.host} port={postgres.port} user=owner dbname=postgres"
    with psycopg.connect(conninfo, password=postgres.owner_password) as watcher:
        queries = [q for (q,) in watcher.execute(READERS_QUERIES)]
    assert queries == []


def test_sqlalchemy_is_loaded_only_for_a_database_input() -> None:
    """The daemon, the CLI and a file-based config leave SQLAlchemy unimported (--help stays fast)."""
    program = (
        "import sys, monoculture.client.daemon, monoculture.cli, monoculture.research.simulate\n"
        "from monoculture.client.sources import load_records\n"
        "from pathlib import Path\nfrom monoculture.core.dataset import InputSpec\n"
        f"load_records(InputSpec(Path({str(example('digit', 'ibm'))!r})))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'psycopg')))"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_plaintext_reads_a_daemon_config_and_names_a_bad_row_without_a_traceback(tmp_path: Path) -> None:
    spec = sqlite_spec(tmp_path, [("a", 1), ("b", "maybe")])
    assert spec.sql is not None
    config = write_config(tmp_path, f'url = "{spec.sql.url}"\nquery = "{spec.sql.query}"\n')
    other = write_csv(tmp_path / "other.csv", [("a", 0), ("b", 1)])
    done = subprocess.run(
        [sys.executable, "-m", "monoculture", "plaintext", "--company", f"google={config}",
         "--company", f"ibm={other}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    where = f"company google: query on sqlite:///{tmp_path / 'records.db'}, row 2"
    assert f"{where}: column 'failed' is 'maybe'" in done.stderr
    assert "Traceback" not in done.stderr
