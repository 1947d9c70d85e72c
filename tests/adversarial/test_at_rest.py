"""Issue 11, item 7 ("At rest"): what a stolen disk, or a local user, finds.

The attacker here reads files: the coordinator's database, its -wal and -shm,
its sealing key, a company's state folder. Each test plays that attacker against
the real store (coordinator/store.py) or the real company state
(client/state.py) and measures what is left, byte for byte:

- a relayed list, once dropped (after its hop, at completion, at failure), is in
  none of the database's files (`secure_delete` alone leaves it in the WAL);
- a finished round's tag private key is erased from the database, so its tags can
  never be opened from the disk again, and the coordinator still resumes over it;
- the database, its -wal and -shm and the sealing key are 0600, and none is
  opened through a symbolic link;
- a company's sealed round state carries the digest of the input it was made
  from (so a restarted daemon can refuse a changed input), and is never written
  through a planted link.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.harness import Harness

from monoculture.client.state import RoundSecrets, SecretStore
from monoculture.coordinator.state import RoundState
from monoculture.coordinator.store import RoundStore
from monoculture.core.errors import ConfigError, InputError
from monoculture.core.protocol import Ring, RoundPhase
from monoculture.core.psi_crypto import TagOpener
from monoculture.v1 import monoculture_pb2 as pb

ROSTER = ("alpha", "beta")
ROUND_ID = "r-00112233445566ff"


# ------------------------------------------------------------------ helpers


def _files(db: Path) -> list[Path]:
    return [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]


def _disk(db: Path) -> bytes:
    """Every byte of the database's files as they are on disk now (the store still open)."""
    return b"".join(p.read_bytes() for p in _files(db) if p.exists())


def _markers(payload: bytes, every: int = 257, size: int = 24) -> list[bytes]:
    """Short slices of `payload` to look for (a long value spans overflow pages, so its whole
    bytes are never in one place even when every byte of it is on disk)."""
    return [payload[i : i + size] for i in range(0, len(payload) - size, every)]


def _found(db: Path, payload: bytes) -> list[bytes]:
    disk = _disk(db)
    return [m for m in _markers(payload) if m in disk]


def _chunk(round_id: str, owner: str, hop: int, payload: bytes) -> pb.ListChunk:
    return pb.ListChunk(
        round_id=round_id, sender=owner, list_owner=owner, hop=hop, chunk_index=0, chunk_count=1,
        list_size=100, chunk_elements=100, receiver="beta", sealed=payload,
    )  # fmt: skip


def _state(round_id: str = ROUND_ID) -> RoundState:
    return RoundState(round_id, Ring(ROSTER))


def _stored_tag_key(db: Path, round_id: str) -> bytes:
    """The rounds table read directly, as a thief with the file would."""
    reader = sqlite3.connect(db)
    try:
        row = reader.execute("SELECT sealed_tag_key FROM rounds WHERE round_id = ?", (round_id,)).fetchone()
    finally:
        reader.close()
    return bytes(row[0])


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "coord" / "coordinator.sqlite"


@pytest.fixture
def store(db: Path) -> Iterator[RoundStore]:
    s = RoundStore(db)
    yield s
    s.close()


def _finish(store: RoundStore, state: RoundState, how: str) -> None:
    if how == "complete":
        state.advance(RoundPhase.CONFIRMING)
        state.advance(RoundPhase.RELAYING)
        state.advance(RoundPhase.COUNTING)
        state.advance(RoundPhase.COMPLETE)
        store.complete(state, json.dumps({"shared_individuals": 0}))
    else:
        state.fail("a test failed it", "beta")
        store.fail(state)


# -------------------------------------------- relayed data does not survive


@pytest.mark.parametrize("how", ["drop_list", "complete", "fail"])
@pytest.mark.parametrize("size", [1_500, 60_000])  # within one page; over many overflow pages
def test_a_dropped_list_is_in_none_of_the_database_files(
    store: RoundStore, db: Path, how: str, size: int
) -> None:
    state = _state()
    store.create_round(state, TagOpener().private_bytes())
    payload = os.urandom(size)
    store.put_chunk(_chunk(ROUND_ID, "alpha", 0, payload))
    assert _found(db, payload), "the scan must see the chunk while it is stored"
    if how == "drop_list":
        store.drop_list(ROUND_ID, "alpha", 0)
    else:
        _finish(store, state, how)
    assert _found(db, payload) == []
    assert store.progress(ROUND_ID, "alpha", 0).chunks == 0
    wal = db.with_name(db.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0  # checkpointed and truncated


def test_a_whole_round_leaves_no_relayed_bytes_on_disk(tmp_path: Path, monkeypatch) -> None:
    """Every chunk the companies relayed through a real round, gone from every file at the end."""
    payloads: list[bytes] = []
    original = RoundStore.put_chunk

    def recording(self: RoundStore, chunk: pb.ListChunk) -> None:
        payloads.extend(p for p in (chunk.sealed, chunk.points, chunk.tags) if len(p) > 64)
        original(self, chunk)

    monkeypatch.setattr(RoundStore, "put_chunk", recording)
    people = [f"person-{i}" for i in range(40)]
    population = {
        name: [(p, (i + j) % 3 == 0) for i, p in enumerate(people)] for j, name in enumerate(ROSTER)
    }
    harness = Harness(tmp_path, {n: [(p, int(f)) for p, f in rows] for n, rows in population.items()})
    try:
        round_id = harness.open_round()
        assert harness.run(round_id) == RoundPhase.COMPLETE
        assert payloads
        db = harness.store.path
        assert [p for p in payloads if _found(db, p)] == []
        assert _stored_tag_key(db, round_id) == b""
    finally:
        harness.close()


# ------------------------------------------------ a finished round's tag key


@pytest.mark.parametrize("how", ["complete", "fail"])
def test_the_tag_key_is_erased_when_the_round_ends(store: RoundStore, db: Path, how: str) -> None:
    state = _state()
    opener = TagOpener()
    store.create_round(state, opener.private_bytes())
    running = _state("r-00112233445566aa")  # another round, still open: keeps its key
    running_key = TagOpener().private_bytes()
    store.create_round(running, running_key)
    sealed = _stored_tag_key(db, ROUND_ID)
    assert len(sealed) > 32 and _found(db, sealed)

    _finish(store, state, how)

    assert _stored_tag_key(db, ROUND_ID) == b""
    assert _found(db, sealed) == []  # neither in the table's pages nor in the WAL
    assert _stored_tag_key(db, running.round_id) != b""
    store.close()

    again = RoundStore(db)  # a restarted coordinator
    try:
        loaded = {s.state.round_id: s for s in again.load()}
        finished = loaded[ROUND_ID]
        assert finished.state.phase in (RoundPhase.COMPLETE, RoundPhase.FAILED)
        assert finished.tag_private_key != opener.private_bytes()
        TagOpener(finished.tag_private_key)  # what RoundBook._resume builds
        assert loaded[running.round_id].tag_private_key == running_key
    finally:
        again.close()


def test_a_coordinator_restarted_over_a_finished_round_still_serves_its_result(tmp_path: Path) -> None:
    population = {name: [(f"person-{i}", i % 2) for i in range(30)] for name in ROSTER}
    harness = Harness(tmp_path, population)
    try:
        round_id = harness.open_round()
        assert harness.run(round_id) == RoundPhase.COMPLETE
        before = harness.result(round_id)
        assert _stored_tag_key(harness.store.path, round_id) == b""
        harness.restart_coordinator()
        assert harness.phase(round_id) == RoundPhase.COMPLETE
        assert harness.result(round_id) == before
    finally:
        harness.close()


def test_a_database_from_before_loses_its_finished_rounds_keys_on_open(store: RoundStore, db: Path) -> None:
    """A finished round whose key a database written by an older coordinator still holds."""
    state = _state()
    store.create_round(state, TagOpener().private_bytes())
    state.fail("ended under an older coordinator")
    store.save_state(state)  # terminal, key still stored: what the old code left
    assert _stored_tag_key(db, ROUND_ID) != b""
    store.close()
    again = RoundStore(db)
    try:
        assert _stored_tag_key(db, ROUND_ID) == b""
        assert [s.state.phase for s in again.load()] == [RoundPhase.FAILED]
    finally:
        again.close()


# ------------------------------------------------------ modes and links


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def usual_umask() -> Iterator[None]:
    previous = os.umask(0o022)  # the usual default, under which a plain open() makes 0644
    yield
    os.umask(previous)


def test_database_wal_shm_and_key_are_owner_only(db: Path, usual_umask: None) -> None:
    store = RoundStore(db)
    try:
        store.create_round(_state(), TagOpener().private_bytes())
        key = db.with_name(db.name + ".key")
        paths = [*_files(db), key]
        assert all(p.exists() for p in paths)
        assert {str(p.name): _mode(p) for p in paths} == {str(p.name): 0o600 for p in paths}
    finally:
        store.close()


def test_a_database_left_readable_is_narrowed_to_owner_only(db: Path, caplog) -> None:
    RoundStore(db).close()
    key = db.with_name(db.name + ".key")
    for path in (db, key):
        path.chmod(0o644)
    with caplog.at_level("WARNING"):
        RoundStore(db).close()
    assert _mode(db) == 0o600 and _mode(key) == 0o600
    assert str(db) in caplog.text


@pytest.mark.parametrize("name", ["coordinator.sqlite", "coordinator.sqlite-wal", "coordinator.sqlite-shm"])
def test_a_link_at_the_database_path_is_refused(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "coord"
    folder.mkdir()
    elsewhere = tmp_path / "elsewhere"  # where the link would have the database written
    (folder / name).symlink_to(elsewhere)
    with pytest.raises(ConfigError, match="symbolic link") as refused:
        RoundStore(folder / "coordinator.sqlite")
    assert refused.value.where == str(folder / name)
    assert str(folder / name) in str(refused.value)
    assert not elsewhere.exists()


# ------------------------------------------------- the company's sealed state


def _secrets(group_labels: tuple[str, ...] = (), input_digest: str = "") -> RoundSecrets:
    keys = [os.urandom(32) for _ in range(5)]
    return RoundSecrets(ROUND_ID, *keys, group_labels=group_labels, input_digest=input_digest)


def test_round_secrets_carry_the_input_digest(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"id,failed\n1,0\n").hexdigest()
    secrets = _secrets(input_digest=digest)
    assert RoundSecrets.from_json(secrets.to_json()) == secrets
    store = SecretStore(tmp_path / "state", "alpha")
    store.save(secrets)
    loaded = store.load(ROUND_ID)
    assert loaded is not None and loaded.input_digest == digest


def test_round_secrets_written_before_the_digest_load_with_none(tmp_path: Path) -> None:
    secrets = _secrets(group_labels=("x",))
    old = json.loads(secrets.to_json())
    old.pop("input_digest", None)  # a file written before the field existed
    loaded = RoundSecrets.from_json(json.dumps(old).encode())
    assert loaded.input_digest == ""
    assert loaded.group_labels == ("x",) and loaded.blinding_key == secrets.blinding_key


def test_round_state_is_never_written_through_a_planted_link(tmp_path: Path, usual_umask: None) -> None:
    folder = tmp_path / "state"
    store = SecretStore(folder, "alpha")
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    (folder / f"round-{ROUND_ID}.tmp").symlink_to(victim)  # planted at the temporary name
    secrets = _secrets()
    store.save(secrets)
    assert victim.read_bytes() == b"untouched"
    path = folder / f"round-{ROUND_ID}.sealed"
    assert not path.is_symlink() and _mode(path) == 0o600
    assert store.load(ROUND_ID) == secrets
    assert _mode(folder / "state.key") == 0o600


# ----------------------------------------------------------- input digest


def test_input_digest_is_the_sha256_of_the_file(tmp_path: Path) -> None:
    from monoculture.core.dataset import input_digest

    data = os.urandom((1 << 20) * 2 + 12345)  # more than one block
    path = tmp_path / "input.csv"
    path.write_bytes(data)
    assert input_digest(path) == hashlib.sha256(data).hexdigest()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert input_digest(path) != hashlib.sha256(data).hexdigest()


def test_input_digest_names_a_file_it_cannot_read(tmp_path: Path) -> None:
    from monoculture.core.dataset import input_digest

    missing = tmp_path / "missing.csv"
    with pytest.raises(InputError) as error:
        input_digest(missing)
    assert error.value.where == str(missing)
    with pytest.raises(InputError, match="folder") as error:
        input_digest(tmp_path)
    assert error.value.where == str(tmp_path)


def test_round_state_is_never_read_through_a_link(tmp_path: Path) -> None:
    from monoculture.client.state import SecretStore

    store = SecretStore(tmp_path / "state", "alpha")
    elsewhere = tmp_path / "planted"
    elsewhere.write_bytes(b"x")
    (tmp_path / "state" / "round-r-0123456789abcdef.sealed").symlink_to(elsewhere)
    with pytest.raises(ConfigError, match="symbolic link"):
        store.load("r-0123456789abcdef")
    assert store.load("r-00000000000000ff") is None  # none at all: nothing to resume
