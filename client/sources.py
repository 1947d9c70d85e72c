"""Where a company's records are read from: its CSV or Parquet file, or a SQL query on its database.

Files are read by core.dataset. A database is reached over the network, which core never does,
so its rows are read here, with SQLAlchemy (imported on first use: the `sql` extra), and handed
to core's `load_records` as raw rows: every check a file's rows get (empty, long or repeated
ids, bad failure values, missing columns, group labels) applies to them, with the same errors,
naming the query's row and the column instead of a file's line.

A password is never shown: URLs are masked (`render_as_string(hide_password=True)`), and a
driver's error text, which may echo the connection string, is cleaned of it before it is
raised. Best kept out of the URL: `password_env` or `password_file`, read when connecting.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Generator, Iterator, Sequence
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

from monoculture.core import dataset
from monoculture.core.dataset import CompanyRecords, InputSpec, RawRow, SqlQuery
from monoculture.core.errors import ConfigError, InputError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Engine

# Rows fetched from the server per batch (a server-side cursor): the table is never held whole.
ROWS_PER_FETCH = 10_000
CONNECT_TIMEOUT_SECONDS = 15
_MASK = "***"
_SQL_EXTRA = "install the sql extra: pip install 'monoculture[sql]'"
_READ_HINT = (
    "check [data] url (host, port, database, user), the password (password_env / password_file), "
    "that the server accepts connections from here, and the query"
)


def load_records(spec: InputSpec, *, groups: bool = False) -> CompanyRecords:
    """The company's checked records, from its file or its SQL query (core.dataset.load_records)."""
    return dataset.load_records(spec, groups=groups, reader=sql_rows if spec.sql is not None else None)


def input_digest(spec: InputSpec) -> str:
    """What a company's sealed round state is bound to, so that a changed input is noticed before
    a resume re-seals it: the file's SHA-256 (core.dataset.input_digest), or for a query one over
    every row it returns, whatever their order (a query without ORDER BY may return its rows in
    another order each time)."""
    if spec.sql is None:
        return dataset.input_digest(spec.file)
    total, rows = 0, 0
    for _, values in _query_rows(spec, spec.sql):
        row = hashlib.sha256()
        for value in values:
            data = f"{type(value).__name__}:{value!r}".encode()
            row.update(len(data).to_bytes(4, "big") + data)
        total = (total + int.from_bytes(row.digest(), "big")) % (1 << 256)
        rows += 1
    digest = hashlib.sha256(b"monoculture/v1 query rows")
    digest.update(rows.to_bytes(8, "big") + total.to_bytes(32, "big"))
    return digest.hexdigest()


def sql_query(
    url: str,
    query: str,
    *,
    password_env: str = "",
    password_file: Path | None = None,
    base: Path | None = None,
) -> SqlQuery:
    """A checked SqlQuery. The URL must parse (its text is never repeated in an error: it may hold
    a password); at most one place holds the password; a relative SQLite path is taken from `base`
    (the config file's folder)."""
    parsed = _parse_url(url)
    if not query.strip():
        raise ConfigError("[data] query is empty", hint="give the SQL that returns the records")
    if password_env and password_file is not None:
        raise ConfigError("[data] give password_env or password_file, not both")
    if parsed.password is not None and (password_env or password_file is not None):
        raise ConfigError(
            "[data] url holds a password, and password_env or password_file gives another",
            hint="keep the password out of the url",
        )
    if base is not None and _is_sqlite_file(parsed) and not Path(parsed.database or "").is_absolute():
        parsed = parsed.set(database=str((base / (parsed.database or "")).resolve()))
        url = parsed.render_as_string(hide_password=False)
    return SqlQuery(
        url=url,
        query=query,
        shown_url=parsed.render_as_string(hide_password=True),
        password_env=password_env,
        password_file=password_file,
    )


def holds_password(sql: SqlQuery) -> bool:
    """Whether the URL itself holds the password (the config file then holds a secret)."""
    return _parse_url(sql.url).password is not None


def check_password_source(sql: SqlQuery) -> None:
    """The password's environment variable is set, or its file readable (ConfigError otherwise)."""
    _password(sql)


def sql_rows(spec: InputSpec, groups: bool) -> Iterator[RawRow]:
    """The query's rows as core.dataset's checks take them: (where, row, id, failure, label),
    rows counted from 1 in the order the query returns them."""
    if spec.sql is None:
        raise ValueError("sql_rows reads a spec with a query")
    rows = _query_rows(spec, spec.sql)
    with closing(rows):  # a reader stopped early (a bad row) lets go of its connection at once
        names = next(rows)[1]
        try:
            id_at, failed_at, *label_at = dataset.column_positions(spec, [str(n) for n in names], groups)
        except InputError as exc:
            exc.hint += "; or name them in the query (SELECT person AS id, ...)"
            raise
        for number, values in rows:
            label = _plain(values[label_at[0]]) if label_at else None
            yield spec.at(number), number, _plain(values[id_at]), _plain(values[failed_at]), label


def _query_rows(spec: InputSpec, sql: SqlQuery) -> Generator[tuple[int, Sequence[Any]], None, None]:
    """(0, the result's column names), then (row number, values) for every row, streamed."""
    from sqlalchemy import exc, text

    password = _password(sql)
    engine = _engine(sql, password)
    try:
        try:
            connection = engine.connect()
        except exc.SQLAlchemyError as error:
            raise _read_error(spec, "cannot connect to the database", error, sql, password) from None
        with connection:
            options: dict[str, Any] = {"yield_per": ROWS_PER_FETCH}
            if engine.dialect.name == "postgresql":
                options["postgresql_readonly"] = True  # the query runs in a read-only transaction
            try:
                result = connection.execution_options(**options).execute(text(sql.query))
                if not result.returns_rows:
                    raise InputError("the query returns no rows (is it a SELECT?)", where=spec.origin)
                yield 0, list(result.keys())
                for number, row in enumerate(result, start=1):
                    yield number, tuple(row)
            except exc.SQLAlchemyError as error:
                raise _read_error(spec, "the query failed", error, sql, password) from None
    finally:
        engine.dispose()


def _plain(value: Any) -> Any:
    """A database's exact numbers (NUMERIC) as the int they hold, so 1.0 reads as a file's 1."""
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    return value


def _parse_url(url: str) -> URL:
    try:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError
    except ImportError:
        raise ConfigError("[data] url needs SQLAlchemy, which is not installed", hint=_SQL_EXTRA) from None
    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        # The message would repeat the URL, and with it any password.
        raise ConfigError(
            "[data] url is not an SQLAlchemy URL",
            hint="write it as dialect+driver://user@host:port/database, e.g. "
            "postgresql+psycopg://reader@db.example:5432/records or sqlite:///records.db",
        ) from None


def _is_sqlite_file(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")


def _password(sql: SqlQuery) -> str | None:
    """The password from password_env or password_file, read now (None: none configured)."""
    if sql.password_env:
        value = os.environ.get(sql.password_env)
        if value is None:
            raise ConfigError(
                f"[data] password_env names {sql.password_env}, which is not set in the environment",
                hint=f"set {sql.password_env} to the database password for the daemon",
            )
        return value
    if sql.password_file is not None:
        try:
            lines = sql.password_file.read_text(encoding="utf-8").splitlines()
            return lines[0] if lines else ""
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            raise ConfigError(
                f"[data] password_file cannot be read ({reason})", where=str(sql.password_file)
            ) from None
    return None


def _engine(sql: SqlQuery, password: str | None) -> Engine:
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    url = _parse_url(sql.url)
    if password is not None:
        url = url.set(password=password)
    if _is_sqlite_file(url) and not Path(url.database or "").exists():
        # SQLite would create an empty database there, and the query would fail on a missing table.
        raise InputError(
            "database file not found", where=f"query on {sql.shown_url}", hint="check [data] url"
        )
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    try:
        return create_engine(url, poolclass=NullPool, connect_args=connect_args)
    except (SQLAlchemyError, ImportError) as error:  # e.g. the dialect's driver is not installed
        raise InputError(
            f"cannot use the database ({_cleaned(str(error), sql, password)})",
            where=f"query on {sql.shown_url}",
            hint=f"install the database's driver; for PostgreSQL: {_SQL_EXTRA}",
        ) from None


def _read_error(
    spec: InputSpec, what: str, error: Exception, sql: SqlQuery, password: str | None
) -> InputError:
    # The driver's own message, without SQLAlchemy's echo of the statement and its link.
    reason = str(getattr(error, "orig", None) or error)
    lines = [line.strip() for line in reason.strip().splitlines() if line.strip()]
    shown = _cleaned(" ".join(lines[:4]), sql, password)[:400]
    return InputError(f"{what} ({shown})", where=spec.origin, hint=_READ_HINT)


_URL_PASSWORD = re.compile(r"(://[^/\s:@]*:)[^@\s]*@")
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def _cleaned(text: str, sql: SqlQuery, password: str | None) -> str:
    """`text` without the password: a driver's message may echo the URL or a connection string."""
    secrets = [password] if password else []
    inline = _parse_url(sql.url).password
    if inline:
        secrets.append(str(inline))
    for secret in secrets:
        for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
            text = text.replace(form, _MASK)
    text = text.replace(sql.url, sql.shown_url)
    text = _URL_PASSWORD.sub(rf"\1{_MASK}@", text)
    return _KEYWORD_PASSWORD.sub(rf"\1{_MASK}", text)
