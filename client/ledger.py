"""The company's own privacy ledger: what it has spent per roster, across rounds and restarts.

One JSON file in the state folder, `privacy-ledger.json` (mode 0600), rewritten atomically
(a temporary file, fsync, rename, fsync of the folder) whenever a round is charged. A round
is charged once, when the company enrols (conservative: a round it joined may release,
whatever the coordinator says later), keyed by its id, so a restarted daemon that enrols
again does not pay twice. It holds round ids, rosters, epsilons, deltas and times: never an
id of a person, never data. The arithmetic is `monoculture.analysis.budget`.
"""

from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path
from typing import Any

from monoculture.analysis.budget import Ledger, RoundCost
from monoculture.client.state import make_state_folder
from monoculture.core.errors import ConfigError
from monoculture.core.sealing import write_secret_file

LEDGER_FILE = "privacy-ledger.json"
_VERSION = 1


class PrivacyLedger:
    """The rounds this company has been charged for, by roster (`analysis.budget.roster_key`)."""

    def __init__(self, folder: Path, cap: float = math.inf, total_cap: float = math.inf) -> None:
        """Reads the ledger in `folder` (none yet: empty); `cap` is [release_floor]
        max_epsilon_per_roster, `total_cap` max_epsilon_total. A file that cannot be read is a
        ConfigError: a daemon that lost count must not go on spending."""
        make_state_folder(folder)
        self.path = folder / LEDGER_FILE
        self._cap = cap
        self._total_cap = total_cap
        self._lock = threading.Lock()
        self._rosters = self._read()

    def _read(self) -> dict[str, dict[str, dict[str, float]]]:
        if not self.path.exists():
            return {}
        try:
            document: Any = json.loads(self.path.read_text(encoding="utf-8"))
            if document.get("version") != _VERSION:
                raise ValueError(f"version {document.get('version')!r}, expected {_VERSION}")
            rosters = document["rosters"]
            return {
                str(roster): {
                    str(round_id): {"epsilon": float(entry["epsilon"]), "delta": float(entry["delta"]),
                                    "at": float(entry["at"])}
                    for round_id, entry in rounds.items()
                }
                for roster, rounds in rosters.items()
            }  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(
                f"the privacy ledger cannot be read ({exc})",
                where=str(self.path),
                hint="restore it from a backup; deleting it forgets what this company has spent",
            ) from None

    def ledger(self, roster: str, *, excluding: str = "") -> Ledger:
        """What `roster` has spent against the cap, leaving out round `excluding` (the one being
        checked, which a restarted daemon may already have paid for)."""
        with self._lock:
            rounds = [e for r, e in self._rosters.get(roster, {}).items() if r != excluding]
        return Ledger(
            spent=math.fsum(e["epsilon"] for e in rounds),
            cap=self._cap,
            spent_delta=math.fsum(e["delta"] for e in rounds),
            rounds=len(rounds),
        )

    def total(self, *, excluding: str = "") -> Ledger:
        """What this company has spent over every roster together, against `total_cap`."""
        with self._lock:
            rounds = [e for rs in self._rosters.values() for r, e in rs.items() if r != excluding]
        return Ledger(
            spent=math.fsum(e["epsilon"] for e in rounds),
            cap=self._total_cap,
            spent_delta=math.fsum(e["delta"] for e in rounds),
            rounds=len(rounds),
        )

    def knows(self, round_id: str) -> bool:
        """Whether this company was ever charged for `round_id`, under any roster: a round id
        is joined once, so the ledger is also the memory of the rounds it has taken part in."""
        with self._lock:
            return any(round_id in rounds for rounds in self._rosters.values())

    def charged(self, roster: str, round_id: str) -> bool:
        with self._lock:
            return round_id in self._rosters.get(roster, {})

    def charge(self, roster: str, round_id: str, cost: RoundCost, at: float) -> None:
        """Record that this company spends `cost` on round `round_id` of `roster` (once), on disk
        before returning."""
        with self._lock:
            rounds = self._rosters.setdefault(roster, {})
            if round_id in rounds:
                return
            rounds[round_id] = {"epsilon": cost.epsilon, "delta": cost.delta, "at": at}
            self._write()

    def _write(self) -> None:
        text = json.dumps({"version": _VERSION, "rosters": self._rosters}, indent=1, sort_keys=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        write_secret_file(tmp, text.encode())
        tmp.replace(self.path)
        folder = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)  # the rename itself survives a power cut
        finally:
            os.close(folder)
