"""Progress of long steps: log lines, a terminal bar, the daemon's progress file, and the bars
`monoculture simulate` draws from those files on a terminal."""

from __future__ import annotations

import io
import logging
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monoculture.progress import (
    FILE_INTERVAL_S,
    PROGRESS_FILE,
    ProgressBoard,
    StepProgress,
    StepState,
    read_step,
)

log = logging.getLogger("test-progress")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_log_lines_about_every_tenth_for_long_steps(caplog: pytest.LogCaptureFixture) -> None:
    progress = StepProgress("list of a, hop 0", log=log)
    with caplog.at_level(logging.INFO, logger="test-progress"):
        for done in range(0, 100_001, 1_000):
            progress(done, 100_000)
    lines = [r.getMessage() for r in caplog.records]
    assert 9 <= len(lines) <= 11, lines
    assert lines[-1] == "list of a, hop 0: 100000 / 100000 (100%)"


def test_short_steps_log_nothing(caplog: pytest.LogCaptureFixture) -> None:
    progress = StepProgress("list of a, hop 0", log=log)
    with caplog.at_level(logging.INFO, logger="test-progress"):
        for done in range(0, 1_001, 100):
            progress(done, 1_000)
    assert caplog.records == []


def test_the_progress_file_is_paced_and_ends_finished(tmp_path: Path) -> None:
    board, clock = tmp_path / PROGRESS_FILE, FakeClock()
    progress = StepProgress("list of b, hop 1", log=log, board=board, clock=clock)
    progress(10, 100)
    assert read_step(board) == StepState("list of b, hop 1", 10, 100)
    progress(20, 100)  # no time has passed: not rewritten
    assert read_step(board) == StepState("list of b, hop 1", 10, 100)
    clock.now += FILE_INTERVAL_S
    progress(30, 100)
    assert read_step(board) == StepState("list of b, hop 1", 30, 100)
    progress(100, 100)  # the end of a step is always written
    step = read_step(board)
    assert step is not None and step.finished
    assert sorted(p.name for p in tmp_path.iterdir()) == [PROGRESS_FILE]  # no temporary left


def test_an_unwritable_progress_file_does_not_fail_the_step(tmp_path: Path) -> None:
    progress = StepProgress("x", log=log, board=tmp_path / "missing" / PROGRESS_FILE)
    progress(1, 2)
    progress(2, 2)


def test_read_step_of_a_missing_or_torn_file_is_none(tmp_path: Path) -> None:
    assert read_step(tmp_path / PROGRESS_FILE) is None
    (tmp_path / PROGRESS_FILE).write_text('{"what": "x", "do')
    assert read_step(tmp_path / PROGRESS_FILE) is None


def test_an_interactive_step_draws_a_bar() -> None:
    stream = io.StringIO()
    progress = StepProgress("list of c, hop 2", log=log, interactive=True, stream=stream)
    for done in (0, 500, 1_000):
        progress(done, 1_000)
    drawn = stream.getvalue()
    assert "list of c, hop 2" in drawn and "100%" in drawn and "1.00k/1.00k" in drawn


def test_the_board_draws_each_company_from_its_file(tmp_path: Path) -> None:
    files = {name: tmp_path / name / PROGRESS_FILE for name in ("google", "ibm")}
    files["google"].parent.mkdir()
    StepProgress("list of ibm, hop 1", log=log, board=files["google"])(300, 1_200)
    stream = io.StringIO()
    board = ProgressBoard(list(files.items()), stream=stream)
    board.show("RELAYING", 2, 6)
    board.close()
    drawn = stream.getvalue()
    assert "round: RELAYING" in drawn and "2/6" in drawn
    assert "google: list of ibm, hop 1" in drawn and "300/1.20k" in drawn
    assert "ibm" in drawn  # a company with no file yet keeps its empty bar


def _read_terminal(master: int, process: subprocess.Popen[bytes], timeout: float) -> bytes:
    out = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            out += chunk
        elif process.poll() is not None:
            break
    return bytes(out)


@pytest.mark.e2e
def test_simulate_on_a_terminal_shows_bars_and_the_daemons_leave_finished_files(tmp_path: Path) -> None:
    """`simulate` with its standard error on a pseudo-terminal, as a person runs it: a bar for the
    round and one per company; each daemon's progress file ends on a finished step."""
    master, slave = pty.openpty()
    workdir = tmp_path / "run"
    command = [sys.executable, "-P", "-m", "monoculture", "simulate", "--parties", "2",
               "--individuals", "300", "--seed", "1", "--insecure", "--workdir", str(workdir),
               "--out", str(tmp_path / "result.json")]  # fmt: skip
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    try:
        drawn = _read_terminal(master, process, timeout=240).decode("utf-8", "replace")
        stdout, _ = process.communicate(timeout=60)
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, drawn[-2000:]
    assert "round: " in drawn and "hops" in drawn, drawn[-2000:]
    for name in ("company-1", "company-2"):
        assert f"{name}:" in drawn
    steps = [read_step(p / PROGRESS_FILE) for p in sorted(workdir.glob("client-state-*"))]
    assert len(steps) == 2 and all(s is not None and s.finished for s in steps), steps
    assert b"shared" in stdout  # the summary still goes to standard output
