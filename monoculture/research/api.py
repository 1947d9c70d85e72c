"""`monoculture.measure`: the workbench's one function, for scripts and notebooks.

    import monoculture
    result = monoculture.measure({"google": df_g, "microsoft": "ms.csv", "ibm": (ids, failed)})
    result.homogenization, result.to_frame(), result.plot_failure_rates()

Each company's data is a file (CSV or Parquet, read as the daemon reads it), a pandas DataFrame,
a mapping {id: failed}, or a pair or triple of arrays (ids, failed[, groups]). In-memory data is
written to a private temporary folder (0700) and read back through the same reader as a file, so
a bad value gets the same error as on the command line, naming the company and the row. Without
`private` the figures are computed in the clear (`plaintext`); with `private=True` the real round
runs: one coordinator and one daemon process per company, over mutual TLS on loopback, with
certificates made for the run (monoculture.research.simulate.run_round). Both give the same
figures (tests/test_api.py), and every process and temporary file is gone when it returns.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monoculture.analysis.groups import plaintext_group_tables, with_groups
from monoculture.analysis.metrics import result_dict
from monoculture.analysis.release import ReleasePolicy, release
from monoculture.analysis.table import plaintext_table
from monoculture.core.dataset import CompanyRecords, InputSpec, load_records
from monoculture.core.errors import ConfigError, MonocultureError
from monoculture.research.result import Result

CompanyData = Any  # a path, a DataFrame, a mapping {id: failed} or arrays (ids, failed[, groups])


def measure(
    data: Mapping[str, CompanyData],
    *,
    id_column: str = "id",
    failure_column: str = "failed",
    group_column: str | None = None,
    groups_from: str | None = None,
    group_labels: Sequence[str] | None = None,
    private: bool = False,
    release_policy: ReleasePolicy | None = None,
    rerandomise: bool = False,
    timeout: float = 600.0,
) -> Result:
    """Measure homogenization across the companies of `data` (a mapping, roster order).

    `id_column`, `failure_column`, `group_column`: the columns of files and DataFrames.
    `groups_from`: the company whose groups define the group figures (avg, unif, worst), with
    `group_labels` in order (default: that company's labels, sorted). `private`: run the real
    multi-process round (default: plaintext). `release_policy`: what the result may show
    (default: everything, exactly). `rerandomise`: re-randomised failure tags (private only).
    Bad input raises a MonocultureError naming the company and the row or field at fault.
    """
    if not isinstance(data, Mapping) or len(data) < 2:
        raise ConfigError(
            "measure needs a mapping of at least two companies to their data",
            hint='e.g. measure({"a": df_a, "b": "b.csv"})',
        )
    if groups_from is not None and groups_from not in data:
        raise ConfigError(f"groups_from {groups_from!r} is not one of the companies: {', '.join(data)}")
    if groups_from is not None and group_column is None:
        group_column = "group"
    if rerandomise and not private:
        raise ConfigError("rerandomise applies to the private round", hint="pass private=True as well")
    policy = release_policy or ReleasePolicy()
    policy.check()
    with tempfile.TemporaryDirectory(prefix="monoculture-") as folder:
        os.chmod(folder, 0o700)
        specs = {
            name: _spec(name, value, Path(folder), id_column, failure_column,
                        group_column if name == groups_from else None)
            for name, value in data.items()
        }  # fmt: skip
        # Read and checked once, before any process starts: the private round gets the CLI's errors
        # (naming the company and row) and the plaintext figures are counted from these records.
        records = {name: _records(name, spec, groups=name == groups_from) for name, spec in specs.items()}
        labels = _labels(records, specs, groups_from, group_labels)
        if private:
            raw = _private(specs, Path(folder), policy, groups_from or "", labels, rerandomise, timeout)
        else:
            raw = plaintext_result(records, groups_from or "", labels, policy)
    return Result(raw, private=private)


def _spec(
    name: str, value: CompanyData, folder: Path, id_column: str, failure_column: str, group_column: str | None
) -> InputSpec:
    """Where the company's records are: its own file, or this run's copy of in-memory data."""
    if isinstance(value, str | os.PathLike):
        return InputSpec(Path(value), id_column, failure_column, group_column=group_column)
    path = folder / f"{_safe(name)}.parquet"
    _write_parquet(name, value, path, id_column, failure_column, group_column)
    return InputSpec(path, id_column, failure_column, "parquet", group_column=group_column)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "company"


def _write_parquet(
    name: str, value: CompanyData, path: Path, id_column: str, failure_column: str, group_column: str | None
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = _columns(name, value, id_column, failure_column, group_column)
    try:
        pq.write_table(pa.table(columns), path)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise ConfigError(
            f"its data cannot be read as columns of ids and failures ({exc})", where=f"company {name}"
        ) from None


def _columns(
    name: str, value: CompanyData, id_column: str, failure_column: str, group_column: str | None
) -> dict[str, list[Any]]:
    """The company's columns as lists: from a DataFrame, a mapping or a tuple of arrays."""
    if hasattr(value, "columns") and hasattr(value, "__getitem__"):  # a pandas DataFrame
        wanted = [id_column, failure_column] + ([group_column] if group_column else [])
        missing = [c for c in wanted if c not in value.columns]
        if missing:
            raise ConfigError(
                f"its DataFrame has no column {missing[0]!r} (columns: {', '.join(map(str, value.columns))})",
                where=f"company {name}",
                hint="name the columns with id_column=, failure_column=, group_column=",
            )
        return {c: [_plain(v) for v in value[c].tolist()] for c in wanted}
    if isinstance(value, Mapping):
        return {id_column: list(value), failure_column: [_plain(v) for v in value.values()]}
    if isinstance(value, tuple | list) and len(value) in (2, 3):
        arrays = [[_plain(v) for v in list(a)] for a in value]
        if len({len(a) for a in arrays}) != 1:
            raise ConfigError(
                f"its arrays differ in length ({', '.join(str(len(a)) for a in arrays)})",
                where=f"company {name}",
                hint="give (ids, failed) or (ids, failed, groups) of equal length",
            )
        columns = {id_column: arrays[0], failure_column: arrays[1]}
        if len(arrays) == 3:
            columns[group_column or "group"] = arrays[2]
        return columns
    raise ConfigError(
        f"its data is a {type(value).__name__}",
        where=f"company {name}",
        hint="give a file path, a DataFrame, a mapping {id: failed} or arrays (ids, failed[, groups])",
    )


def _plain(value: Any) -> Any:
    """numpy and pandas scalars as Python values (Parquet keeps ints as ints, text as text)."""
    item = getattr(value, "item", None)
    value = item() if callable(item) else value
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _labels(
    records: Mapping[str, CompanyRecords],
    specs: Mapping[str, InputSpec],
    groups_from: str | None,
    given: Sequence[str] | None,
) -> tuple[str, ...]:
    """The declared labels (default: those of the groups company's data, sorted), each label of
    its data among them."""
    if not groups_from:
        return ()
    column = records[groups_from].groups
    assert column is not None  # read with groups=True
    labels = tuple(given) if given is not None else tuple(sorted(set(column.labels)))
    try:
        column.round_codes(labels, where=specs[groups_from].origin)
    except MonocultureError as exc:
        raise _named(exc, groups_from, specs[groups_from]) from None
    return labels


def _records(name: str, spec: InputSpec, groups: bool = False) -> CompanyRecords:
    try:
        return load_records(spec, groups=groups)
    except MonocultureError as exc:
        raise _named(exc, name, spec) from None


def _named(exc: MonocultureError, name: str, spec: InputSpec) -> MonocultureError:
    """The error as the researcher should read it: a temporary copy is called their data."""
    if (
        spec.path is not None
        and spec.path.suffix == ".parquet"
        and spec.path.parent.name.startswith("monoculture-")
    ):
        exc.where = exc.where.replace(str(spec.path), "the data given")
    return exc.for_party(name)


def plaintext_result(
    records: Mapping[str, CompanyRecords],
    groups_from: str,
    labels: Sequence[str],
    policy: ReleasePolicy | None = None,
) -> dict[str, Any]:
    """The figures of records one holds, in the clear, as a round would give them: the result
    JSON, with group figures when `groups_from` names the company whose labels define them, and
    released under `policy` (None: every figure, as `monoculture plaintext` prints)."""
    names = list(records)
    outcomes = [r.as_mapping() for r in records.values()]
    table = plaintext_table(names, outcomes)
    result = result_dict(table) if policy is None else release(table, policy)
    if groups_from:
        group_of = records[groups_from].group_mapping()
        group_tables = plaintext_group_tables(names, outcomes, groups_from, group_of, labels)
        result = with_groups(result, table, group_tables, policy)
    return result


def _private(
    specs: Mapping[str, InputSpec],
    folder: Path,
    policy: ReleasePolicy,
    groups_from: str,
    labels: Sequence[str],
    rerandomise: bool,
    timeout: float,
) -> dict[str, Any]:
    from monoculture.research.simulate import CompanyInput, run_round

    companies = [CompanyInput(name, spec).resolved() for name, spec in specs.items()]
    run = run_round(
        companies, folder / "round", timeout=timeout, release=policy, groups_from=groups_from,
        group_labels=labels, rerandomise=rerandomise,
    )  # fmt: skip
    return run.result


def compare(old: Result | dict[str, Any] | str | Path, new: Result | dict[str, Any] | str | Path, *,
            upstream_improved: bool = False) -> dict[str, Any]:  # fmt: skip
    """The change from `old` to `new` (Results, result dicts or result JSON files): per company
    the change in fail_i, the change in S and H, each with a 95% interval, and the flags of a
    self-defeating improvement (analysis.compare.compare_results)."""

    def loaded(value: Result | dict[str, Any] | str | Path) -> Result:
        if isinstance(value, Result):
            return value
        return Result(value) if isinstance(value, dict) else Result.from_json(value)

    try:
        return loaded(old).compare(loaded(new), upstream_improved=upstream_improved)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
