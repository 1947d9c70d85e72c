"""Reading a company's input: every problem named by file, line and field."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import example, write_csv

from monoculture.core.dataset import DuplicatePolicy, InputSpec, load_records
from monoculture.core.errors import InputError


def _load(path: Path, **options: object) -> object:
    return load_records(InputSpec(path, **options))  # type: ignore[arg-type]


def test_reads_ids_and_failures_in_file_order(tmp: Path) -> None:
    path = write_csv(tmp / "a.csv", [("x", 1), ("y", "0"), ("z", "TRUE"), ("w", "false")])
    records = load_records(InputSpec(path))
    assert list(records.ids) == ["x", "y", "z", "w"]
    assert records.failed.tolist() == [1, 0, 1, 0]


def test_custom_columns(tmp: Path) -> None:
    path = tmp / "a.csv"
    path.write_text("customer,outcome_wrong,extra\nx,1,q\ny,0,r\n")
    records = load_records(InputSpec(path, id_column="customer", failure_column="outcome_wrong"))
    assert records.as_mapping() == {"x": 1, "y": 0}


def test_byte_order_mark_is_accepted(tmp: Path) -> None:
    path = tmp / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbfid,failed\nx,1\n")
    assert load_records(InputSpec(path)).as_mapping() == {"x": 1}


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "is empty: no header"),
        (b"id,failed\n", "header but no records"),
        (b"name,failed\nx,1\n", "has no column 'id' \\(columns: name, failed\\)"),
        (b"id,wrong\nx,1\n", "has no column 'failed'"),
        (b"id,failed\nx,2\n", ":2: column 'failed' is '2'"),
        (b"id,failed\nx,1\ny,yes\n", ":3: column 'failed' is 'yes'"),
        (b"id,failed\nx,NaN\n", "column 'failed' is 'NaN'"),
        (b"id,failed\nx,\n", "column 'failed' is ''"),
        (b"id,failed\n,1\n", ":2: column 'id' is empty"),
        (b"id,failed\nx,1,extra\n", ":2: has 3 fields, the header has 2"),
        (b"id,failed\nx,1\n\xff\xfe,0\n", "is not UTF-8"),
        (b"id,failed\nx\x00,1\n", "NUL byte"),
        (b"id,id,failed\nx,y,1\n", "names column 'id' twice"),
        (b'id,failed\n"x,1\n', "field|fields|CSV"),
    ],
)
def test_bad_csv_input_is_named(tmp: Path, content: bytes, match: str) -> None:
    path = tmp / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(InputError, match=match) as caught:
        _load(path)
    assert str(path) in str(caught.value)


def test_huge_ids_are_refused_with_the_limit(tmp: Path) -> None:
    path = write_csv(tmp / "a.csv", [("x" * 5000, 1)])
    with pytest.raises(InputError, match="5000 characters long, above the limit of 1024"):
        _load(path)


def test_missing_and_unreadable_files(tmp: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        _load(tmp / "nope.csv")
    with pytest.raises(InputError, match="is a folder"):
        _load(tmp)
    broken = tmp / "broken.csv"
    broken.symlink_to(tmp / "gone.csv")
    with pytest.raises(InputError, match="file not found"):
        _load(broken)
    # A file whose bytes cannot be read (EIO), whoever runs the test.
    with pytest.raises(InputError, match="cannot be read"):
        _load(Path("/proc/self/mem"))


def test_real_duplicate_ids_are_refused_with_counts_and_examples() -> None:
    # shared data, folder "command": 64,727 rows, 6,418 distinct ids, 2,707 with conflicting outcomes.
    with pytest.raises(InputError) as caught:
        _load(example("command", "google"))
    text = caught.value.diagnostics()
    assert "6418 distinct ids in 64727 rows" in text
    assert "5308 ids appear on more than one row (58309 repeated rows)" in text
    assert "2707 of them with conflicting failure values" in text
    assert "Examples:" in text and "line " in text
    assert "keep-first" in text and "drop-conflicting" in text


def test_duplicate_policies(tmp: Path) -> None:
    rows = [("a", 0), ("b", 1), ("a", 1), ("c", 1), ("c", 1), ("b", 1)]
    path = write_csv(tmp / "dup.csv", rows)
    first = load_records(InputSpec(path, duplicates=DuplicatePolicy.KEEP_FIRST))
    assert first.as_mapping() == {"a": 0, "b": 1, "c": 1} and first.rows_merged == 3
    anyf = load_records(InputSpec(path, duplicates=DuplicatePolicy.ANY_FAILED))
    assert anyf.as_mapping() == {"a": 1, "b": 1, "c": 1}
    drop = load_records(InputSpec(path, duplicates=DuplicatePolicy.DROP_CONFLICTING))
    assert drop.as_mapping() == {"b": 1, "c": 1} and drop.ids_dropped == 1


def test_real_duplicates_with_an_explicit_policy() -> None:
    records = load_records(
        InputSpec(example("command", "google"), duplicates=DuplicatePolicy.DROP_CONFLICTING)
    )
    assert len(records) == 6418 - 2707


def test_parquet_input(tmp: Path) -> None:
    path = tmp / "a.parquet"
    pq.write_table(pa.table({"id": ["x", "y", "z"], "failed": [True, False, True]}), path)
    assert load_records(InputSpec(path)).as_mapping() == {"x": 1, "y": 0, "z": 1}
    ints = tmp / "b.parquet"
    pq.write_table(pa.table({"id": [10, 11], "failed": [0, 1]}), ints)
    assert load_records(InputSpec(ints)).as_mapping() == {"10": 0, "11": 1}


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ({"id": ["x", None], "failed": [1, 0]}, "row 2: column 'id' is empty"),
        ({"id": ["x", "y"], "failed": [1.0, float("nan")]}, "column 'failed' is nan"),
        ({"id": ["x", "y"], "failed": [1, 3]}, "row 2: column 'failed' is 3"),
        ({"id": ["x", "y"], "failed": ["1", "maybe"]}, "column 'failed' is 'maybe'"),
        ({"id": [1.5, 2.5], "failed": [1, 0]}, "holds a float"),
        ({"key": ["x"], "failed": [1]}, "has no column 'id'"),
    ],
)
def test_bad_parquet_input_is_named(tmp: Path, table: dict, match: str) -> None:
    path = tmp / "bad.parquet"
    pq.write_table(pa.table(table), path)
    with pytest.raises(InputError, match=match):
        _load(path)


def test_a_csv_named_parquet_is_refused(tmp: Path) -> None:
    path = write_csv(tmp / "a.parquet", [("x", 1)])
    with pytest.raises(InputError, match="not a readable Parquet file"):
        _load(path)
