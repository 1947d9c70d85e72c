from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "api-predictions"


def example(folder: str, company: str) -> Path:
    return EXAMPLES / folder / f"{company}.csv"


def write_csv(path: Path, rows: list[tuple[str, object]], header: str = "id,failed") -> Path:
    path.write_text(header + "\n" + "".join(f"{i},{f}\n" for i, f in rows), encoding="utf-8")
    return path


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path
