"""`Result`: one released result JSON, as a researcher uses it in Python.

The figures are attributes (`homogenization`, `failure_rates`, ...), tables come as pandas
DataFrames (`to_frame`, `patterns`, `pairwise`, `groups`), and the plots return matplotlib
objects (`plot_*`, drawn by monoculture.report.plots, the same figures as the HTML report).
Nothing is computed here that the coordinator does not compute: every figure is read from the
result JSON (docs/STATISTICS.md, "Result JSON"), so a round's result and a plaintext one read alike.
pandas and matplotlib are imported on first use.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schemas" / "result.schema.json"


def result_schema() -> dict[str, Any]:
    """The JSON Schema of a result (version `schema_version`), shipped with the package:
    monoculture/schemas/result.schema.json (tests/vectors/PROVENANCE.md says how it was made)."""
    schema: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return schema


class Result:
    """A result JSON with its figures as attributes; `raw` is the JSON itself."""

    def __init__(self, raw: dict[str, Any], *, private: bool = False) -> None:
        self.raw = raw
        self.private = private

    # ------------------------------------------------------------ reading

    @classmethod
    def from_json(cls, source: str | Path) -> Result:
        """A result read from a file (`monoculture simulate --out`, `round result`)."""
        from monoculture.core.errors import InputError

        path = Path(source)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError("file not found", where=str(path)) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"is not a result JSON ({exc})", where=str(path)) from None
        if not isinstance(raw, dict) or "companies" not in raw:
            raise InputError("is not a result JSON (no 'companies')", where=str(path))
        return cls(raw)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.raw)

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.raw, indent=2)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    # ------------------------------------------------------------ figures

    @property
    def companies(self) -> list[str]:
        return list(self.raw["companies"])

    @property
    def withheld(self) -> bool:
        """The release policy withheld the whole result (only the roster and the reason)."""
        return bool(self.raw.get("suppressed"))

    @property
    def shared_individuals(self) -> int | None:
        return self.raw.get("shared_individuals")

    @property
    def failure_rates(self) -> dict[str, float | None]:
        return dict(self.raw.get("failure_rates") or {})

    @property
    def systemic_failure_rate(self) -> float | None:
        return self.raw.get("systemic_failure_rate")

    @property
    def expected_systemic_failure_rate(self) -> float | None:
        return self.raw.get("expected_systemic_failure_rate")

    @property
    def homogenization(self) -> float | None:
        return self.raw.get("homogenization")

    @property
    def homogenization_ci95(self) -> tuple[float, float] | None:
        ci = self.raw.get("homogenization_ci95")
        return None if ci is None else (ci[0], ci[1])

    @property
    def noisy(self) -> bool:
        return bool(self.raw.get("noisy"))

    def __repr__(self) -> str:
        if self.withheld:
            return f"Result(companies={self.companies}, withheld: {self.raw.get('suppression_reason')})"
        h = self.homogenization
        shown = "undefined" if h is None else f"{h:.4g}"
        return f"Result(companies={self.companies}, N={self.shared_individuals}, H={shown})"

    # ------------------------------------------------------------ tables

    def to_frame(self) -> Any:
        """One row per company: failures, failure rate and its 95% interval (pandas)."""
        import pandas as pd

        intervals = self.raw.get("failure_rate_ci95") or {}
        rows = []
        for name in self.companies:
            ci = intervals.get(name) or [None, None]
            rows.append({
                "company": name,
                "failures": (self.raw.get("failures") or {}).get(name),
                "failure_rate": self.failure_rates.get(name),
                "ci95_low": ci[0],
                "ci95_high": ci[1],
            })  # fmt: skip
        return pd.DataFrame(rows).set_index("company")

    def patterns(self) -> Any:
        """The 2^k pattern table: one row per pattern, a column per company (1 = failed) and the
        count (None where the release withheld it)."""
        import pandas as pd

        counts = self.raw.get("pattern_counts") or {}
        rows = [
            {**{name: int(bit) for name, bit in zip(self.companies, pattern, strict=True)}, "count": count}
            for pattern, count in counts.items()
        ]
        return pd.DataFrame(rows, columns=[*self.companies, "count"])

    def pairwise(self) -> Any:
        """Pairwise H as a symmetric companies x companies DataFrame (the diagonal empty)."""
        import pandas as pd

        frame = pd.DataFrame(index=self.companies, columns=self.companies, dtype=float)
        for key, value in (self.raw.get("pairwise_homogenization") or {}).items():
            a, b = key.split(",")
            frame.loc[a, b] = frame.loc[b, a] = value
        return frame

    def groups(self) -> Any:
        """Per declared group: N, S, H and each company's failure rate (empty without groups)."""
        import pandas as pd

        rows = []
        for label, group in (self.raw.get("groups") or {}).items():
            row: dict[str, Any] = {"group": label, "withheld": bool(group.get("suppressed"))}
            if not group.get("suppressed"):
                row["shared_individuals"] = group.get("shared_individuals")
                row["systemic_failure_rate"] = group.get("systemic_failure_rate")
                row["homogenization"] = group.get("homogenization")
                for name, rate in (group.get("failure_rates") or {}).items():
                    row[f"failure_rate:{name}"] = rate
            rows.append(row)
        return pd.DataFrame(rows).set_index("group") if rows else pd.DataFrame()

    def compare(self, newer: Result, *, upstream_improved: bool = False) -> dict[str, Any]:
        """From this result to `newer`: each change with its interval, and the self-defeating
        improvement flags (analysis.compare.compare_results; `round compare` prints the same)."""
        from monoculture.analysis.compare import compare_results

        return compare_results(self.raw, newer.raw, upstream_improved)

    # ------------------------------------------------------------ plots

    def plot_failure_rates(self, ax: Any = None) -> Any:
        from monoculture.report import plots

        return plots.failure_rates(self.raw, ax)

    def plot_failure_histogram(self, ax: Any = None) -> Any:
        from monoculture.report import plots

        return plots.failure_histogram(self.raw, ax)

    def plot_pairwise(self, ax: Any = None) -> Any:
        from monoculture.report import plots

        return plots.pairwise_heatmap(self.raw, ax)

    def plot_patterns(self) -> Any:
        """The 2^k pattern table as an UpSet plot (a matplotlib Figure)."""
        from monoculture.report import plots

        return plots.upset(self.raw)
