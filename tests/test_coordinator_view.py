"""The coordinator's view of a round with DP dummies (issue 12, "done when"): everything the
coordinator records (the test aid `record_dir`) and keeps (its database folder, its log),
after a real k = 3 round over mTLS with `dummy_epsilon = 1`, holds nothing beyond the released
result and DP-noised counts.

The population is small and fully known: every company's ids, failure bits, list sizes and
the true size of every Venn region. Outside the full intersection every company either fails
every one of its ids in a region or none, so a coordinator that could read a failure bit
would see it at once. The test reconstructs the coordinator's view from what it recorded
and checks each property on its own:

1. no id, and no common encoding or fixed hash of one, in any recorded or kept byte;
2. every list size it is told or can count is padded (true + 0..k·2mu), never the true one;
3. every Venn region but the full intersection is the true count + 0..2mu, the full
   intersection exact (the output);
4. the tags of tokens outside the full intersection, opened with the coordinator's own tag key
   (read from its store while the round runs, as the coordinator holds it), carry no failure
   bit: their values are uniform, alike for failed and not-failed ids (protocol v1's plain
   bits fail the same check, shown on a v1 view built from the truth);
5. the released result is the plaintext computation;
6. beyond those, the lists it recorded are sealed or fully blinded, and after the round its
   database folder keeps no byte of any list and no tag key.

No check found a leak on this path (masked tags, the default).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import random
import re
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_same_integers, recorded, stored_chunks, write_csv
from scipy import stats

from monoculture.analysis.metrics import result_dict
from monoculture.analysis.table import plaintext_table
from monoculture.auditor import AuditorClient
from monoculture.core.dataset import InputSpec
from monoculture.core.dummies import DummyPlan
from monoculture.core.errors import RoundFailed
from monoculture.core.identity import Identity, Role
from monoculture.core.psi_crypto import NONCE_SIZE, POINT_SIZE, TAG_SIZE, BlindingKey, TagOpener, split_tags
from monoculture.core.sealing import LocalSealer
from monoculture.core.wire import chunk_content
from monoculture.pki import local_deployment, tls_files
from monoculture.research.simulate import CompanyInput, start_company, start_coordinator
from monoculture.v1 import monoculture_pb2 as pb

pytestmark = pytest.mark.e2e

COMPANIES = ("alpha", "beta", "gamma")
K = len(COMPANIES)
FULL = COMPANIES
PLAN = DummyPlan.for_round(1.0, 1e-6, K)
MU = PLAN.mu  # 27: each padded region gets mu + Z in [0, 2 mu] dummies
CHUNK_ELEMENTS = 64  # several chunks per list, so the chunk headers are seen many times

# True Venn regions (ids held by exactly these companies) outside the full intersection.
REGION_SIZES: dict[tuple[str, ...], int] = {
    ("alpha",): 120, ("beta",): 100, ("gamma",): 80,
    ("alpha", "beta"): 90, ("alpha", "gamma"): 70, ("beta", "gamma"): 60,
}  # fmt: skip
# Outside the full intersection company c fails every id of a region (1) or none (0): each
# company has regions of both kinds, and the two members of a pair disagree.
FAILS: dict[tuple[str, tuple[str, ...]], int] = {
    ("alpha", ("alpha",)): 1, ("alpha", ("alpha", "beta")): 0, ("alpha", ("alpha", "gamma")): 1,
    ("beta", ("beta",)): 0, ("beta", ("alpha", "beta")): 1, ("beta", ("beta", "gamma")): 0,
    ("gamma", ("gamma",)): 1, ("gamma", ("alpha", "gamma")): 0, ("gamma", ("beta", "gamma")): 1,
}  # fmt: skip
# The full intersection: how many shared ids have each failure pattern (alpha, beta, gamma).
PATTERNS = {"000": 40, "001": 12, "010": 14, "011": 11, "100": 16, "101": 13, "110": 15, "111": 29}
SEED = 20240612  # the population only; every key and every dummy is the parties' own

# The chance that the family of uniformity checks fails on truly uniform values (Bonferroni).
FAMILY_ALPHA = 1e-5


# ------------------------------------------------------------------ the population


@dataclass(frozen=True)
class Truth:
    rows: dict[str, list[tuple[str, int]]]  # company -> (id, failed) in file order
    regions: dict[tuple[str, ...], int]  # every region, the full intersection included

    @property
    def sizes(self) -> dict[str, int]:
        return {name: len(rows) for name, rows in self.rows.items()}

    @property
    def ids(self) -> list[str]:
        return sorted({x for rows in self.rows.values() for x, _ in rows})


def build_population(
    roster: Sequence[str],
    region_sizes: Mapping[tuple[str, ...], int],
    fails: Mapping[tuple[str, tuple[str, ...]], int],
    patterns: Mapping[str, int],
    seed: int,
) -> Truth:
    """Every region of `region_sizes` (outside the full intersection) gets that many fresh ids,
    failed by each member as `fails` says; the full intersection gets `patterns[p]` ids with
    failure pattern p (one bit per company, in roster order); every list is shuffled."""
    rng = random.Random(seed)
    taken: set[str] = set()

    def fresh_id() -> str:
        while True:
            candidate = f"cust-{rng.getrandbits(48):012x}"
            if candidate not in taken:
                taken.add(candidate)
                return candidate

    rows: dict[str, list[tuple[str, int]]] = {name: [] for name in roster}
    for region, size in region_sizes.items():
        for _ in range(size):
            person = fresh_id()
            for name in region:
                rows[name].append((person, fails[(name, region)]))
    for pattern, count in patterns.items():
        for _ in range(count):
            person = fresh_id()
            for name, bit in zip(roster, pattern, strict=True):
                rows[name].append((person, int(bit)))
    for name in roster:
        rng.shuffle(rows[name])
    regions = dict(region_sizes)
    regions[tuple(roster)] = sum(patterns.values())
    return Truth(rows, regions)


def _population() -> Truth:
    return build_population(COMPANIES, REGION_SIZES, FAILS, PATTERNS, SEED)


# ------------------------------------------------------------------ the coordinator's view


@dataclass
class CoordinatorView:
    """Everything the coordinator recorded and kept for the round, and its own tag key."""

    roster: tuple[str, ...]  # the ring order
    round_id: str
    tag_private_key: bytes  # read from its store while the round ran
    recorded: list[tuple[str, bytes]]  # record_dir/stored.bin: (kind, payload)
    files: dict[str, bytes]  # every recorded or kept file: stored.bin, the database folder, its log
    state: dict  # the round's state as its database keeps it after the round
    audit: list[tuple[str, str, str]]  # (actor, action, detail)
    tag_public_keys: dict[str, bytes]  # the companies' enrolled tag keys (its peers table)
    sealed_tag_key_after: bytes
    chunks_after: int  # chunks of the round left in its database after the round
    log: str
    result: dict  # the released result, as the auditor got it

    @cached_property
    def chunks(self) -> list[pb.ListChunk]:
        """Every list chunk it stored, every hop (sealed between companies, open at the last)."""
        return stored_chunks(self.files["recorded/stored.bin"])

    def final_list(self, owner: str) -> tuple[list[bytes], list[bytes]]:
        """The fully blinded list of `owner` as it arrived: its tokens and their tags, in order."""
        final = sorted(
            (c for c in self.chunks if c.list_owner == owner and c.hop == len(self.roster) - 1),
            key=lambda c: c.chunk_index,
        )
        tokens = [p for chunk in final for p in chunk_content(chunk)]
        tags = [t for chunk in final for t in split_tags(chunk.tags)]
        return tokens, tags


def _read_only(database: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{database}?mode=ro", uri=True)


def _tag_private_key(database: Path, round_id: str) -> bytes:
    """The round's tag private key as the coordinator keeps it: sealed in its database under the
    key file beside it (erased when the round ends, so read while the round is open)."""
    db = _read_only(database)
    try:
        (sealed,) = db.execute("SELECT sealed_tag_key FROM rounds WHERE round_id = ?", (round_id,)).fetchone()
    finally:
        db.close()
    return LocalSealer(database.with_name(database.name + ".key")).open(bytes(sealed), round_id.encode())


@pytest.fixture(scope="module")
def truth() -> Truth:
    return _population()


def _round_state(database: Path, round_id: str) -> dict:
    db = _read_only(database)
    try:
        (state,) = db.execute("SELECT state FROM rounds WHERE round_id = ?", (round_id,)).fetchone()
    finally:
        db.close()
    return json.loads(state)


def _failed_round(folder: Path, roster: Sequence[str], why: str) -> AssertionError:
    logs = [folder / f"client-{name}.log" for name in roster] + [folder / "coordinator.log"]
    tails = "\n".join(f"--- {log.name}\n{log.read_text()[-2000:]}" for log in logs if log.exists())
    return AssertionError(f"{why}\n{tails}")


def run_round(
    folder: Path,
    roster: Sequence[str],
    rows: Mapping[str, list[tuple[str, int]]],
    *,
    dummy_epsilon: float,
    min_list_size: int = 1,
    while_open: Callable[[str, Mapping[str, subprocess.Popen[bytes]]], None] | None = None,
    once_all_started: Callable[[str], None] | None = None,
) -> CoordinatorView:
    """A real round over mTLS (a coordinator with `record_dir` and `dummy_epsilon`, one client
    process per company, the auditor opening it with `min_list_size`), and what the coordinator
    recorded and kept. `while_open(round_id, processes)`, if given, runs once every company but
    the last has enrolled (the round waits in OPEN for the last one), before the last one starts;
    `once_all_started(round_id)` once every company has started, before the round is waited for."""
    roster = tuple(roster)
    certs = folder / "certs"
    local_deployment(certs, list(roster))
    record_dir = folder / "recorded"
    database = folder / "coordinator-state" / "coordinator.sqlite"
    with ExitStack() as stack:
        coordinator_tls = tls_files(certs, Identity(Role.COORDINATOR, "127.0.0.1"))
        address = start_coordinator(
            folder, stack, tls=coordinator_tls, record_dir=record_dir, dummy_epsilon=dummy_epsilon
        )
        with AuditorClient(address, tls_files(certs, Identity(Role.AUDITOR, "auditor"))) as auditor:
            round_id = auditor.open_round(list(roster), min_list_size=min_list_size).round_id
            # No company runs yet: the round waits in OPEN, its tag key sealed in the store.
            tag_private_key = _tag_private_key(database, round_id)

            processes: dict[str, subprocess.Popen[bytes]] = {}

            def start(name: str) -> None:
                spec = InputSpec(write_csv(folder / f"{name}.csv", rows[name]))
                processes[name] = start_company(
                    CompanyInput(name, spec), address, folder, stack,
                    tls=tls_files(certs, Identity(Role.COMPANY, name)), chunk_elements=CHUNK_ELEMENTS,
                )  # fmt: skip

            first = roster[:-1] if while_open else roster
            for name in first:
                start(name)
            if while_open:
                deadline = time.monotonic() + 120
                while not set(first) <= set(_round_state(database, round_id)["enrolled"]):
                    if time.monotonic() > deadline:
                        raise _failed_round(folder, roster, f"{', '.join(first)} did not all enrol")
                    time.sleep(0.05)
                assert _round_state(database, round_id)["phase"] == "OPEN"
                while_open(round_id, processes)
                start(roster[-1])
            if once_all_started:
                once_all_started(round_id)
            try:
                auditor.wait(round_id, timeout=240)
            except RoundFailed as exc:
                raise _failed_round(folder, roster, f"the round failed: {exc}") from None
            result = auditor.result(round_id)
    # Every process has stopped: the database folder holds what the coordinator keeps.
    files = {"recorded/stored.bin": (record_dir / "stored.bin").read_bytes()}
    for path in sorted(database.parent.iterdir()):
        files[f"coordinator-state/{path.name}"] = path.read_bytes()
    files["coordinator.log"] = (folder / "coordinator.log").read_bytes()
    db = _read_only(database)
    try:
        state_json, sealed_after = db.execute(
            "SELECT state, sealed_tag_key FROM rounds WHERE round_id = ?", (round_id,)
        ).fetchone()
        audit = db.execute(
            "SELECT actor, action, detail FROM audit WHERE round_id = ? ORDER BY seq", (round_id,)
        ).fetchall()
        peers = db.execute("SELECT company, tag_public_key FROM peers WHERE round_id = ?", (round_id,))
        tag_public_keys = {company: bytes(key) for company, key in peers.fetchall()}
        (chunks_after,) = db.execute("SELECT COUNT(*) FROM chunks WHERE round_id = ?", (round_id,)).fetchone()
    finally:
        db.close()
    return CoordinatorView(
        roster=roster,
        round_id=round_id,
        tag_private_key=tag_private_key,
        recorded=recorded(files["recorded/stored.bin"]),
        files=files,
        state=json.loads(state_json),
        audit=[(a, b, c) for a, b, c in audit],
        tag_public_keys=tag_public_keys,
        sealed_tag_key_after=bytes(sealed_after),
        chunks_after=chunks_after,
        log=files["coordinator.log"].decode(errors="replace"),
        result=result,
    )


@pytest.fixture(scope="module")
def view(tmp_path_factory: pytest.TempPathFactory, truth: Truth) -> CoordinatorView:
    folder = tmp_path_factory.mktemp("coordinator-view")
    return run_round(folder, COMPANIES, truth.rows, dummy_epsilon=1.0)


def _final_tokens(view: CoordinatorView) -> dict[str, list[bytes]]:
    return {name: view.final_list(name)[0] for name in view.roster}


def _regions(
    members: dict[str, set[bytes]] | dict[str, set[str]], roster: Sequence[str] = COMPANIES
) -> dict[tuple[str, ...], int]:
    """How many elements each exact set of holders has (the Venn regions), every region keyed."""
    counts: Counter[tuple[str, ...]] = Counter()
    everything: set = set().union(*members.values())
    for x in everything:
        counts[tuple(name for name in roster if x in members[name])] += 1
    return {region: counts.get(region, 0) for region in _all_regions(roster)}


def _all_regions(roster: Sequence[str] = COMPANIES) -> list[tuple[str, ...]]:
    return [r for size in range(1, len(roster) + 1) for r in itertools.combinations(roster, size)]


# ------------------------------------------------------------------ 1. no id


def _id_forms(record_id: str) -> Iterator[tuple[str, bytes]]:
    """The id and the encodings and fixed hashes of it a careless protocol would send."""
    raw = record_id.encode()
    core = record_id.removeprefix("cust-")
    yield "utf-8", raw
    yield "utf-16-le", record_id.encode("utf-16-le")
    yield "utf-16-be", record_id.encode("utf-16-be")
    yield "utf-32-le", record_id.encode("utf-32-le")
    yield "id without its prefix", core.encode()
    yield "id without its prefix, upper case", core.upper().encode()
    yield "hex", raw.hex().encode()
    yield "HEX", raw.hex().upper().encode()
    for name, encode in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
        for shift in range(3):  # the part of base64(prefix + id) that depends on the id only
            encoded = encode(bytes(shift) + raw)
            start = -(-4 * shift // 3)
            yield f"{name} at offset {shift}", encoded[start : len(encoded) - 4]
    yield "base32", base64.b32encode(raw)[:24]
    for name in ("md5", "sha1", "sha224", "sha256", "sha384", "sha512", "sha3_256", "blake2b", "blake2s"):
        digest = hashlib.new(name, raw).digest()
        yield name, digest
        yield f"{name} hex", digest.hex().encode()
        yield f"{name} base64", base64.b64encode(digest)[:-4]
    u = hashlib.sha256(len(raw).to_bytes(8, "big") + raw).digest()
    yield "u(x) = SHA-256(length | id) (the masks' digest)", u
    yield "u(x)[:16]", u[:16]
    yield "u(x)[:16] hex", u[:16].hex().encode()


def _hash_to_curve(ids: Sequence[str]) -> list[bytes]:
    """H(x), openmined-psi's hash-to-curve before any blinding (the scalar 1)."""
    return BlindingKey((1).to_bytes(32, "big")).hash_and_blind(list(ids))


class Haystack:
    """Every 8-byte window of some bytes, to look many needles up at once (each hit confirmed)."""

    def __init__(self, blob: bytes) -> None:
        self.blob = blob
        data = np.frombuffer(blob, dtype=np.uint8)
        if len(data) < 8:
            self._windows = np.zeros(0, dtype=np.uint64)
            return
        windows = np.lib.stride_tricks.sliding_window_view(data, 8)
        # Sorted, duplicates kept (np.unique is several times slower on megabytes of windows).
        self._windows = np.sort(np.ascontiguousarray(windows).view(">u8").ravel().astype(np.uint64))

    def found(self, needles: Sequence[bytes]) -> list[int]:
        """Indices of the needles (8 bytes or more) that occur."""
        assert all(len(n) >= 8 for n in needles)
        if not len(self._windows) or not needles:
            return []
        prefixes = np.frombuffer(b"".join(n[:8] for n in needles), dtype=">u8").astype(np.uint64)
        at = np.minimum(np.searchsorted(self._windows, prefixes), len(self._windows) - 1)
        maybe = np.flatnonzero(self._windows[at] == prefixes)
        return [int(i) for i in maybe if needles[i] in self.blob]


def _needles(truth: Truth) -> tuple[list[bytes], list[str]]:
    needles, labels = [], []
    ids = truth.ids
    for record_id, point in zip(ids, _hash_to_curve(ids), strict=True):
        for form, needle in _id_forms(record_id):
            needles.append(needle)
            labels.append(f"{form} of {record_id}")
        needles += [point, point[1:]]
        labels += [f"H({record_id}) (hash-to-curve)", f"H({record_id}), x-coordinate"]
    return needles, labels


def test_no_id_nor_any_encoding_or_hash_of_one_is_in_any_recorded_byte(
    view: CoordinatorView, truth: Truth
) -> None:
    """Searched: record_dir (every chunk of every hop, the result), the database folder after the
    round (database, -wal, -shm, key file) and the coordinator's log; for every id of every
    company, its text encodings, fixed hashes, the masks' digest u(x) and H(x) itself."""
    needles, labels = _needles(truth)
    assert len(needles) > 40 * len(truth.ids)
    # The search finds what is there: a planted masks' digest and a planted H(x).
    first, last = truth.ids[0], truth.ids[-1]
    planted = Haystack(b"noise" + needles[labels.index(f"u(x)[:16] of {first}")] + needles[-2] + b"noise")
    assert {labels[i] for i in planted.found(needles)} == {
        f"u(x)[:16] of {first}",
        f"H({last}) (hash-to-curve)",
        f"H({last}), x-coordinate",
    }
    # Every list at every hop was recorded: at least the true sizes' points and tags, k hops each.
    stored = len(view.files["recorded/stored.bin"])
    assert stored > K * sum(truth.sizes.values()) * (POINT_SIZE + TAG_SIZE)
    leaks = {where: [labels[i] for i in Haystack(blob).found(needles)] for where, blob in view.files.items()}
    assert {where: found[:5] for where, found in leaks.items() if found} == {}


# ------------------------------------------------------------------ 2. padded list sizes


def assert_headers_follow_the_padded_sizes(view: CoordinatorView, padded: Mapping[str, int]) -> None:
    """Every chunk header of every hop, and the chunk layout, follow from the padded size alone."""
    by_list: dict[tuple[str, int], list[pb.ListChunk]] = {}
    for chunk in view.chunks:
        by_list.setdefault((chunk.list_owner, chunk.hop), []).append(chunk)
    assert set(by_list) == {(name, hop) for name in padded for hop in range(len(padded))}
    for (owner, hop), chunks in by_list.items():
        size = padded[owner]
        assert {c.list_size for c in chunks} == {size}, (owner, hop)
        assert sorted(c.chunk_index for c in chunks) == list(range(-(-size // CHUNK_ELEMENTS)))
        assert {c.chunk_count for c in chunks} == {-(-size // CHUNK_ELEMENTS)}
        elements = [c.chunk_elements for c in sorted(chunks, key=lambda c: c.chunk_index)]
        assert sum(elements) == size and set(elements[:-1]) <= {CHUNK_ELEMENTS}


def test_every_list_size_the_coordinator_sees_is_padded(view: CoordinatorView, truth: Truth) -> None:
    """Enrolment (0 with dummies), the hop-0 uploads (the round's state), every chunk header of
    every hop, the final lists' lengths and the released list_sizes: one padded size per company,
    the true size plus a singleton's and k - 1 pairs' dummies."""
    padded = {name: int(view.state["list_sizes"][name]) for name in COMPANIES}  # from the hop-0 uploads
    # Enrolment tells no size at all (with dummies the padded size comes with the hop-0 upload).
    assert sorted(detail for _, action, detail in view.audit if action == "enrolled") == ["list size 0"] * K
    assert re.findall(r"enrolled with a list of (\d+)", view.log) == ["0"] * K
    # Every chunk header of every hop, and the chunk layout, follow from the padded size alone.
    assert_headers_follow_the_padded_sizes(view, padded)
    # The fully blinded lists it counts, and the sizes it releases.
    assert {name: len(tokens) for name, tokens in _final_tokens(view).items()} == padded
    assert view.result["list_sizes"] == padded
    # Whatever else it logs or audits about a size is one of these.
    said = "\n".join([view.log, *(detail for _, _, detail in view.audit)])
    sizes = re.findall(r"(?:list size|list of) (\d+)|(\d+) (?:records|elements)", said)
    told = {int(a or b) for a, b in sizes}
    assert told <= {0, *padded.values()}
    # Padded, as designed: the true size plus a singleton's and k - 1 pairs' dummies, 0..2 mu each.
    extra = {name: padded[name] - truth.sizes[name] for name in COMPANIES}
    assert all(0 < e <= K * 2 * MU for e in extra.values()), extra
    seen = _regions({name: set(tokens) for name, tokens in _final_tokens(view).items()})
    for name in COMPANIES:
        regions = [r for r in _all_regions() if name in r and r != FULL]
        assert extra[name] == sum(seen[r] - truth.regions[r] for r in regions), name


# ------------------------------------------------------------------ 3. Venn regions


def test_every_venn_region_but_the_output_is_padded_by_0_to_2mu(view: CoordinatorView, truth: Truth) -> None:
    """The regions the coordinator computes from the fully blinded lists it recorded: at k = 3
    every region but the full intersection is a singleton or a pair, all padded."""
    tokens = _final_tokens(view)
    assert all(len(set(t)) == len(t) for t in tokens.values())
    seen = _regions({name: set(t) for name, t in tokens.items()})
    padding = {r: seen[r] - truth.regions[r] for r in _all_regions() if r != FULL}
    assert all(0 <= d <= 2 * MU for d in padding.values()), padding
    assert seen[FULL] == truth.regions[FULL] == sum(PATTERNS.values())  # the output: exact
    assert any(d != 0 for d in padding.values())  # noised, not exact
    # mu + Z, |Z| <= mu, E[Z] = 0, sd about 2.8: the singletons' paddings and the pairs' each add
    # up to about 3 mu (off by more than 40 with probability 6e-8 each): both kinds are padded.
    for size in (1, 2):
        kind = [d for r, d in padding.items() if len(r) == size]
        assert abs(sum(kind) - len(kind) * MU) <= 40, padding


# ------------------------------------------------------------------ 4. tags carry no failure bit

Values = dict[object, dict[str, int]]  # token -> company -> the value its tag opens to (mod 2^128)


def _opened(view: CoordinatorView) -> Values:
    """Every final tag opened with the coordinator's tag key, as the coordinator can."""
    opener = TagOpener(view.tag_private_key)
    values: Values = {}
    for name in view.roster:
        tokens, tags = view.final_list(name)
        tags_of = opener.opener_for(view.round_id, name, view.tag_public_keys[name])
        for token, row in zip(tokens, tags_of.open(tags), strict=True):
            values.setdefault(token, {})[name] = int.from_bytes(row.tobytes(), "big")
    return values


def _v1_view(view: CoordinatorView, truth: Truth) -> Values:
    """What protocol v1's tags (a plain failure bit) would have opened to, in the same regions
    with the same dummies (failure bit 0): built from the truth, to show the check's power."""
    seen = _regions({name: set(t) for name, t in _final_tokens(view).items()})
    values: Values = {}
    for region, size in REGION_SIZES.items():
        for index in range(seen[region]):
            real = index < size
            values[(region, index)] = {
                name: (FAILS[(name, region)] if real else 0) << _shift(name) for name in region
            }
    return values


def _shift(name: str, roster: Sequence[str] = COMPANIES) -> int:
    """Where company `name`'s 2-bit lane sits in a value (company 0 holds the highest lane)."""
    return 2 * (len(roster) - 1 - list(roster).index(name))


def _lane(value: int, name: str, roster: Sequence[str] = COMPANIES) -> int:
    return (value >> _shift(name, roster)) & 3


def _uniform_p(observed: Sequence[int] | np.ndarray, cells: int) -> float:
    counts = np.bincount(np.asarray(observed, dtype=np.int64), minlength=cells)
    return float(stats.chisquare(counts).pvalue)


def _same_p(first: Sequence[int], second: Sequence[int], cells: int) -> float:
    """Chi-square test that two samples of 0..cells-1 have the same distribution."""
    table = np.array([np.bincount(first, minlength=cells), np.bincount(second, minlength=cells)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 1.0
    return float(stats.chi2_contingency(table).pvalue)


def grouped_values(
    values: Values, roster: Sequence[str]
) -> tuple[dict[tuple[str, tuple[str, ...]], list[int]], dict[tuple[str, ...], list[int]]]:
    """The values of tokens outside the full intersection, by (company, region), and the sums the
    coordinator can form (every value of a token held by two or more companies), by region."""
    by: dict[tuple[str, tuple[str, ...]], list[int]] = {}
    sums: dict[tuple[str, ...], list[int]] = {}
    for held in values.values():
        region = tuple(name for name in roster if name in held)
        if region == tuple(roster):
            continue
        for name, value in held.items():
            by.setdefault((name, region), []).append(value)
        if len(region) > 1:  # what the coordinator adds up: every value of the token
            sums.setdefault(region, []).append(sum(held.values()) % 2**128)
    return by, sums


def _uniformity(values: Values) -> dict[str, float]:
    """p-values of every check that the values of tokens outside the full intersection are
    uniform and alike for failed and not-failed ids; small p: a failure bit shows."""
    by, sums = grouped_values(values, COMPANIES)
    p: dict[str, float] = {}
    for (name, region), found in by.items():
        p[f"{name}'s lane over region {region}"] = _uniform_p([_lane(v, name) for v in found], 4)
    for name in COMPANIES:
        failed = [v for (n, r), vs in by.items() if n == name and FAILS[(n, r)] for v in vs]
        spared = [v for (n, r), vs in by.items() if n == name and not FAILS[(n, r)] for v in vs]
        p[f"{name}'s lane, failed vs not failed"] = _same_p(
            [_lane(v, name) for v in failed], [_lane(v, name) for v in spared], 4
        )
        raw = np.frombuffer(b"".join(v.to_bytes(16, "big") for v in failed + spared), dtype=np.uint8)
        raw = raw.reshape(-1, 16)
        p[f"{name}'s value bytes, pooled"] = _uniform_p(raw.ravel(), 256)
        for position in range(16):
            p[f"{name}'s byte {position}, high nibble"] = _uniform_p(raw[:, position] >> 4, 16)
            p[f"{name}'s byte {position}, low nibble"] = _uniform_p(raw[:, position] & 15, 16)
    for region, found in sums.items():
        a, b = region
        p[f"the lanes of {region} in the sum of its values"] = _uniform_p(
            [_lane(s, a) * 4 + _lane(s, b) for s in found], 16
        )
    return p


def test_tags_of_tokens_outside_the_full_intersection_carry_no_failure_bit(
    view: CoordinatorView, truth: Truth
) -> None:
    """Opened with the coordinator's own key, the values of tokens outside the full intersection
    are uniform: each company's 2-bit lane in every region, alike over the regions where it
    failed every id and those where it failed none, every byte, and the lanes of the sums the
    coordinator can form (the two values of a pair token). Every check fails on v1's plain bits."""
    values = _opened(view)
    assert len(values) == sum(_regions({n: set(t) for n, t in _final_tokens(view).items()}).values())
    p = _uniformity(values)
    threshold = FAMILY_ALPHA / len(p)
    assert len(p) > 100
    assert {check: pv for check, pv in p.items() if pv < threshold} == {}
    # Protocol v1's plain bits, in the same regions with the same dummies, fail every one of the
    # same checks, each company's failed-vs-not-failed comparison among them.
    v1 = _uniformity(_v1_view(view, truth))
    assert set(v1) == set(p) and {check for check, pv in v1.items() if pv >= threshold} == set()
    # The key is the round's: the shared tokens' values add up to exactly the true patterns.
    patterns: Counter[str] = Counter()
    for held in values.values():
        if len(held) == K:
            total = sum(held.values()) % 2**128
            assert total < 4**K and all(_lane(total, name) < 2 for name in COMPANIES)
            patterns["".join(str(_lane(total, name)) for name in COMPANIES)] += 1
    assert patterns == Counter(PATTERNS)


# ------------------------------------------------------------------ 5. the released result


def test_the_released_result_is_the_plaintext_computation(view: CoordinatorView, truth: Truth) -> None:
    """The result as the auditor gets it and as the coordinator recorded it."""
    outcomes = [dict(truth.rows[name]) for name in COMPANIES]
    assert_same_integers(view.result, result_dict(plaintext_table(list(COMPANIES), outcomes)))
    assert view.result["pattern_counts"] == PATTERNS
    (recorded,) = [payload for kind, payload in view.recorded if kind == "result"]
    assert json.loads(recorded) == view.result


# ------------------------------------------------------------------ what is kept


def assert_keeps_nothing_of_the_lists(view: CoordinatorView, k: int, records: int) -> None:
    """The recorded lists are sealed (between companies) or fully blinded (the last hop), and after
    the round its store keeps no chunk, no tag key and not a byte of any list it relayed or
    counted (`records`: the true records of every list, a floor on how much is searched)."""
    assert {kind for kind, _ in view.recorded} == {"list-chunk", "result"}
    for chunk in view.chunks:
        assert chunk.round_id == view.round_id
        if chunk.hop < k - 1:
            assert chunk.sealed and not chunk.points and not chunk.tags
        else:
            assert not chunk.sealed
    assert view.state["phase"] == "COMPLETE"
    assert view.chunks_after == 0
    assert view.sealed_tag_key_after == b""
    relayed: list[bytes] = []
    for chunk in view.chunks:
        if chunk.sealed:
            relayed += [chunk.sealed[at : at + 32] for at in range(0, len(chunk.sealed) - 32, 512)]
        else:
            relayed += chunk_content(chunk) + [t[NONCE_SIZE:] for t in split_tags(chunk.tags)]
    assert len(relayed) > 2 * records
    for where, blob in view.files.items():
        if where.startswith("coordinator-state/"):
            assert Haystack(blob).found(relayed) == [], where


def test_what_the_coordinator_records_and_keeps_is_the_result_and_padded_sizes(
    view: CoordinatorView, truth: Truth
) -> None:
    """Beyond the released result and the padded counts, the recorded lists are sealed (between
    companies) or fully blinded (the last hop), and after the round the store keeps no list and
    no tag key: the final tags can never be opened again from what it keeps."""
    assert_keeps_nothing_of_the_lists(view, K, sum(truth.sizes.values()))
