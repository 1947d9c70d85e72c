"""Issue 11 items 5 and 6, and issue 12: what the failure tags give the coordinator and a
relaying company.

Protocol v2 (masked tags, core/masks.py) removes two of v1's limits, shown here failing on
v1: a relaying company that swaps failure tags between elements now fails the round, and
the coordinator that opens every final tag gets masked values that tell it nothing outside
the shared individuals. One limit stays until tags are re-randomised at every hop (not built
yet): the coordinator and one company link that company's ids to their final tokens.
docs/THREAT_MODEL.md states each; these tests keep the statements true.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.harness import Harness, keep_final_lists

from monoculture.client import company as company_steps
from monoculture.client.company import shuffle_label
from monoculture.core.dataset import load_records
from monoculture.core.masks import add_values, decode_sums, values_from_bytes
from monoculture.core.protocol import RoundPhase
from monoculture.core.psi_crypto import NONCE_SIZE, POINT_SIZE, TAG_SIZE, random_permutation

POPULATION = {
    "alpha": [(f"person-{i}", int(i % 2 == 0)) for i in range(60)],
    "beta": [(f"person-{i}", int(i % 3 == 0)) for i in range(20, 80)],
    "gamma": [(f"person-{i}", int(i % 5 == 0)) for i in range(10, 70)],
}


def test_a_relaying_company_that_swaps_failure_tags_is_seen_in_the_release(
    tmp_path: Path, monkeypatch
) -> None:
    """Before (v1): two swapped tags opened cleanly and moved bits between individuals unseen.
    Now each tag's value is masked by its own individual's id: a swapped pair no longer adds up.
    The round completes (failing it would be an oracle, tests/adversarial/test_round_oracle.py);
    the sums that do not decode leave N and are counted apart, `undecodable_sums`, which an exact
    release does not publish (under DP it is published with noise)."""
    everyone = {name: [(pid, bit) for pid, bit in rows if 20 <= int(pid.split("-")[1]) < 60]
                for name, rows in POPULATION.items()}  # every element shared  # fmt: skip
    honest = Harness(tmp_path / "honest", everyone)
    honest_id = honest.open_round()
    assert honest.run(honest_id) == RoundPhase.COMPLETE
    original = company_steps.outgoing_chunks

    def swapping(address, sender, outgoing, sealer, chunk_elements=16, signer=None):
        for chunk in original(address, sender, outgoing, None, chunk_elements):
            if sender == "beta" and address.hop == 1 and chunk.chunk_index == 0:
                tags = bytearray(chunk.tags)
                first, second = tags[:TAG_SIZE], tags[TAG_SIZE : 2 * TAG_SIZE]
                tags[:TAG_SIZE], tags[TAG_SIZE : 2 * TAG_SIZE] = second, first
                chunk.tags = bytes(tags)
            sealed = sealer.seal(chunk) if sealer is not None else chunk
            yield signer.sign(sealed) if signer is not None else sealed

    monkeypatch.setattr("monoculture.client.daemon.outgoing_chunks", swapping)
    harness = Harness(tmp_path / "swapped", everyone)
    round_id = harness.open_round()
    assert harness.run(round_id) == RoundPhase.COMPLETE
    swapped, clean = harness.result(round_id), honest.result(honest_id)
    assert clean["shared_individuals"] == 40
    assert swapped["shared_individuals"] == 38  # both swapped elements' sums left N
    assert clean["undecodable_sums"] is None and swapped["undecodable_sums"] is None
    assert "not published in an exact release" in swapped["undecodable_sums_note"]
    harness.close()
    honest.close()


@pytest.fixture
def captured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A complete round, with the final lists as the coordinator received them."""
    finals = keep_final_lists(monkeypatch)
    harness = Harness(tmp_path, POPULATION)
    round_id = harness.open_round()
    harness.step_all()  # joined: alpha's round secrets exist (alpha's own, it shares them below)
    company_round = harness.daemons["alpha"]._round(round_id)
    assert company_round is not None
    seed = company_round.secrets.shuffle_seed
    assert harness.run(round_id) == RoundPhase.COMPLETE
    yield harness, round_id, finals, seed
    harness.close()


def test_the_coordinator_opening_every_final_tag_learns_nothing_outside_the_shared(captured) -> None:
    """It holds every company's tag key and opens every tag. Before (v1): each company's
    failures over its whole list. Now: masked values; those of an individual not held by
    every company, alone or summed over the companies that hold it, are not a pattern."""
    harness, round_id, finals, _ = captured
    openers = harness.book._rounds[round_id].company_tags
    names = list(POPULATION)
    values: dict[str, dict[bytes, np.ndarray]] = {}
    for name in names:
        final = finals[name]
        opened = openers[name].open([bytes(row) for row in final.tags])
        assert len(opened) == len(POPULATION[name])  # every tag opens...
        tokens = [final.tokens[p : p + POINT_SIZE] for p in range(0, len(final.tokens), POINT_SIZE)]
        values[name] = {
            token: values_from_bytes(row.tobytes()) for token, row in zip(tokens, opened, strict=True)
        }
    shared = set.intersection(*(set(v) for v in values.values()))
    partial = 0
    for name in names:
        for token, value in values[name].items():
            if token in shared:
                continue
            holders = [other for other in names if token in values[other]]
            total = value if holders == [name] else None
            if total is None:
                total = values[holders[0]][token]
                for other in holders[1:]:
                    total = add_values(total, values[other][token])
            _, _, ok = decode_sums(total, len(names))
            assert not bool(ok[0])  # ...but tells no pattern (chance: about 2^-100 per token)
            partial += 1
    assert partial > 0 and len(shared) > 0
    total = None
    for name in names:  # the shared individuals' sums are the patterns the round counted
        stacked = np.concatenate([values[name][token] for token in sorted(shared)])
        total = stacked if total is None else add_values(total, stacked)
    assert total is not None and bool(decode_sums(total, len(names))[2].all())


def test_the_coordinator_and_one_company_link_that_companys_ids_to_tokens(captured) -> None:
    """Still true in v2 (stated): a tag's nonce is the element's hop-0 position in its owner's
    list, unchanged round the ring: with alpha's shuffle (alpha's own secret), the coordinator
    maps every final token of alpha's list to an id, and reads off each id's membership in the
    other lists."""
    harness, _, finals, seed = captured
    records = load_records(harness.configs["alpha"].data)
    order = random_permutation(len(records), seed, shuffle_label("alpha", 0))
    ids = [records.ids.take([int(i)])[0] for i in order]  # ids in hop-0 position order
    tokens = {name: {final.tokens[p : p + POINT_SIZE] for p in range(0, len(final.tokens), POINT_SIZE)}
              for name, final in finals.items()}  # fmt: skip
    final = finals["alpha"]
    linked: dict[str, set[str]] = {}
    for row, tag in enumerate(final.tags):
        position = int.from_bytes(bytes(tag[:NONCE_SIZE]), "big")
        token = final.tokens[row * POINT_SIZE : (row + 1) * POINT_SIZE]
        linked[ids[position]] = {name for name in ("beta", "gamma") if token in tokens[name]}
    for person, _ in POPULATION["alpha"]:
        truth = {name for name in ("beta", "gamma") if any(i == person for i, _ in POPULATION[name])}
        assert linked[person] == truth
