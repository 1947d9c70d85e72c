"""The coordinator's view of a round of four companies with every region padded (issue 12): what
the coordinator records (the test aid `record_dir`) and keeps (its database folder, its log)
after a real k = 4 round over mTLS, with `dummy_epsilon = 1` and a public minimum list size
(1,890) at which the 10% rule pads every Venn region but the output, the regions of three
companies too, holds nothing beyond the released result and DP-noised counts.

The k = 3 acceptance test (tests/test_coordinator_view.py, whose round runner and helpers this
reuses) has no region of three companies outside the output. Here the seeds of the four regions
of three go, sealed under pair keys, from each region's first member to the others through the
coordinator. The population is fully known, and so are the secrets of the first three companies,
read from their sealed round state while the round waits in OPEN for the fourth: from them the
test derives every pair key (checked against the key confirmations the coordinator relays),
every region's seed and noise but the fourth company's own singleton, and the dummy ids of every
other region. Then gamma is paused (SIGSTOP) until the others have confirmed their keys, so the
round waits in CONFIRMING with every envelope of region seeds stored (gamma leads no region):
the test takes the round's state and the database folder there, and lets gamma go on.

Checked, each on its own:

1. no id (of a person or a dummy), in any common encoding or fixed hash, and no seed or key of
   a company, in any recorded or kept byte (after the round, and while it waited in CONFIRMING);
2. every list size it is told or can count is padded, one size per company wherever it shows,
   first told in the hop-0 upload, consistent with the final lists, and exactly the true size
   plus the company's own dummies where its secrets are known;
3. each of the 14 regions but the full intersection is the true count + 0..2mu (exactly the
   noise drawn, where the seed is known), the full intersection exact;
4. the envelopes of region seeds it stores are exactly the round's (lengths, byte for byte the
   leaders' sealed envelopes), none alike, holding no seed in the clear, and none kept after the
   round;
5. the tags of tokens outside the full intersection carry no failure bit (every check fails on
   protocol v1's plain bits);
6. the released result is the plaintext computation; after the round nothing of any list and
   no tag key is kept.

No check found a leak.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_same_integers
from test_coordinator_view import (
    FAMILY_ALPHA,
    CoordinatorView,
    Haystack,
    Truth,
    Values,
    _final_tokens,
    _hash_to_curve,
    _id_forms,
    _lane,
    _needles,
    _opened,
    _read_only,
    _regions,
    _round_state,
    _same_p,
    _shift,
    _uniform_p,
    assert_headers_follow_the_padded_sizes,
    assert_keeps_nothing_of_the_lists,
    build_population,
    grouped_values,
    run_round,
)

from monoculture.analysis.metrics import result_dict
from monoculture.analysis.table import plaintext_table
from monoculture.client.state import RoundSecrets, SecretStore
from monoculture.core.dummies import (
    DummyPlan,
    Padding,
    SeedEnvelope,
    company_dummies,
    dummy_ids,
    led_regions,
    padded_regions,
    pair_seed,
    region_noise,
    region_seed,
    round_padding_level,
    sealed_seeds_size,
    singleton_noise,
)
from monoculture.core.masks import key_confirmation, pair_keys, transcript_digest
from monoculture.core.psi_crypto import POINT_SIZE, TAG_SIZE
from monoculture.core.relay import RelayPeer

pytestmark = pytest.mark.e2e

ROSTER = ("alpha", "beta", "gamma", "delta")
K = len(ROSTER)
FULL = ROSTER
DUMMY_EPSILON, DUMMY_DELTA = 1.0, 1e-6  # the coordinator's dummy delta is its default, 1e-6
PLAN = DummyPlan.for_round(DUMMY_EPSILON, DUMMY_DELTA, K)
MU = PLAN.mu  # 27: each of the 14 padded regions gets mu + Z in [0, 2 mu] dummies
# The 10% rule: a company adds (2^(k-1) - 1) mu = 189 dummies on average, 10% of 1,890.
MIN_LIST_SIZE = 10 * PLAN.expected_dummies_per_company(Padding.ALL)
PADDED = padded_regions(ROSTER, Padding.ALL)  # the 14 regions but the full intersection
TRIPLES = [r for r in PADDED if len(r) == 3]

# True Venn regions outside the full intersection; with the output's 400 every list is 1,910 to 1,980.
REGION_SIZES: dict[tuple[str, ...], int] = {
    ("alpha",): 330, ("beta",): 300, ("gamma",): 280, ("delta",): 310,
    ("alpha", "beta"): 240, ("alpha", "gamma"): 220, ("alpha", "delta"): 200,
    ("beta", "gamma"): 230, ("beta", "delta"): 250, ("gamma", "delta"): 210,
    ("alpha", "beta", "gamma"): 190, ("alpha", "beta", "delta"): 170,
    ("alpha", "gamma", "delta"): 180, ("beta", "gamma", "delta"): 200,
}  # fmt: skip
# Outside the full intersection a company fails every id of a region (1) or none (0), a bit per
# member in roster order: each company has regions of both kinds, and members disagree.
_FAIL_BITS = {
    ("alpha",): "1", ("beta",): "0", ("gamma",): "1", ("delta",): "0",
    ("alpha", "beta"): "01", ("alpha", "gamma"): "10", ("alpha", "delta"): "11",
    ("beta", "gamma"): "00", ("beta", "delta"): "10", ("gamma", "delta"): "01",
    ("alpha", "beta", "gamma"): "010", ("alpha", "beta", "delta"): "101",
    ("alpha", "gamma", "delta"): "001", ("beta", "gamma", "delta"): "110",
}  # fmt: skip
FAILS = {
    (name, region): int(bit)
    for region, bits in _FAIL_BITS.items()
    for name, bit in zip(region, bits, strict=True)
}
# The full intersection: how many shared ids have each failure pattern (alpha, beta, gamma, delta).
PATTERNS = {
    "0000": 40, "0001": 22, "0010": 19, "0011": 25, "0100": 21, "0101": 18, "0110": 27, "0111": 20,
    "1000": 23, "1001": 26, "1010": 17, "1011": 24, "1100": 28, "1101": 19, "1110": 21, "1111": 50,
}  # fmt: skip
SEED = 20240613  # the population only; every key and every dummy is the parties' own
KNOWN = ROSTER[:-1]  # whose secrets the test reads while the round waits for the last company
HELD = "gamma"  # paused while the others confirm: the round waits in CONFIRMING (it leads no region)


# ------------------------------------------------------------------ the round


@dataclass
class Round:
    """The coordinator's view, the truth, and what the test knows of the companies' secrets."""

    view: CoordinatorView
    truth: Truth
    secrets: dict[str, RoundSecrets]  # the first three companies', as sealed at their join
    peers: list[RelayPeer]  # every company's signed keys, as the coordinator stored them
    # The round's state and the bytes of the database folder while it waited in CONFIRMING for
    # HELD, every other company confirmed: the envelopes of region seeds as the coordinator stored them.
    confirming: dict
    confirming_files: dict[str, bytes]

    @cached_property
    def envelopes(self) -> dict[tuple[str, str], bytes]:
        """(sender, receiver) -> the envelope of region seeds the coordinator stored."""
        return {
            (sender, receiver): bytes.fromhex(sealed)
            for sender, envelopes in self.confirming["region_seeds"].items()
            for receiver, sealed in envelopes.items()
        }

    @cached_property
    def transcript(self) -> bytes:
        (settings,) = {s.settings for s in self.secrets.values()}
        return transcript_digest(self.view.round_id, ROSTER, self.peers, settings)

    @cached_property
    def pair_keys(self) -> dict[tuple[str, str], bytes]:
        """s_ij of every pair (ring order), from the known companies' tag keys: every pair holds one."""
        public = {peer.company: peer.tag_public_key for peer in self.peers}
        keys: dict[tuple[str, str], bytes] = {}
        for name, own in self.secrets.items():
            others = {other: key for other, key in public.items() if other != name}
            derived = pair_keys(
                own.tag_private_key, name, others, self.transcript, self.view.round_id, ROSTER
            )
            for position, key in derived.items():
                pair = tuple(sorted((name, ROSTER[position]), key=ROSTER.index))
                assert keys.setdefault(pair, key) == key, pair  # both members derive the same
        assert len(keys) == K * (K - 1) // 2
        return keys

    def seed(self, region: tuple[str, ...]) -> bytes | None:
        """The seed region R's noise and dummy ids come from (None: the last company's own)."""
        if len(region) == 1:
            own = self.secrets.get(region[0])
            return own.dummy_seed if own else None
        if len(region) == 2:
            return pair_seed(self.pair_keys[region], self.view.round_id, region)
        return region_seed(self.secrets[region[0]].dummy_seed, self.view.round_id, region)

    def noise(self, region: tuple[str, ...]) -> int | None:
        """d_R as every member of R draws it (None where the seed is unknown)."""
        seed, round_id = self.seed(region), self.view.round_id
        if seed is None:
            return None
        if len(region) == 1:
            return singleton_noise(seed, round_id, region[0], PLAN.eps_c, PLAN.mu)
        return region_noise(seed, round_id, region, PLAN.eps_c, PLAN.mu)

    @cached_property
    def dummies(self) -> dict[tuple[str, ...], list[str]]:
        """Every region's dummy ids where its seed is known."""
        out = {}
        for region in PADDED:
            seed, count = self.seed(region), self.noise(region)
            if seed is not None and count is not None:
                out[region] = dummy_ids(seed, self.view.round_id, region, count)
        return out

    def company_dummies(self, name: str) -> list[str]:
        """The dummy ids a known company adds, as its daemon computes them."""
        own = self.secrets[name]
        by_position = {
            ROSTER.index(other): key for pair, key in self.pair_keys.items() if name in pair
            for other in pair if other != name
        }  # fmt: skip
        received = {r: s for r in TRIPLES if name in r and r[0] != name and (s := self.seed(r)) is not None}
        return company_dummies(
            name, ROSTER, self.view.round_id, PLAN, own.dummy_seed, by_position, Padding.ALL, received
        )


def _signed_keys(view: CoordinatorView, database: Path) -> list[RelayPeer]:
    db = _read_only(database)
    try:
        rows = db.execute(
            "SELECT company, relay_public_key, tag_public_key, certificate_pem, signature FROM peers"
            " WHERE round_id = ?",
            (view.round_id,),
        ).fetchall()
    finally:
        db.close()
    return [RelayPeer(c, bytes(r), bytes(t), bytes(p), bytes(s)) for c, r, t, p, s in rows]


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory) -> Round:
    assert round_padding_level(PLAN, MIN_LIST_SIZE) is Padding.ALL
    assert round_padding_level(PLAN, MIN_LIST_SIZE - 1) is Padding.PAIRS  # the rule binds right here
    truth = build_population(ROSTER, REGION_SIZES, FAILS, PATTERNS, SEED)
    assert min(truth.sizes.values()) >= MIN_LIST_SIZE
    folder = tmp_path_factory.mktemp("coordinator-view-k4")
    database = folder / "coordinator-state" / "coordinator.sqlite"
    secrets: dict[str, RoundSecrets] = {}
    held: list[subprocess.Popen[bytes]] = []
    confirming: dict = {}
    confirming_files: dict[str, bytes] = {}

    def while_open(round_id: str, processes: Mapping[str, subprocess.Popen[bytes]]) -> None:
        """Every company but the last enrolled: read the others' sealed round state, then pause
        HELD (SIGSTOP), so the round waits in CONFIRMING once the others have confirmed."""
        for name in KNOWN:
            loaded = SecretStore(folder / f"client-state-{name}", name).load(round_id)
            assert loaded is not None and loaded.dummy_seed, name
            secrets[name] = loaded
        held.append(processes[HELD])
        processes[HELD].send_signal(signal.SIGSTOP)

    def once_all_started(round_id: str) -> None:
        """The round cannot leave CONFIRMING without HELD: once every other company has
        confirmed, take the state and the database folder, then let HELD go on."""
        try:
            deadline = time.monotonic() + 120
            while set(_round_state(database, round_id)["confirmations"]) != set(ROSTER) - {HELD}:
                assert time.monotonic() < deadline, "the companies did not confirm their keys"
                time.sleep(0.05)
            confirming.update(_round_state(database, round_id))
            for path in sorted(database.parent.iterdir()):
                with contextlib.suppress(FileNotFoundError):  # (none goes while it waits, but if one did)
                    confirming_files[f"coordinator-state, while confirming/{path.name}"] = path.read_bytes()
        finally:
            held[0].send_signal(signal.SIGCONT)

    view = run_round(
        folder, ROSTER, truth.rows, dummy_epsilon=DUMMY_EPSILON, min_list_size=MIN_LIST_SIZE,
        while_open=while_open, once_all_started=once_all_started,
    )  # fmt: skip
    return Round(view, truth, secrets, _signed_keys(view, database), confirming, confirming_files)


def test_the_round_is_the_one_announced_and_the_secrets_read_are_the_rounds(done: Round) -> None:
    """Every party computed ALL from the public minimum; the pair keys the test derives from the
    secrets it read are the companies' own: each key confirmation the coordinator held while it
    waited for HELD is the MAC under one of them."""
    view, confirming = done.view, done.confirming
    assert view.state["min_list_size"] == MIN_LIST_SIZE
    assert (view.state["dummy_epsilon"], view.state["dummy_delta"]) == (DUMMY_EPSILON, DUMMY_DELTA)
    for own in done.secrets.values():
        assert (own.dummy_epsilon, own.dummy_delta, own.dummy_padding) == (1.0, 1e-6, Padding.ALL.value)
    assert {name: own.list_size for name, own in done.secrets.items()} == {
        name: done.truth.sizes[name] for name in KNOWN
    }
    assert confirming["phase"] == "CONFIRMING"
    macs = {(s, r): mac for s, by in confirming["confirmations"].items() for r, mac in by.items()}
    assert set(macs) == {(s, r) for s, r in itertools.permutations(ROSTER, 2) if s != HELD}
    for (sender, receiver), mac in macs.items():
        key = done.pair_keys[tuple(sorted((sender, receiver), key=ROSTER.index))]
        assert key_confirmation(key, done.transcript, sender, receiver).hex() == mac


# ------------------------------------------------------------------ 1. no id, no secret


def _forms_of_bytes(secret: bytes) -> Iterator[tuple[str, bytes]]:
    yield "raw", secret
    yield "hex", secret.hex().encode()
    yield "HEX", secret.hex().upper().encode()
    yield "base64", base64.b64encode(secret)[:-4]
    yield "base64url", base64.urlsafe_b64encode(secret)[:-4]


def _secret_needles(done: Round) -> tuple[list[bytes], list[str]]:
    """Every seed and key of a company the test knows, the dummy ids and H(dummy id)."""
    secrets: dict[str, bytes] = {}
    for name, own in done.secrets.items():
        for what in ("dummy_seed", "blinding_key", "tag_private_key", "relay_private_key", "shuffle_seed"):
            secrets[f"{name}'s {what}"] = getattr(own, what)
    for pair, key in done.pair_keys.items():
        secrets[f"pair key of {pair}"] = key
    for region in PADDED:
        seed = done.seed(region)
        if len(region) > 1 and seed is not None:
            secrets[f"seed of region {region}"] = seed
    needles, labels = [], []
    for what, secret in secrets.items():
        for form, needle in _forms_of_bytes(secret):
            needles.append(needle)
            labels.append(f"{form} of {what}")
    dummies = [x for ids in done.dummies.values() for x in ids]
    for dummy, point in zip(dummies, _hash_to_curve(dummies), strict=True):
        random_part = bytes.fromhex(dummy.removeprefix("~dummy~"))
        for form, needle in [*_id_forms(dummy), ("its 128 random bits", random_part)]:
            needles.append(needle)
            labels.append(f"{form} of dummy {dummy}")
        needles += [point, point[1:]]
        labels += [f"H({dummy})", f"H({dummy}), x-coordinate"]
    return needles, labels


def test_no_id_no_dummy_id_and_no_seed_or_key_is_in_any_recorded_byte(done: Round) -> None:
    """Searched: record_dir (every chunk of every hop, the result), the database folder after the
    round (database, -wal, -shm, key file) and the coordinator's log; for every id of every
    company its text encodings, fixed hashes, u(x) and H(x); for every dummy id the test can
    derive (all but the last company's own) the same and its random bits; every seed, pair key and
    private key of the three known companies, raw, hex and base64."""
    view, truth = done.view, done.truth
    needles, labels = _needles(truth)
    more, more_labels = _secret_needles(done)
    needles, labels = needles + more, labels + more_labels
    dummies = sum(len(ids) for ids in done.dummies.values())
    assert len(needles) > 40 * (len(truth.ids) + dummies) and dummies > 0
    # The search finds what is there: a planted dummy id's random bits and a planted region seed.
    planted_dummy = labels.index(f"its 128 random bits of dummy {done.dummies[TRIPLES[0]][0]}")
    planted_seed = labels.index(f"raw of seed of region {TRIPLES[-1]}")
    planted = Haystack(b"noise" + needles[planted_dummy] + b"." + needles[planted_seed] + b"noise")
    assert set(planted.found(needles)) == {planted_dummy, planted_seed}
    # Every list at every hop was recorded: at least the true sizes' points and tags, k hops each.
    assert len(view.files["recorded/stored.bin"]) > K * sum(truth.sizes.values()) * (POINT_SIZE + TAG_SIZE)
    files = {**view.files, **done.confirming_files}
    leaks = {where: [labels[i] for i in Haystack(blob).found(needles)] for where, blob in files.items()}
    assert {where: found[:5] for where, found in leaks.items() if found} == {}


# ------------------------------------------------------------------ 2. padded list sizes


def test_every_list_size_the_coordinator_sees_is_padded(done: Round) -> None:
    """Enrolment and key confirmations tell no size; the hop-0 uploads (the round's state), every
    chunk header of every hop, the final lists' lengths and the released list_sizes tell one padded
    size per company: the true size plus its singleton's, 3 pairs' and 3 triples' dummies."""
    view, truth = done.view, done.truth
    padded = {name: int(view.state["list_sizes"][name]) for name in ROSTER}  # from the hop-0 uploads
    # Every company but HELD had confirmed its keys, and the coordinator knew no size yet.
    assert done.confirming["phase"] == "CONFIRMING" and done.confirming["list_sizes"] == {}
    assert sorted(detail for _, action, detail in view.audit if action == "enrolled") == ["list size 0"] * K
    assert re.findall(r"enrolled with a list of (\d+)", view.log) == ["0"] * K
    confirmed = [detail for _, action, detail in view.audit if action == "confirmed pair keys"]
    assert confirmed == [f"{K - 1} peers"] * K  # no size with the confirmations either
    assert_headers_follow_the_padded_sizes(view, padded)
    tokens = _final_tokens(view)
    assert {name: len(t) for name, t in tokens.items()} == padded
    assert view.result["list_sizes"] == padded
    said = "\n".join([view.log, *(detail for _, _, detail in view.audit)])
    told = {
        int(a or b) for a, b in re.findall(r"(?:list size|list of) (\d+)|(\d+) (?:records|elements)", said)
    }
    assert told <= {0, *padded.values()}
    # Padded: the 7 padded regions holding the company, 0..2 mu each, add up to the extra size.
    extra = {name: padded[name] - truth.sizes[name] for name in ROSTER}
    assert all(0 < e <= 7 * 2 * MU for e in extra.values()), extra
    seen = _regions({name: set(t) for name, t in tokens.items()}, ROSTER)
    for name in ROSTER:
        assert extra[name] == sum(seen[r] - truth.regions[r] for r in PADDED if name in r), name
    # Exactly the company's own dummies where its secrets are known (as its daemon draws them).
    for name in KNOWN:
        own = done.company_dummies(name)
        assert len(set(own)) == len(own) == extra[name], name
        assert set(own) == {x for r, ids in done.dummies.items() if name in r for x in ids}, name


# ------------------------------------------------------------------ 3. Venn regions


def test_every_one_of_the_14_regions_but_the_output_is_padded_by_0_to_2mu(done: Round) -> None:
    """The regions the coordinator computes from the fully blinded lists it recorded: every
    singleton, pair and triple is the true count plus 0..2mu dummies (exactly the noise its
    members drew, where the test knows the seed), the full intersection exact."""
    view, truth = done.view, done.truth
    tokens = _final_tokens(view)
    assert all(len(set(t)) == len(t) for t in tokens.values())
    seen = _regions({name: set(t) for name, t in tokens.items()}, ROSTER)
    assert [r for r in seen if r != FULL] == PADDED and len(PADDED) == 14
    padding = {r: seen[r] - truth.regions[r] for r in PADDED}
    assert all(0 <= d <= 2 * MU for d in padding.values()), padding
    assert seen[FULL] == truth.regions[FULL] == sum(PATTERNS.values())  # the output: exact
    drawn = {r: done.noise(r) for r in PADDED}
    assert [r for r, d in drawn.items() if d is None] == [(ROSTER[-1],)]  # its own seed stays its own
    assert {r: d for r, d in padding.items() if drawn[r] is not None} == {
        r: d for r, d in drawn.items() if d is not None
    }
    # The regions of three are padded: each of the 4 draws is 0 with probability t^mu / C = 3.4e-7
    # (t = e^-1/2, noise_pmf), so all 4 zero (a false failure) has probability 1.3e-26.
    assert sum(padding[r] for r in TRIPLES) > 0, padding


# ------------------------------------------------------------------ 4. the region seeds it stores


def _repeated_windows(blobs: Sequence[bytes], width: int = 8) -> list[bytes]:
    """Every `width`-byte window occurring twice or more over `blobs` (within one or across)."""
    counts = Counter(blob[at : at + width] for blob in blobs for at in range(len(blob) - width + 1))
    return [window for window, count in counts.items() if count > 1]


def test_the_region_seeds_it_stores_are_sealed_envelopes_of_the_exact_length(done: Round) -> None:
    """RoundState.region_seeds in its database while the round ran (sender -> receiver ->
    envelope): exactly the envelopes the round needs, each of exactly `sealed_seeds_size` (n
    seeds + a GCM tag), no 8 bytes alike anywhere among them (a seed in the clear goes to two
    receivers: it would repeat), each byte for byte the leader's sealed envelope and opening,
    under the pair key the coordinator lacks, to the leader's seeds; none kept after the round."""
    view, stored = done.view, done.envelopes
    expected = {
        (s, r): size
        for s, r in itertools.permutations(ROSTER, 2)
        if (size := sealed_seeds_size(s, r, ROSTER, Padding.ALL))
    }
    # alpha leads 3 triples (2 of them hold each other company), beta leads (beta, gamma, delta).
    assert expected == {
        ("alpha", "beta"): 80, ("alpha", "gamma"): 80, ("alpha", "delta"): 80,
        ("beta", "gamma"): 48, ("beta", "delta"): 48,
    }  # fmt: skip
    assert {pair: len(envelope) for pair, envelope in stored.items()} == expected
    assert _repeated_windows(list(stored.values())) == []
    # The check's power: the same seeds in the clear repeat (each triple's seed goes to 2 members).
    plain = [b"".join(_seeds(done, s, r).values()) + bytes(16) for s, r in stored]
    assert [len(p) for p in plain] == [len(e) for e in stored.values()]
    assert len(_repeated_windows(plain)) >= len(TRIPLES) * 25
    for (sender, receiver), envelope in stored.items():
        key = done.pair_keys[tuple(sorted((sender, receiver), key=ROSTER.index))]
        sealing = SeedEnvelope(key, view.round_id, sender, receiver, ROSTER, Padding.ALL)
        assert envelope == sealing.seal(done.secrets[sender].dummy_seed)  # nothing but the leader's
        assert sealing.open(envelope) == _seeds(done, sender, receiver)
        assert all(seed[:8] not in envelope for seed in _seeds(done, sender, receiver).values())
    # After the round: no envelope is kept (the state drops them; no byte of one is anywhere).
    assert view.state["region_seeds"] == {} and view.state["confirmations"] == {}
    forms = [form for e in stored.values() for form in (e, e.hex().encode(), e.hex().upper().encode())]
    assert {where for where, blob in view.files.items() if any(form in blob for form in forms)} == set()


def _seeds(done: Round, sender: str, receiver: str) -> dict[tuple[str, ...], bytes]:
    """The seeds `sender`'s envelope to `receiver` holds, derived from the leader's own seed."""
    return {
        r: region_seed(done.secrets[sender].dummy_seed, done.view.round_id, r)
        for r in led_regions(sender, receiver, ROSTER, Padding.ALL)
    }


# ------------------------------------------------------------------ 5. tags carry no failure bit


def _v1_view(done: Round) -> Values:
    """What protocol v1's tags (a plain failure bit) would have opened to, in the same regions
    with the same dummies (failure bit 0): built from the truth, to show the checks' power."""
    seen = _regions({name: set(t) for name, t in _final_tokens(done.view).items()}, ROSTER)
    values: Values = {}
    for region, size in REGION_SIZES.items():
        for index in range(seen[region]):
            bit = {name: FAILS[(name, region)] if index < size else 0 for name in region}
            values[(region, index)] = {name: bit[name] << _shift(name, ROSTER) for name in region}
    return values


def _uniformity(values: Values) -> dict[str, float]:
    """p-values of a compact family of checks that the values of tokens outside the full
    intersection are uniform and alike for failed and not-failed ids; small p: a bit shows."""
    by, sums = grouped_values(values, ROSTER)
    p: dict[str, float] = {}
    for (name, region), found in by.items():
        p[f"{name}'s lane over region {region}"] = _uniform_p([_lane(v, name, ROSTER) for v in found], 4)
    for name in ROSTER:
        failed = [v for (n, r), vs in by.items() if n == name and FAILS[(n, r)] for v in vs]
        spared = [v for (n, r), vs in by.items() if n == name and not FAILS[(n, r)] for v in vs]
        p[f"{name}'s lane, failed vs not failed"] = _same_p(
            [_lane(v, name, ROSTER) for v in failed], [_lane(v, name, ROSTER) for v in spared], 4
        )
        raw = np.frombuffer(b"".join(v.to_bytes(16, "big") for v in failed + spared), dtype=np.uint8)
        p[f"{name}'s value bytes, pooled"] = _uniform_p(raw, 256)
        p[f"{name}'s lowest byte (every lane)"] = _uniform_p(raw.reshape(-1, 16)[:, -1], 256)
    for region, found in sums.items():
        for name in region:
            p[f"{name}'s lane in the sums over region {region}"] = _uniform_p(
                [_lane(s, name, ROSTER) for s in found], 4
            )
    return p


def test_tags_of_tokens_outside_the_full_intersection_carry_no_failure_bit(done: Round) -> None:
    """Opened with the coordinator's own key, the values of tokens outside the full intersection
    are uniform: each company's 2-bit lane in each of its 7 padded regions, alike over the
    regions where it failed every id and those where it failed none, its value bytes and its
    lowest byte, and every member's lane in the sums the coordinator can form (the 2 or 3 values
    of a pair's or a triple's token). Every check fails on v1's plain bits."""
    view = done.view
    values = _opened(view)
    assert len(values) == sum(_regions({n: set(t) for n, t in _final_tokens(view).items()}, ROSTER).values())
    p = _uniformity(values)
    threshold = FAMILY_ALPHA / len(p)
    assert len(p) == 28 + 3 * K + 24
    assert {check: pv for check, pv in p.items() if pv < threshold} == {}
    v1 = _uniformity(_v1_view(done))
    assert set(v1) == set(p) and {check for check, pv in v1.items() if pv >= threshold} == set()
    # The key is the round's: the shared tokens' values add up to exactly the true patterns.
    patterns: Counter[str] = Counter()
    for held in values.values():
        if len(held) == K:
            total = sum(held.values()) % 2**128
            assert total < 4**K and all(_lane(total, name, ROSTER) < 2 for name in ROSTER)
            patterns["".join(str(_lane(total, name, ROSTER)) for name in ROSTER)] += 1
    assert patterns == Counter(PATTERNS)


# ------------------------------------------------------------------ 6. the result, and what is kept


def test_the_released_result_is_the_plaintext_computation(done: Round) -> None:
    view, truth = done.view, done.truth
    outcomes = [dict(truth.rows[name]) for name in ROSTER]
    assert_same_integers(view.result, result_dict(plaintext_table(list(ROSTER), outcomes)))
    assert view.result["pattern_counts"] == PATTERNS
    (recorded,) = [payload for kind, payload in view.recorded if kind == "result"]
    assert json.loads(recorded) == view.result


def test_what_the_coordinator_records_and_keeps_is_the_result_and_padded_sizes(done: Round) -> None:
    """The recorded lists are sealed (between companies) or fully blinded (the last hop); after the
    round the store keeps no chunk, no byte of any list and no tag key."""
    view, truth = done.view, done.truth
    assert_keeps_nothing_of_the_lists(view, K, sum(truth.sizes.values()))
