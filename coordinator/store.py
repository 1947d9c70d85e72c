"""The coordinator's durable state: SQLite (standard library), one file.

Tables: rounds (state machine as JSON, the round's tag private key sealed,
the released result), peers (companies' signed public keys), chunks (relayed
list chunks, keyed by round, list, hop and index so a re-sent chunk is stored
once), audit (append-only: who did what, when — never data), privacy_budget (the
ledger: each round's release policy and what it spends, by roster; "reserved" when
the round opens, "spent" in the transaction that stores its result, "refunded" in
the one that fails it, except for a round with DP dummies that failed once padded sizes could
reach the coordinator: the dummies' share is then "spent" and only the release's refunded).

`secure_delete` overwrites deleted rows, so a list dropped after its hop (and
every final list after counting) does not linger in free pages, and a WAL
checkpoint (TRUNCATE) after each drop copies the overwritten pages into the
database and empties the write-ahead log, which would otherwise still hold the
relayed bytes. A round's tag private key is erased in the transaction that
completes or fails it: a finished round's tags can never be opened from the disk
again. The database (and its -wal and -shm) is created mode 0600, never through a
symbolic link. The key that seals tag private keys lives beside the database
(mode 0600).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monoculture.analysis.budget import RoundCost
from monoculture.analysis.release import ReleasePolicy
from monoculture.coordinator.state import RoundState
from monoculture.core.errors import ConfigError, ProtocolError
from monoculture.core.protocol import TERMINAL_PHASES
from monoculture.core.psi_crypto import x25519_key
from monoculture.core.relay import RelayPeer
from monoculture.core.sealing import LocalSealer, open_no_follow
from monoculture.core.timing import SYSTEM_CLOCK, Clock
from monoculture.v1 import monoculture_pb2 as pb

log = logging.getLogger("monoculture.coordinator")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rounds (
    round_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    sealed_tag_key BLOB NOT NULL,
    result_json TEXT NOT NULL DEFAULT '',
    told_ended TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS peers (
    round_id TEXT NOT NULL,
    company TEXT NOT NULL,
    relay_public_key BLOB NOT NULL,
    tag_public_key BLOB NOT NULL,
    certificate_pem BLOB NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (round_id, company)
);
CREATE TABLE IF NOT EXISTS chunks (
    round_id TEXT NOT NULL,
    list_owner TEXT NOT NULL,
    hop INTEGER NOT NULL,
    chunk_index INTEGER NOT NULL,
    chunk_count INTEGER NOT NULL,
    list_size INTEGER NOT NULL,
    elements INTEGER NOT NULL,
    chunk BLOB NOT NULL,
    PRIMARY KEY (round_id, list_owner, hop, chunk_index)
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    round_id TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS privacy_budget (
    round_id TEXT PRIMARY KEY,
    roster TEXT NOT NULL,
    epsilon REAL NOT NULL,
    delta REAL NOT NULL,
    status TEXT NOT NULL,
    reserved_at REAL NOT NULL,
    settled_at REAL,
    min_shared_individuals INTEGER NOT NULL,
    min_cell_count INTEGER NOT NULL,
    dp_mechanism TEXT NOT NULL,
    dp_epsilon REAL NOT NULL,
    dp_delta REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS privacy_budget_roster ON privacy_budget (roster);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


_SELECT_CHUNK = (
    "SELECT chunk FROM chunks WHERE round_id = ? AND list_owner = ? AND hop = ? AND chunk_index = ?"
)


@dataclass
class StoredRound:
    state: RoundState
    tag_private_key: bytes
    result_json: str
    told_ended: set[str]
    peers: dict[str, RelayPeer]


@dataclass(frozen=True)
class BudgetEntry:
    """One round's line in the privacy ledger."""

    round_id: str
    roster: str  # analysis.budget.roster_key
    cost: RoundCost
    status: str  # RESERVED, SPENT or REFUNDED
    reserved_at: float
    policy: ReleasePolicy  # the release policy the round was opened, announced and released with


RESERVED, SPENT, REFUNDED = "reserved", "spent", "refunded"
_INSERT_BUDGET = (
    "INSERT INTO privacy_budget (round_id, roster, epsilon, delta, status, reserved_at,"
    " min_shared_individuals, min_cell_count, dp_mechanism, dp_epsilon, dp_delta)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SELECT_BUDGET = (
    "SELECT round_id, roster, epsilon, delta, status, reserved_at, min_shared_individuals, min_cell_count,"
    " dp_mechanism, dp_epsilon, dp_delta FROM privacy_budget"
)


def _budget_entry(row: tuple[Any, ...]) -> BudgetEntry:
    round_id, roster, epsilon, delta, status, at, shared, cells, mechanism, dp_epsilon, dp_delta = row
    policy = ReleasePolicy(shared, cells, mechanism, dp_epsilon, dp_delta)
    return BudgetEntry(round_id, roster, RoundCost(epsilon, delta), status, at, policy)


@dataclass(frozen=True)
class ListProgress:
    chunks: int
    elements: int
    chunk_count: int
    list_size: int


_DATABASE = "the coordinator database is never opened through one"
_DATABASE_HINT = "remove the link (and find out who made it), then start the coordinator again"


def _owner_only(path: Path) -> None:
    """Make an existing file at `path` mode 0600 (warning if it was wider); refuse a symbolic link."""
    try:
        descriptor = open_no_follow(path, os.O_RDONLY | os.O_NONBLOCK, _DATABASE, hint=_DATABASE_HINT)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"cannot be opened ({exc.strerror})", where=str(path)) from None
    try:
        mode = stat.S_IMODE(os.fstat(descriptor).st_mode)
        if mode & 0o077:
            log.warning("%s was readable or writable by others (mode %o); now 0600", path, mode)
            os.fchmod(descriptor, 0o600)
    finally:
        os.close(descriptor)


def _prepare_database_files(path: Path) -> None:
    """The database file created 0600 before SQLite opens it (SQLite gives its -wal and -shm the
    database's mode), never through a symbolic link; existing files narrowed to 0600."""
    for companion in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        _owner_only(companion)
    try:  # a link made since the check above is refused here too
        descriptor = open_no_follow(path, os.O_RDWR | os.O_CREAT, _DATABASE, hint=_DATABASE_HINT)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the coordinator database ({exc.strerror})", where=str(path)
        ) from None
    os.close(descriptor)
    _owner_only(path.with_name(path.name + ".key"))


class RoundStore:
    def __init__(self, path: Path, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        path.parent.mkdir(parents=True, exist_ok=True)
        _prepare_database_files(path)
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the coordinator database ({exc})", where=str(path)) from None
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.executescript(_SCHEMA)
        self._sealer = LocalSealer(path.with_name(path.name + ".key"))
        self._lock = threading.Lock()
        self.path = path
        # A reservation is written just before its round; one without a round (a crash between
        # the two) spent nothing.
        self._db.execute(
            "UPDATE privacy_budget SET status = ?, settled_at = ? WHERE status = ?"
            " AND round_id NOT IN (SELECT round_id FROM rounds)",
            (REFUNDED, self._clock.time(), RESERVED),
        )
        self._forget_finished_keys()

    def _forget_finished_keys(self) -> None:
        """Erase the tag keys a database written before they were erased at the end of each round
        still holds for finished rounds."""
        rows = self._db.execute(
            "SELECT round_id, state FROM rounds WHERE length(sealed_tag_key) > 0"
        ).fetchall()
        finished = [(b"", rid) for rid, state in rows if RoundState.from_json(state).phase in TERMINAL_PHASES]
        if finished:
            self._db.executemany("UPDATE rounds SET sealed_tag_key = ? WHERE round_id = ?", finished)
            self._checkpoint()

    def _checkpoint(self) -> None:
        """Copy every committed page into the database and empty the WAL, which would otherwise
        keep the bytes of rows just deleted (`secure_delete` overwrites them in the database's
        pages, not in the log's older frames). Called with the lock held."""
        busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.warning("WAL checkpoint of %s was blocked; deleted data may stay in its -wal", self.path)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --------------------------------------------------------------- rounds

    def create_round(self, state: RoundState, tag_private_key: bytes) -> None:
        sealed = self._sealer.seal(tag_private_key, state.round_id.encode())
        with self._lock:
            self._db.execute(
                "INSERT INTO rounds (round_id, state, sealed_tag_key) VALUES (?, ?, ?)",
                (state.round_id, state.to_json(), sealed),
            )

    def save_state(self, state: RoundState) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE rounds SET state = ? WHERE round_id = ?", (state.to_json(), state.round_id)
            )

    def save_told_ended(self, round_id: str, told: set[str]) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE rounds SET told_ended = ? WHERE round_id = ?", (json.dumps(sorted(told)), round_id)
            )

    def complete(self, state: RoundState, result_json: str) -> None:
        """Store the released result, drop every chunk of the round and erase its tag key,
        atomically; then empty the WAL of them."""
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute(
                "UPDATE rounds SET state = ?, result_json = ?, sealed_tag_key = ? WHERE round_id = ?",
                (state.to_json(), result_json, b"", state.round_id),
            )
            self._db.execute("DELETE FROM chunks WHERE round_id = ?", (state.round_id,))
            self._settle_budget(state.round_id, SPENT)
            self._db.execute("COMMIT")
            self._checkpoint()

    def fail(self, state: RoundState, spent: RoundCost | None = None) -> None:
        """Store the failed state, drop the round's chunks, erase its tag key and settle its
        reservation, atomically; then empty the WAL of them. `spent`: what the round released
        before it failed (the DP dummies' share, once padded sizes could reach the coordinator),
        kept as spent; None: nothing was released, the reservation is refunded."""
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute(
                "UPDATE rounds SET state = ?, sealed_tag_key = ? WHERE round_id = ?",
                (state.to_json(), b"", state.round_id),
            )
            self._db.execute("DELETE FROM chunks WHERE round_id = ?", (state.round_id,))
            if spent is None:
                self._settle_budget(state.round_id, REFUNDED)
            else:
                self._db.execute(
                    "UPDATE privacy_budget SET epsilon = ?, delta = ? WHERE round_id = ? AND status = ?",
                    (spent.epsilon, spent.delta, state.round_id, RESERVED),
                )
                self._settle_budget(state.round_id, SPENT)
            self._db.execute("COMMIT")
            self._checkpoint()

    def _settle_budget(self, round_id: str, status: str) -> None:
        self._db.execute(
            "UPDATE privacy_budget SET status = ?, settled_at = ? WHERE round_id = ? AND status = ?",
            (status, self._clock.time(), round_id, RESERVED),
        )

    def load(self) -> list[StoredRound]:
        with self._lock:
            rows = self._db.execute(
                "SELECT round_id, state, sealed_tag_key, result_json, told_ended FROM rounds ORDER BY rowid"
            ).fetchall()
            peer_rows = self._db.execute(
                "SELECT round_id, company, relay_public_key, tag_public_key, certificate_pem, signature"
                " FROM peers"
            ).fetchall()
        peers: dict[str, dict[str, RelayPeer]] = {}
        for round_id, company, relay, tag, cert, signature in peer_rows:
            peers.setdefault(round_id, {})[company] = RelayPeer(company, relay, tag, cert, signature)
        stored = []
        for round_id, state_json, sealed, result_json, told in rows:
            state = RoundState.from_json(state_json)
            if sealed or state.phase not in TERMINAL_PHASES:
                tag_key = self._sealer.open(sealed, round_id.encode())
            else:
                # A finished round's tag key was erased when it ended (complete, fail). Its tags
                # are never opened again, but RoundBook._resume builds a TagOpener for every
                # round: give it a fresh throwaway key, which opens nothing the round sent.
                tag_key = x25519_key().private_bytes_raw()
            told_set = set(json.loads(told))
            stored.append(StoredRound(state, tag_key, result_json, told_set, peers.get(round_id, {})))
        return stored

    # --------------------------------------------------------------- budget

    def reserve_budget(self, round_id: str, roster: str, cost: RoundCost, policy: ReleasePolicy) -> None:
        """Charge `cost` to `roster` for a round about to be opened under `policy` (reserved)."""
        with self._lock:
            self._db.execute(
                _INSERT_BUDGET,
                (round_id, roster, cost.epsilon, cost.delta, RESERVED, self._clock.time(),
                 policy.min_shared_individuals, policy.min_cell_count, policy.mechanism, policy.epsilon,
                 policy.delta),
            )  # fmt: skip

    def budget(self, roster: str) -> list[BudgetEntry]:
        """Every round of `roster` in the ledger, oldest first (refunded ones included)."""
        with self._lock:
            rows = self._db.execute(_SELECT_BUDGET + " WHERE roster = ? ORDER BY rowid", (roster,)).fetchall()
        return [_budget_entry(row) for row in rows]

    def all_budget(self) -> list[BudgetEntry]:
        """Every round of every roster in the ledger, oldest first."""
        with self._lock:
            rows = self._db.execute(_SELECT_BUDGET + " ORDER BY rowid").fetchall()
        return [_budget_entry(row) for row in rows]

    def round_budget(self, round_id: str) -> BudgetEntry | None:
        """The ledger line of one round (None for a round opened before the ledger existed)."""
        with self._lock:
            row = self._db.execute(_SELECT_BUDGET + " WHERE round_id = ?", (round_id,)).fetchone()
        return None if row is None else _budget_entry(row)

    # ---------------------------------------------------------------- peers

    def save_peer(self, round_id: str, peer: RelayPeer) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO peers VALUES (?, ?, ?, ?, ?, ?)",
                (round_id, peer.company, peer.relay_public_key, peer.tag_public_key, peer.certificate_pem,
                 peer.signature),
            )  # fmt: skip

    # --------------------------------------------------------------- chunks

    def put_chunk(self, chunk: pb.ListChunk) -> None:
        """Store a chunk once; the same chunk again is a no-op, a different one an error."""
        data = chunk.SerializeToString()
        key = (chunk.round_id, chunk.list_owner, chunk.hop, chunk.chunk_index)
        with self._lock:
            row = self._db.execute(_SELECT_CHUNK, key).fetchone()
            if row is not None:
                if bytes(row[0]) != data:
                    raise ProtocolError(
                        f"chunk {chunk.chunk_index} of list of {chunk.list_owner} at hop {chunk.hop} "
                        "was sent again with different content",
                        where=chunk.sender,
                    )
                return
            self._db.execute(
                "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (*key, chunk.chunk_count, chunk.list_size, chunk.chunk_elements, data),
            )

    def progress(self, round_id: str, owner: str, hop: int) -> ListProgress:
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(elements), 0), COALESCE(MAX(chunk_count), 0),"
                " COALESCE(MAX(list_size), 0) FROM chunks WHERE round_id = ? AND list_owner = ? AND hop = ?",
                (round_id, owner, hop),
            ).fetchone()
        return ListProgress(*row)

    def chunks(self, round_id: str, owner: str, hop: int) -> Iterator[pb.ListChunk]:
        """A stored list's chunks in order, read one at a time (memory stays flat)."""
        with self._lock:
            indices = [
                r[0]
                for r in self._db.execute(
                    "SELECT chunk_index FROM chunks WHERE round_id = ? AND list_owner = ? AND hop = ?"
                    " ORDER BY chunk_index",
                    (round_id, owner, hop),
                )
            ]
        for index in indices:
            with self._lock:
                row = self._db.execute(_SELECT_CHUNK, (round_id, owner, hop, index)).fetchone()
            if row is None:
                return
            yield pb.ListChunk.FromString(bytes(row[0]))

    def drop_list(self, round_id: str, owner: str, hop: int) -> None:
        """Delete a list's chunks (overwritten in place, `secure_delete`) and empty the WAL of them."""
        with self._lock:
            self._db.execute(
                "DELETE FROM chunks WHERE round_id = ? AND list_owner = ? AND hop = ?", (round_id, owner, hop)
            )
            self._checkpoint()

    # ---------------------------------------------------------------- audit

    def audit(self, round_id: str, actor: str, action: str, detail: str = "") -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO audit (at, round_id, actor, action, detail) VALUES (?, ?, ?, ?, ?)",
                (self._clock.time(), round_id, actor, action, detail),
            )
