"""A company's input: ids and failure indicators (and, when asked, group labels), read and
checked before anything is sent.

CSV (with a header) or Parquet, read here; or the rows of a SQL query (`InputSpec.sql`), which
monoculture.client.sources reads (a database is reached over the network, which core never
does) and hands to the same checks through `load_records(..., reader=...)`. Every problem is an
`InputError` naming the file and line (or the query and its row) and the field at fault, raised
before the first byte leaves the company.
"""

from __future__ import annotations

import csv
import hashlib
import math
from array import array
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from monoculture.core.errors import InputError
from monoculture.core.protocol import MAX_GROUP_LABEL_LENGTH

TRUE_VALUES = frozenset({"1", "true"})
FALSE_VALUES = frozenset({"0", "false"})
DEFAULT_MAX_ID_LENGTH = 1024
MAX_LABELS_IN_FILE = 65_535  # distinct group labels one file may hold (codes are uint16)
_EXAMPLES = 5


class DuplicatePolicy(StrEnum):
    """What to do with an id that appears on more than one row (docs/USAGE.md, "Duplicate ids")."""

    REFUSE = "refuse"  # default: stop and show the repeats
    KEEP_FIRST = "keep-first"  # the first row of an id wins
    ANY_FAILED = "any-failed"  # an id counts as failed if any of its rows failed
    DROP_CONFLICTING = "drop-conflicting"  # agreeing repeats collapse; disagreeing ids are dropped


@dataclass(frozen=True)
class SqlQuery:
    """Records from a database: the rows of `query` over the SQLAlchemy URL `url`.

    Built by monoculture.client.sources.sql_query, which masks the URL's password into
    `shown_url`; the password itself is best kept out of the URL (`password_env`,
    `password_file`) and is read only when connecting. `url` is never shown (not in repr).
    """

    url: str = field(repr=False)
    query: str
    shown_url: str  # `url` with its password masked, for messages and logs
    password_env: str = ""  # the environment variable holding the password ("" = none)
    password_file: Path | None = None  # the file holding the password


@dataclass(frozen=True)
class InputSpec:
    """Where a company's records are and how to read them: a file (`path`) or a SQL query
    (`sql`), exactly one of them."""

    path: Path | None = None
    id_column: str = "id"
    failure_column: str = "failed"
    file_format: str = "auto"  # "csv", "parquet" or "auto" (by suffix)
    duplicates: DuplicatePolicy = DuplicatePolicy.REFUSE
    max_id_length: int = DEFAULT_MAX_ID_LENGTH
    # The column of group labels (docs/PROTOCOL.md, "Groups"); read only by `load_records(...,
    # groups=True)`, i.e. by the company a round takes its groups from.
    group_column: str | None = None
    sql: SqlQuery | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.sql is None):
            raise InputError(
                "the input must be a file or a database query, exactly one of them",
                hint="give [data] path, or [data] url and query",
            )

    @property
    def origin(self) -> str:
        """Where the records come from, as error messages name it (never with a password)."""
        return f"query on {self.sql.shown_url}" if self.sql is not None else str(self.path)

    @property
    def file(self) -> Path:
        """The input file (an input read from a database has none)."""
        if self.path is None:
            raise ValueError(f"{self.origin} is not a file")
        return self.path

    @property
    def row_word(self) -> str:
        """How a record's position is named: a CSV's lines, a Parquet file's or a query's rows."""
        return "line" if self.sql is None and _file_format(self) == "csv" else "row"

    def at(self, position: int) -> str:
        """Where the record at `position` (a CSV line, or a row counted from 1) is."""
        if self.row_word == "line":
            return f"{self.origin}:{position}"
        return f"{self.origin}, row {position}"


# One record as a reader yields it, unchecked: (where, position, id, failure value, group label).
RawRow = tuple[str, int, Any, Any, Any]
# Reads a spec's raw rows; the bool asks for the group column (monoculture.client.sources.sql_rows).
RowReader = Callable[["InputSpec", bool], Iterator[RawRow]]


class GroupLabelError(InputError):
    """The group labels cannot be used for the round. `reason` says what is wrong without an id,
    a label, a file name or a line, so a daemon may send it to the coordinator; the message (for
    the company's own log) names them."""

    def __init__(self, message: str, *, reason: str, where: str = "", hint: str = "") -> None:
        super().__init__(message, where=where, hint=hint)
        self.reason = reason


class IdColumn:
    """Ids held compactly: their UTF-8 bytes in one buffer, with offsets.

    A million ids take about 25 MB this way, against about 110 MB as Python strings.
    """

    def __init__(self, blob: bytes | bytearray, offsets: npt.NDArray[np.int64]) -> None:
        self._blob = blob
        self._offsets = offsets  # len(ids) + 1 entries

    @classmethod
    def from_strings(cls, ids: Iterable[str]) -> IdColumn:
        blob, offsets = bytearray(), array("q", [0])
        for record_id in ids:
            blob += record_id.encode()
            offsets.append(len(blob))
        return cls(blob, np.frombuffer(offsets, dtype=np.int64))

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, index: int) -> str:
        return bytes(self._blob[self._offsets[index] : self._offsets[index + 1]]).decode()

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))

    def take(self, indices: Iterable[int]) -> list[str]:
        return [self[i] for i in indices]

    def extended(self, more: Sequence[str]) -> IdColumn:
        """These ids followed by `more`, held as compactly (the ids here are not decoded)."""
        raw = [record_id.encode() for record_id in more]
        lengths = np.fromiter((len(r) for r in raw), dtype=np.int64, count=len(raw))
        offsets = np.concatenate([self._offsets, self._offsets[-1] + np.cumsum(lengths)])
        return IdColumn(bytes(self._blob) + b"".join(raw), offsets)


class GroupColumn:
    """Each record's group label, compactly: the distinct labels (in order of first appearance)
    and one uint16 code per record into them."""

    def __init__(self, labels: tuple[str, ...], codes: npt.NDArray[np.uint16]) -> None:
        self.labels = labels
        self.codes = codes

    @classmethod
    def from_strings(cls, labels: Iterable[str]) -> GroupColumn:
        known: dict[str, int] = {}
        codes = array("H")
        for label in labels:
            codes.append(known.setdefault(label, len(known)))
        return cls(tuple(known), np.frombuffer(codes, dtype=np.uint16))

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, index: int) -> str:
        return self.labels[int(self.codes[index])]

    def round_codes(self, declared: Sequence[str], where: str = "") -> npt.NDArray[np.uint8]:
        """Each record's group code in a round that declared `declared` (label i is code i).

        A label the round did not declare is a GroupLabelError: its message names the labels
        (for the company's log), its `reason` only how many there are.
        """
        if len(declared) > 255:
            raise ValueError("group codes are one byte: at most 255 labels")
        position = {label: code for code, label in enumerate(declared)}
        lookup = np.array([position.get(label, -1) for label in self.labels], dtype=np.int16)
        mapped = lookup[self.codes] if len(self.codes) else np.zeros(0, dtype=np.int16)
        undeclared = [label for label in self.labels if label not in position]
        if undeclared:
            records = int((mapped < 0).sum())
            shown = ", ".join(repr(label) for label in undeclared[:_EXAMPLES])
            more = f" and {len(undeclared) - _EXAMPLES} more" if len(undeclared) > _EXAMPLES else ""
            raise GroupLabelError(
                f"{len(undeclared)} group label(s) on {records} records are not among the {len(declared)} "
                f"labels this round declared: {shown}{more}",
                reason=f"its group column holds {len(undeclared)} label(s) that the round did not "
                f"declare ({len(declared)} declared); its own log names them",
                where=where,
                hint="the auditor opens the round with every label (round open --group-labels), "
                "or these records get a declared label",
            )
        return mapped.astype(np.uint8)


@dataclass(frozen=True)
class CompanyRecords:
    """Unique ids and their 0/1 failure indicators, in file order; their group labels when
    they were asked for (`load_records(..., groups=True)`)."""

    ids: IdColumn
    failed: npt.NDArray[np.uint8]
    rows_read: int
    rows_merged: int = 0  # repeats folded into an earlier row by the duplicate policy
    ids_dropped: int = 0  # ids removed by drop-conflicting
    groups: GroupColumn | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def as_mapping(self) -> dict[str, int]:
        return dict(zip(self.ids, self.failed.tolist(), strict=True))

    def group_mapping(self) -> dict[str, str]:
        """{id: group label}; only for records loaded with their groups."""
        if self.groups is None:
            raise ValueError("these records were loaded without their group labels")
        return {record_id: self.groups[i] for i, record_id in enumerate(self.ids)}

    def id_list(self) -> list[str]:
        return list(self.ids)


def parse_failure(value: str) -> int | None:
    text = value.strip().lower()
    if text in TRUE_VALUES:
        return 1
    if text in FALSE_VALUES:
        return 0
    return None


def reading_digest(spec: InputSpec) -> str:
    """Hex SHA-256 of how `spec` reads its file (every setting but the path): with the file's
    digest, what fixes the records a company seals. A restarted company reading the same file
    with another failure column, id column, format, duplicate policy, id length limit or group
    column would seal other records under the round's keys and nonces."""
    settings = [spec.id_column, spec.failure_column, spec.file_format, str(spec.duplicates),
                str(spec.max_id_length), spec.group_column or ""]  # fmt: skip
    if spec.sql is not None:  # the query and its database read these records (files: as before)
        settings += [spec.sql.shown_url, spec.sql.query]
    digest = hashlib.sha256(b"monoculture/v1 input reading")
    for value in settings:
        data = value.encode("utf-8")
        digest.update(len(data).to_bytes(4, "big") + data)
    return digest.hexdigest()


def input_digest(path: Path) -> str:
    """Hex SHA-256 of the file's bytes, read 1 MiB at a time: what a company's sealed round
    state is bound to, so that a changed input is noticed before a resume re-seals it."""
    if path.is_dir():
        raise InputError("is a folder, not a file", where=str(path))
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    except FileNotFoundError:
        raise InputError("file not found", where=str(path), hint="check the path") from None
    except OSError as exc:
        raise InputError(f"cannot be read ({exc.strerror})", where=str(path)) from None
    return digest.hexdigest()


def load_records(spec: InputSpec, *, groups: bool = False, reader: RowReader | None = None) -> CompanyRecords:
    """Read, check and de-duplicate one company's records; with `groups`, their group labels
    too (from `spec.group_column`, which must then be set). Without it the group column is
    not read at all. `reader`: where the raw rows come from (by default the file's own reader;
    a SQL query's rows come from monoculture.client.sources).

    One pass keeps the ids compactly and detects repeats through 16-byte digests
    (held in memory only, for this check); only an input with repeats is read again,
    to apply the duplicate policy or explain the refusal.
    """
    if groups and not spec.group_column:
        raise GroupLabelError(
            "no group column is configured, and a round takes its groups from this company",
            reason="the round takes its groups from this company, but its input names no group column",
            where=spec.origin,
            hint="name the column of group labels: [data] group_column (--group-column)",
        )
    read = reader or _file_rows
    blob, offsets, failed, digests = bytearray(), array("q", [0]), bytearray(), bytearray()
    known: dict[str, int] = {}
    codes = array("H")
    for line, record_id, bit, label in _read_rows(spec, groups, read):
        raw = record_id.encode()
        blob += raw
        offsets.append(len(blob))
        failed.append(bit)
        digests += hashlib.blake2b(raw, digest_size=16).digest()
        if label is not None:
            code = known.setdefault(label, len(known))
            if code >= MAX_LABELS_IN_FILE:
                raise InputError(
                    f"column {spec.group_column!r} holds more than {MAX_LABELS_IN_FILE} distinct labels",
                    where=spec.at(line),
                    hint="a group column names a few groups (at most 127 per round); is it the right column?",
                )
            codes.append(code)
    if not failed:
        empty = "returned no rows" if spec.sql is not None else "holds a header but no records"
        raise InputError(empty, where=spec.origin, hint="give at least one record")
    keys = np.sort(np.frombuffer(digests, dtype="S16"))
    del digests
    if len(keys) > 1 and bool((keys[1:] == keys[:-1]).any()):
        return _apply_duplicate_policy(spec, _read_rows(spec, groups, read), groups, read)
    ids = IdColumn(blob, np.frombuffer(offsets, dtype=np.int64))
    column = GroupColumn(tuple(known), np.frombuffer(codes, dtype=np.uint16)) if groups else None
    return CompanyRecords(
        ids=ids, failed=np.frombuffer(failed, dtype=np.uint8), rows_read=len(failed), groups=column
    )


def _file_format(spec: InputSpec) -> str:
    if spec.file_format != "auto":
        if spec.file_format not in ("csv", "parquet"):
            raise InputError(
                f"unknown format {spec.file_format!r}",
                where=spec.origin,
                hint="use csv or parquet",
            )
        return spec.file_format
    return "parquet" if spec.file.suffix.lower() in (".parquet", ".pq") else "csv"


def _file_rows(spec: InputSpec, groups: bool) -> Iterator[RawRow]:
    """The raw rows of the CSV or Parquet file."""
    if spec.sql is not None:
        raise InputError(
            "is read from a database, by the company side",
            where=spec.origin,
            hint="read it with monoculture.client.sources.load_records",
        )
    if not spec.file.exists():
        raise InputError("file not found", where=spec.origin, hint="check the path")
    if spec.file.is_dir():
        raise InputError("is a folder, not a file", where=spec.origin)
    reader = _parquet_rows if _file_format(spec) == "parquet" else _csv_rows
    return reader(spec, groups)


def _read_rows(
    spec: InputSpec, groups: bool = False, reader: RowReader = _file_rows
) -> Iterator[tuple[int, str, int, str | None]]:
    """Checked (line, id, failed, group label) rows, one at a time (a million rows are never all
    held); the label is None unless `groups`."""
    rows = reader(spec, groups)
    try:
        for where, line, raw_id, raw_failed, raw_label in rows:
            line, record_id, failed = _check_row(spec, where, line, raw_id, raw_failed)
            yield line, record_id, failed, _check_label(spec, where, raw_label) if groups else None
    finally:
        if isinstance(rows, Generator):  # let go of the file or the database connection at once
            rows.close()


def _check_label(spec: InputSpec, where: str, raw: Any) -> str:
    """A group label: text (or an integer), 1-64 printable characters once stripped."""
    column = spec.group_column
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        raise InputError(f"column {column!r} is empty; every record needs a group label", where=where)
    if isinstance(raw, bytes):  # a Parquet binary column
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"column {column!r} holds a label that is not UTF-8 text", where=where) from None
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        raise InputError(
            f"column {column!r} holds a {type(raw).__name__}, group labels must be text or integers",
            where=where,
        )
    label = str(raw).strip()
    if not label:
        raise InputError(f"column {column!r} is empty; every record needs a group label", where=where)
    if len(label) > MAX_GROUP_LABEL_LENGTH:
        raise InputError(
            f"group label is {len(label)} characters long, above the limit of {MAX_GROUP_LABEL_LENGTH}",
            where=where,
            hint="use short group labels",
        )
    if not label.isprintable():
        raise InputError(f"column {column!r} holds a label with a non-printable character", where=where)
    return label


def _check_row(spec: InputSpec, where: str, line: int, raw_id: Any, raw_failed: Any) -> tuple[int, str, int]:
    if raw_id is None or (isinstance(raw_id, float) and math.isnan(raw_id)):
        raise InputError(f"column {spec.id_column!r} is empty", where=where)
    if not isinstance(raw_id, str | int) or isinstance(raw_id, bool):
        raise InputError(
            f"column {spec.id_column!r} holds a {type(raw_id).__name__}, ids must be text or integers",
            where=where,
        )
    record_id = str(raw_id).strip()
    if not record_id:
        raise InputError(f"column {spec.id_column!r} is empty", where=where)
    if len(record_id) > spec.max_id_length:
        raise InputError(
            f"id is {len(record_id)} characters long, above the limit of {spec.max_id_length}",
            where=where,
            hint="shorten the ids or raise max_id_length",
        )
    failed = _failure_value(raw_failed)
    if failed is None:
        shown = repr(raw_failed)[:40]
        raise InputError(
            f"column {spec.failure_column!r} is {shown}; failure values must be 0/1 or true/false",
            where=where,
        )
    return line, record_id, failed


def _failure_value(raw: Any) -> int | None:
    if isinstance(raw, bool):
        return int(raw)
    if isinstance(raw, int | float):  # Parquet numbers: exactly 0 or 1 (NaN is neither)
        return int(raw) if raw in (0, 1) else None
    if isinstance(raw, str):
        return parse_failure(raw)
    return None


def _columns(spec: InputSpec, groups: bool) -> list[str]:
    """The columns read: id, failure and (with groups) the group column."""
    return [spec.id_column, spec.failure_column, *([spec.group_column or ""] if groups else [])]


def column_positions(spec: InputSpec, names: Sequence[str], groups: bool, *, where: str = "") -> list[int]:
    """Where the id, failure and (with groups) group columns are among `names` (a CSV's header,
    a query's result columns): each must be there, once. `where`: the header's place."""
    positions = []
    for column in _columns(spec, groups):
        if column not in names:
            raise InputError(
                f"has no column {column!r} (columns: {', '.join(names) or 'none'})",
                where=where or spec.origin,
                hint=_COLUMN_HINT,
            )
        if names.count(column) > 1:
            raise InputError(f"names column {column!r} twice", where=where or spec.origin)
        positions.append(names.index(column))
    return positions


def _csv_rows(spec: InputSpec, groups: bool) -> Iterator[tuple[str, int, Any, Any, Any]]:
    try:
        handle = spec.file.open("r", encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise InputError(f"cannot be read ({exc.strerror})", where=spec.origin) from None
    with handle:
        reader = csv.reader(_decoded_lines(handle, spec.file))
        header = _csv_header(spec, reader)
        id_at, failed_at, *label_at_if_asked = column_positions(spec, header, groups, where=spec.at(1))
        label_at = label_at_if_asked[0] if label_at_if_asked else None
        try:
            for fields in reader:
                if not fields or fields == [""]:
                    continue
                if len(fields) != len(header):
                    raise InputError(
                        f"has {len(fields)} fields, the header has {len(header)}",
                        where=spec.at(reader.line_num),
                    )
                label = fields[label_at] if label_at is not None else None
                where = spec.at(reader.line_num)
                yield where, reader.line_num, fields[id_at], fields[failed_at], label
        except csv.Error as exc:
            raise InputError(f"is not valid CSV ({exc})", where=spec.at(reader.line_num)) from None


def _decoded_lines(handle: Iterable[str], path: Path) -> Iterator[str]:
    line_number = 0
    try:
        for line_number, line in enumerate(handle, start=1):
            if "\x00" in line:
                raise InputError("contains a NUL byte; is it a text CSV?", where=f"{path}:{line_number}")
            yield line
    except UnicodeDecodeError as exc:
        # Text is decoded in blocks, ahead of the lines read: find the line (and field) again.
        bad_line, column = _locate_bad_utf8(path, line_number + 1)
        field = f"column {column!r} " if column else ""
        raise InputError(
            f"{field}is not UTF-8 text ({exc.reason})",
            where=f"{path}:{bad_line}",
            hint="save the file as UTF-8, or give a Parquet file",
        ) from None
    except OSError as exc:
        raise InputError(f"cannot be read ({exc.strerror})", where=f"{path}:{line_number + 1}") from None


def _locate_bad_utf8(path: Path, first_possible: int) -> tuple[int, str]:
    """The first line that is not UTF-8, and the column of its first bad field when the line
    parses on its own ("" otherwise). On this error path only: the file is read again, in bytes."""
    header: list[str] = []
    try:
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError:
                    if not header:  # the header itself
                        return number, ""
                    fields = next(csv.reader([raw.decode("utf-8", errors="replace")]), [])
                    bad = next((i for i, value in enumerate(fields) if "\ufffd" in value), None)
                    named = bad is not None and len(fields) == len(header)
                    return number, header[bad] if named and bad is not None else ""
                if number == 1:
                    header = [name.strip() for name in next(csv.reader([text]), [])]
    except (OSError, csv.Error):
        pass
    return first_possible, ""


_COLUMN_HINT = (
    "name the columns with id_column / failure_column / group_column "
    "(--id-column, --failure-column, --group-column)"
)


def _csv_header(spec: InputSpec, reader: Any) -> list[str]:
    try:
        return [name.strip() for name in next(reader)]
    except StopIteration:
        raise InputError("is empty: no header and no records", where=spec.origin) from None
    except csv.Error as exc:
        raise InputError(f"is not valid CSV ({exc})", where=spec.at(1)) from None


def _parquet_rows(spec: InputSpec, groups: bool) -> Iterator[tuple[str, int, Any, Any, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(spec.file)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"is not a readable Parquet file ({exc})", where=spec.origin) from None
    column_positions(spec, schema.names, groups)
    columns = _columns(spec, groups)
    try:
        table = pq.read_table(spec.file, columns=columns)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"is not a readable Parquet file ({exc})", where=spec.origin) from None
    ids = table.column(spec.id_column).to_pylist()
    failures = table.column(spec.failure_column).to_pylist()
    labels = table.column(columns[2]).to_pylist() if groups else [None] * len(ids)
    # Parquet has no lines: "row N" counts records from 1.
    for row, (raw_id, raw_failed, raw_label) in enumerate(zip(ids, failures, labels, strict=True), start=1):
        yield spec.at(row), row, raw_id, raw_failed, raw_label


def _apply_duplicate_policy(
    spec: InputSpec,
    rows: Iterator[tuple[int, str, int, str | None]],
    groups: bool = False,
    reader: RowReader = _file_rows,
) -> CompanyRecords:
    """The second pass, for an input `load_records` found repeats in (so it has rows).

    With groups, an id's label is its first row's; repeats that give it another label
    are dropped with it under drop-conflicting, and refused under any-failed.
    """
    first: dict[str, int] = {}
    first_label: dict[str, str | None] = {}
    repeats: dict[str, list[tuple[int, int]]] = {}
    relabelled: dict[str, int] = {}  # id -> first line giving it another group label
    rows_read = 0
    for line, record_id, failed, label in rows:
        rows_read += 1
        if record_id not in first:
            first[record_id] = failed
            first_label[record_id] = label
        else:
            repeats.setdefault(record_id, []).append((line, failed))
            if label != first_label[record_id]:
                relabelled.setdefault(record_id, line)
    conflicting = {i for i, seen in repeats.items() if any(f != first[i] for _, f in seen)}
    if repeats and spec.duplicates == DuplicatePolicy.REFUSE:
        raise _duplicate_error(spec, len(first), rows_read, repeats, conflicting, reader)
    if relabelled and spec.duplicates == DuplicatePolicy.ANY_FAILED:
        record_id, line = next(iter(relabelled.items()))
        raise InputError(
            f"{len(relabelled)} repeated ids carry different group labels on different rows, "
            f"e.g. {record_id!r} ({spec.row_word} {line})",
            where=spec.origin,
            hint="give every id one group label, or choose duplicates = 'keep-first' (the first row "
            "wins) or 'drop-conflicting' (such ids are dropped)",
        )
    if spec.duplicates == DuplicatePolicy.ANY_FAILED:
        for record_id, seen in repeats.items():
            first[record_id] |= max(f for _, f in seen)
    dropped = conflicting | set(relabelled) if spec.duplicates == DuplicatePolicy.DROP_CONFLICTING else set()
    ids = [i for i in first if i not in dropped]
    if not ids:
        raise InputError("no records are left after dropping conflicting ids", where=spec.origin)
    failure_bits = np.fromiter((first[i] for i in ids), dtype=np.uint8, count=len(ids))
    column = GroupColumn.from_strings(str(first_label[i]) for i in ids) if groups else None
    return CompanyRecords(
        ids=IdColumn.from_strings(ids),
        failed=failure_bits,
        rows_read=rows_read,
        rows_merged=sum(len(seen) for seen in repeats.values()),
        ids_dropped=len(first) - len(ids),
        groups=column,
    )


def _duplicate_error(
    spec: InputSpec,
    distinct: int,
    rows_read: int,
    repeats: dict[str, list[tuple[int, int]]],
    conflicting: set[str],
    reader: RowReader = _file_rows,
) -> InputError:
    shown = list(repeats)[:_EXAMPLES]
    first_line: dict[str, tuple[int, int]] = {}
    for line, record_id, failed, _ in _read_rows(spec, False, reader):  # again, on this error path only
        if record_id in shown and record_id not in first_line:
            first_line[record_id] = (line, failed)
    examples = []
    for record_id in shown:
        seen = [first_line[record_id], *repeats[record_id]]
        where = ", ".join(f"{spec.row_word} {line}: {failed}" for line, failed in seen[:4])
        examples.append(f"    {record_id!r} ({where}{', ...' if len(seen) > 4 else ''})")
    extra_rows = sum(len(seen) for seen in repeats.values())
    message = (
        f"{distinct} distinct ids in {rows_read} rows: "
        f"{len(repeats)} ids appear on more than one row ({extra_rows} repeated rows); "
        f"{len(conflicting)} of them with conflicting failure values. Examples:\n" + "\n".join(examples)
    )
    return InputError(
        message,
        where=spec.origin,
        hint="make ids unique, or choose a duplicate policy: duplicates = "
        "'keep-first' | 'any-failed' | 'drop-conflicting' (--duplicates; see docs/USAGE.md)",
    )
