"""A company's input: ids and failure indicators, read and checked before anything is sent.

CSV (with a header) or Parquet. Every problem is an `InputError` naming the
file, line and field at fault, raised before the first byte leaves the company.
"""

from __future__ import annotations

import csv
import hashlib
import math
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from monoculture.core.errors import InputError

TRUE_VALUES = frozenset({"1", "true"})
FALSE_VALUES = frozenset({"0", "false"})
DEFAULT_MAX_ID_LENGTH = 1024
_EXAMPLES = 5


class DuplicatePolicy(StrEnum):
    """What to do with an id that appears on more than one row (README, "Duplicate ids")."""

    REFUSE = "refuse"  # default: stop and show the repeats
    KEEP_FIRST = "keep-first"  # the first row of an id wins
    ANY_FAILED = "any-failed"  # an id counts as failed if any of its rows failed
    DROP_CONFLICTING = "drop-conflicting"  # agreeing repeats collapse; disagreeing ids are dropped


@dataclass(frozen=True)
class InputSpec:
    """Where a company's records are and how to read them."""

    path: Path
    id_column: str = "id"
    failure_column: str = "failed"
    file_format: str = "auto"  # "csv", "parquet" or "auto" (by suffix)
    duplicates: DuplicatePolicy = DuplicatePolicy.REFUSE
    max_id_length: int = DEFAULT_MAX_ID_LENGTH


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


@dataclass(frozen=True)
class CompanyRecords:
    """Unique ids and their 0/1 failure indicators, in file order."""

    ids: IdColumn
    failed: npt.NDArray[np.uint8]
    rows_read: int
    rows_merged: int = 0  # repeats folded into an earlier row by the duplicate policy
    ids_dropped: int = 0  # ids removed by drop-conflicting

    def __len__(self) -> int:
        return len(self.ids)

    def as_mapping(self) -> dict[str, int]:
        return dict(zip(self.ids, self.failed.tolist(), strict=True))

    def id_list(self) -> list[str]:
        return list(self.ids)


def parse_failure(value: str) -> int | None:
    text = value.strip().lower()
    if text in TRUE_VALUES:
        return 1
    if text in FALSE_VALUES:
        return 0
    return None


def load_records(spec: InputSpec) -> CompanyRecords:
    """Read, check and de-duplicate one company's records.

    One pass keeps the ids compactly and detects repeats through 16-byte digests
    (held in memory only, for this check); only a file with repeats is read again,
    to apply the duplicate policy or explain the refusal.
    """
    blob, offsets, failed, digests = bytearray(), array("q", [0]), bytearray(), bytearray()
    for _, record_id, bit in _read_rows(spec):
        raw = record_id.encode()
        blob += raw
        offsets.append(len(blob))
        failed.append(bit)
        digests += hashlib.blake2b(raw, digest_size=16).digest()
    if not failed:
        raise InputError(
            "holds a header but no records", where=str(spec.path), hint="give at least one record"
        )
    keys = np.sort(np.frombuffer(digests, dtype="S16"))
    del digests
    if len(keys) > 1 and bool((keys[1:] == keys[:-1]).any()):
        return _apply_duplicate_policy(spec, _read_rows(spec))
    ids = IdColumn(blob, np.frombuffer(offsets, dtype=np.int64))
    return CompanyRecords(ids=ids, failed=np.frombuffer(failed, dtype=np.uint8), rows_read=len(failed))


def _file_format(spec: InputSpec) -> str:
    if spec.file_format != "auto":
        if spec.file_format not in ("csv", "parquet"):
            raise InputError(
                f"unknown format {spec.file_format!r}",
                where=str(spec.path),
                hint="use csv or parquet",
            )
        return spec.file_format
    return "parquet" if spec.path.suffix.lower() in (".parquet", ".pq") else "csv"


def _read_rows(spec: InputSpec) -> Iterator[tuple[int, str, int]]:
    """Checked (line, id, failed) rows, one at a time (a million rows are never all held)."""
    if not spec.path.exists():
        raise InputError("file not found", where=str(spec.path), hint="check the path")
    if spec.path.is_dir():
        raise InputError("is a folder, not a file", where=str(spec.path))
    reader = _parquet_rows if _file_format(spec) == "parquet" else _csv_rows
    for where, line, raw_id, raw_failed in reader(spec):
        yield _check_row(spec, where, line, raw_id, raw_failed)


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


def _csv_rows(spec: InputSpec) -> Iterator[tuple[str, int, Any, Any]]:
    try:
        handle = spec.path.open("r", encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise InputError(f"cannot be read ({exc.strerror})", where=str(spec.path)) from None
    with handle:
        reader = csv.reader(_decoded_lines(handle, spec.path))
        header = _csv_header(spec, reader)
        id_at, failed_at = header.index(spec.id_column), header.index(spec.failure_column)
        try:
            for fields in reader:
                if not fields or fields == [""]:
                    continue
                if len(fields) != len(header):
                    raise InputError(
                        f"has {len(fields)} fields, the header has {len(header)}",
                        where=f"{spec.path}:{reader.line_num}",
                    )
                yield f"{spec.path}:{reader.line_num}", reader.line_num, fields[id_at], fields[failed_at]
        except csv.Error as exc:
            raise InputError(f"is not valid CSV ({exc})", where=f"{spec.path}:{reader.line_num}") from None


def _decoded_lines(handle: Iterable[str], path: Path) -> Iterator[str]:
    line_number = 0
    try:
        for line_number, line in enumerate(handle, start=1):
            if "\x00" in line:
                raise InputError("contains a NUL byte; is it a text CSV?", where=f"{path}:{line_number}")
            yield line
    except UnicodeDecodeError as exc:
        raise InputError(
            f"is not UTF-8 text ({exc.reason})",
            where=f"{path}:{line_number + 1}",
            hint="save the file as UTF-8, or give a Parquet file",
        ) from None
    except OSError as exc:
        raise InputError(f"cannot be read ({exc.strerror})", where=f"{path}:{line_number + 1}") from None


def _csv_header(spec: InputSpec, reader: Any) -> list[str]:
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise InputError("is empty: no header and no records", where=str(spec.path)) from None
    except csv.Error as exc:
        raise InputError(f"is not valid CSV ({exc})", where=f"{spec.path}:1") from None
    for column in (spec.id_column, spec.failure_column):
        if column not in header:
            raise InputError(
                f"has no column {column!r} (columns: {', '.join(header) or 'none'})",
                where=f"{spec.path}:1",
                hint="name the columns with id_column / failure_column (--id-column, --failure-column)",
            )
        if header.count(column) > 1:
            raise InputError(f"names column {column!r} twice", where=f"{spec.path}:1")
    return header


def _parquet_rows(spec: InputSpec) -> Iterator[tuple[str, int, Any, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(spec.path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"is not a readable Parquet file ({exc})", where=str(spec.path)) from None
    for column in (spec.id_column, spec.failure_column):
        if column not in schema.names:
            raise InputError(
                f"has no column {column!r} (columns: {', '.join(schema.names)})",
                where=str(spec.path),
                hint="name the columns with id_column / failure_column (--id-column, --failure-column)",
            )
    try:
        table = pq.read_table(spec.path, columns=[spec.id_column, spec.failure_column])
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"is not a readable Parquet file ({exc})", where=str(spec.path)) from None
    ids = table.column(spec.id_column).to_pylist()
    failures = table.column(spec.failure_column).to_pylist()
    # Parquet has no lines: "row N" counts records from 1.
    for row, (raw_id, raw_failed) in enumerate(zip(ids, failures, strict=True), start=1):
        yield f"{spec.path}, row {row}", row, raw_id, raw_failed


def _apply_duplicate_policy(spec: InputSpec, rows: Iterator[tuple[int, str, int]]) -> CompanyRecords:
    """The second pass, for a file `load_records` found repeats in (so it has rows)."""
    first: dict[str, int] = {}
    repeats: dict[str, list[tuple[int, int]]] = {}
    rows_read = 0
    for line, record_id, failed in rows:
        rows_read += 1
        if record_id not in first:
            first[record_id] = failed
        else:
            repeats.setdefault(record_id, []).append((line, failed))
    conflicting = {i for i, seen in repeats.items() if any(f != first[i] for _, f in seen)}
    if repeats and spec.duplicates == DuplicatePolicy.REFUSE:
        raise _duplicate_error(spec, len(first), rows_read, repeats, conflicting)
    if spec.duplicates == DuplicatePolicy.ANY_FAILED:
        for record_id, seen in repeats.items():
            first[record_id] |= max(f for _, f in seen)
    dropped = conflicting if spec.duplicates == DuplicatePolicy.DROP_CONFLICTING else set()
    ids = [i for i in first if i not in dropped]
    if not ids:
        raise InputError("no records are left after dropping conflicting ids", where=str(spec.path))
    failure_bits = np.fromiter((first[i] for i in ids), dtype=np.uint8, count=len(ids))
    return CompanyRecords(
        ids=IdColumn.from_strings(ids),
        failed=failure_bits,
        rows_read=rows_read,
        rows_merged=sum(len(seen) for seen in repeats.values()),
        ids_dropped=len(first) - len(ids),
    )


def _duplicate_error(
    spec: InputSpec,
    distinct: int,
    rows_read: int,
    repeats: dict[str, list[tuple[int, int]]],
    conflicting: set[str],
) -> InputError:
    shown = list(repeats)[:_EXAMPLES]
    first_line: dict[str, tuple[int, int]] = {}
    for line, record_id, failed in _read_rows(spec):  # a second pass, on this error path only
        if record_id in shown and record_id not in first_line:
            first_line[record_id] = (line, failed)
    examples = []
    for record_id in shown:
        seen = [first_line[record_id], *repeats[record_id]]
        where = ", ".join(f"line {line}: {failed}" for line, failed in seen[:4])
        examples.append(f"    {record_id!r} ({where}{', ...' if len(seen) > 4 else ''})")
    extra_rows = sum(len(seen) for seen in repeats.values())
    message = (
        f"{distinct} distinct ids in {rows_read} rows: "
        f"{len(repeats)} ids appear on more than one row ({extra_rows} repeated rows); "
        f"{len(conflicting)} of them with conflicting failure values. Examples:\n" + "\n".join(examples)
    )
    return InputError(
        message,
        where=str(spec.path),
        hint="make ids unique, or choose a duplicate policy: duplicates = "
        "'keep-first' | 'any-failed' | 'drop-conflicting' (--duplicates; see README)",
    )
