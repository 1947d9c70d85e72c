"""Progress of long work, shown where a person watches it.

A company daemon reports each long step (blinding its list, relaying another's, encrypting or
re-randomising tags) three ways:
- a bar on its terminal, when its standard error is one (`monoculture client run` by hand);
- otherwise a log line about every tenth of the way, for steps of at least 50,000 elements;
- a small file in its own state folder (`progress.json`), which `monoculture simulate`, running
  every daemon on one machine, draws as one bar per company.

What is shown is the company's own work on lists it holds anyway: a step's name, elements done and
their total. No id, tag or failure bit is ever in it, and the file stays beside the company's keys.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

PROGRESS_FILE = "progress.json"
LOG_MINIMUM = 50_000  # steps this short are not worth a log line
FILE_INTERVAL_S = 0.2  # the file is rewritten at most this often (and at the end of a step)


@dataclass(frozen=True)
class StepState:
    """One step's progress as its file holds it."""

    what: str
    done: int
    total: int

    @property
    def finished(self) -> bool:
        return self.done >= self.total


def read_step(path: Path) -> StepState | None:
    """The step a progress file describes; None while there is none or it is being replaced."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return StepState(str(raw["what"]), int(raw["done"]), int(raw["total"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_step(path: Path, state: StepState) -> None:
    """Atomically, so a reader never sees half a file."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps({"what": state.what, "done": state.done, "total": state.total}))
    os.replace(temporary, path)


class StepProgress:
    """The progress of one long step (a `Progress` callable: done, total).

    `interactive`: draw a bar on `stream` (standard error by default) instead of log lines.
    `board`: also keep the step's state in this file. `clock` paces the file's rewrites.
    """

    def __init__(
        self,
        what: str,
        *,
        log: logging.Logger,
        interactive: bool = False,
        board: Path | None = None,
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self._log = log
        self._interactive = interactive
        self._board = board
        self._stream = stream
        self._clock = clock
        self._next_log = 0.1
        self._written_at = float("-inf")
        self._bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        finished = done >= total
        if self._interactive:
            self._draw(done, total, finished)
        elif total >= LOG_MINIMUM and (finished or done / total >= self._next_log):
            self._log.info("%s: %d / %d (%.0f%%)", self.what, done, total, 100 * done / total)
            self._next_log = done / total + 0.1
        if self._board is not None and (finished or self._clock() - self._written_at >= FILE_INTERVAL_S):
            self._written_at = self._clock()
            try:
                _write_step(self._board, StepState(self.what, done, total))
            except OSError as exc:  # progress is never worth failing a round for
                self._log.debug("progress file %s not written: %s", self._board, exc)
                self._board = None

    def _draw(self, done: int, total: int, finished: bool) -> None:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, desc=self.what, unit=" el", unit_scale=True, file=self._stream, **_screen()
            )
        self._bar.update(done - self._bar.n)
        if finished:
            self._bar.close()


def _screen() -> dict[str, int]:
    """The terminal's width and height for tqdm (80 by 24 where it cannot tell, or says 0 as a new
    pseudo-terminal does: tqdm would then hide every bar)."""
    import shutil

    size = shutil.get_terminal_size((80, 24))
    return {"ncols": size.columns or 80, "nrows": size.lines or 24}


def stderr_is_terminal() -> bool:
    import sys

    return sys.stderr.isatty()


def _short(what: str, company: str) -> str:
    """A step's name without the company and round the board already shows."""
    what = what.removeprefix(f"{company}: ")
    return what.split(": ", 1)[1] if what.startswith("round ") and ": " in what else what


class ProgressBoard:
    """Bars drawn from the progress files of daemons running on this machine (`simulate`): one for
    the round (list hops done), one per company (its current step)."""

    def __init__(self, boards: Sequence[tuple[str, Path]], stream: IO[str] | None = None) -> None:
        from tqdm import tqdm

        self._boards = list(boards)
        screen = _screen()
        self._round = tqdm(total=0, desc="round", unit=" hops", file=stream, position=0, **screen)
        self._bars = [
            tqdm(total=0, desc=name, unit=" el", unit_scale=True, file=stream, position=i + 1, **screen)
            for i, (name, _) in enumerate(self._boards)
        ]

    def show(self, phase: str, hops_done: int, hops_total: int) -> None:
        self._round.set_description_str(f"round: {phase}", refresh=False)
        self._round.total = hops_total
        self._round.n = hops_done
        self._round.refresh()
        for bar, (name, path) in zip(self._bars, self._boards, strict=True):
            step = read_step(path)
            if step is None:
                continue
            bar.set_description_str(f"{name}: {_short(step.what, name)}", refresh=False)
            bar.total = step.total
            bar.n = step.done
            bar.refresh()

    def close(self) -> None:
        for bar in [self._round, *self._bars]:
            bar.close()
