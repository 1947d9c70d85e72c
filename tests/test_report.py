"""`monoculture report`: one self-contained HTML page (and Markdown) from a result JSON, rendered
in real headless Chromium where it is installed (.ci/run installs Debian's chromium)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import example

from monoculture.analysis.release import ReleasePolicy, release
from monoculture.analysis.table import PatternTable
from monoculture.report.html import render_html
from monoculture.report.markdown import render_markdown

DIGIT = PatternTable(("google", "microsoft", "ibm"), (576, 20, 5, 1, 858, 199, 54, 287))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _digit_json(tmp_path: Path, policy: ReleasePolicy | None = None) -> Path:
    path = tmp_path / "digit.json"
    path.write_text(json.dumps(release(DIGIT, policy or ReleasePolicy())), encoding="utf-8")
    return path


def _report(tmp_path: Path, result: Path, out: str) -> Path:
    target = tmp_path / out
    done = subprocess.run(
        [sys.executable, "-m", "monoculture", "report", str(result), "--out", str(target)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return target


def _figures(result: dict[str, Any]) -> list[str]:
    """What a reader must find on the page: N, H, S and every company's rate."""
    wanted = [str(result["shared_individuals"]), f"{result['homogenization']:.4g}"]
    wanted += [f"{rate:.4g}" for rate in result["failure_rates"].values()]
    return wanted


def test_the_html_report_is_self_contained_and_says_the_figures(tmp_path: Path) -> None:
    page = _report(tmp_path, _digit_json(tmp_path), "report.html").read_text(encoding="utf-8")
    result = release(DIGIT, ReleasePolicy())
    for figure in _figures(result):
        assert figure in page, figure
    assert page.count('src="data:image/png;base64,') == 4  # rates, histogram, heatmap, UpSet
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched
    assert "<script" not in page and "<link" not in page
    for words in ("How to read this report", "one-sided", "What the release policy did"):
        assert words in page


def test_the_markdown_report_holds_the_same_tables(tmp_path: Path) -> None:
    text = _report(tmp_path, _digit_json(tmp_path), "report.md").read_text(encoding="utf-8")
    assert "| google, microsoft, ibm | 111 | 287 |" in text
    assert "N = 2000" in text and "H = S / prod fail_i = 4.668" in text


def test_withheld_cells_and_noise_are_explained(tmp_path: Path) -> None:
    withheld = render_html(release(DIGIT, ReleasePolicy(min_cell_count=10)))
    assert "Withheld cells:" in withheld and "withheld" in withheld
    noisy = render_markdown(release(DIGIT, ReleasePolicy(mechanism="discrete-laplace", epsilon=1.0)))
    assert "Differential privacy." in noisy and "epsilon 1" in noisy
    below = render_markdown(release(DIGIT, ReleasePolicy(min_shared_individuals=5000)))
    assert "Result withheld" in below and "release minimum" in below


def test_a_file_that_is_not_a_result_gets_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "monoculture", "report", str(bad), "--out", str(tmp_path / "r.html")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "is not a result JSON" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "r.html").exists()


def _chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={cwd / 'chromium-profile'}"]  # fmt: skip
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it as root)"
)
def test_the_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    """The page as a browser shows it: a screenshot that is not blank, and N, H and every
    company's rate in the text of the rendered page (on the real digit example's result)."""
    from PIL import Image

    companies = ["google", "microsoft", "ibm"]
    args = [sys.executable, "-m", "monoculture", "plaintext", "--out", str(tmp_path / "digit.json")]
    for name in companies:
        args += ["--company", f"{name}={example('digit', name)}"]
    assert subprocess.run(args, capture_output=True, timeout=120).returncode == 0
    page = _report(tmp_path, tmp_path / "digit.json", "report.html")
    shot = tmp_path / "shot.png"
    done = _chromium("--window-size=1200,2400", f"--screenshot={shot}", page.as_uri(), cwd=tmp_path)
    assert shot.exists(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.01  # text and plots, not a blank page
    dom = _chromium("--dump-dom", page.as_uri(), cwd=tmp_path).stdout
    text = re.sub(r"<[^>]+>", " ", dom)
    result = json.loads((tmp_path / "digit.json").read_text(encoding="utf-8"))
    for figure in _figures(result):
        assert figure in text, figure
