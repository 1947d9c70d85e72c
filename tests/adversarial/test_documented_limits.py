"""Issue 11, items 5 and 6: what v1 cannot prevent, shown with its consequence.

docs/THREAT_MODEL.md states each of these; these tests keep the statements true (if a
change made one of them impossible, its test would fail and the document would be
corrected). The next protocol version (masked, re-randomised tags) removes them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.harness import Harness

from monoculture.client.company import shuffle_label
from monoculture.coordinator.counting import FinalList
from monoculture.coordinator.rounds import RoundBook
from monoculture.core.dataset import load_records
from monoculture.core.protocol import RoundPhase
from monoculture.core.psi_crypto import (
    NONCE_SIZE,
    POINT_SIZE,
    TagOpener,
    TagSealer,
    random_permutation,
    split_tags,
)

ROUND = "r-0123456789abcdef"
POPULATION = {
    "alpha": [(f"person-{i}", int(i % 2 == 0)) for i in range(60)],
    "beta": [(f"person-{i}", int(i % 3 == 0)) for i in range(20, 80)],
    "gamma": [(f"person-{i}", int(i % 5 == 0)) for i in range(10, 70)],
}


def test_a_relaying_company_can_swap_failure_tags_undetected() -> None:
    """A tag is bound to the round and its owner, not to its element: swapped, both open."""
    coordinator = TagOpener()
    sealer = TagSealer(ROUND, "alpha", coordinator.public_key)
    tags = split_tags(sealer.seal(np.array([0, 1, 0, 1], dtype=np.uint8)))
    opener = coordinator.opener_for(ROUND, "alpha", sealer.public_key)
    swapped = [tags[1], tags[0], tags[2], tags[3]]  # what a relaying company can do unseen
    assert opener.open(swapped).tolist() == [1, 0, 0, 1]


@pytest.fixture
def captured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A complete round, with the final lists as the coordinator received them."""
    finals: dict[str, FinalList] = {}
    original = RoundBook._final_list

    def keep(self: RoundBook, round_id: str, owner: str, hop: int) -> FinalList:
        finals[owner] = original(self, round_id, owner, hop)
        return finals[owner]

    monkeypatch.setattr(RoundBook, "_final_list", keep)
    harness = Harness(tmp_path, POPULATION)
    round_id = harness.open_round()
    harness.step_all()  # joined: alpha's round secrets exist (alpha's own, it shares them below)
    company_round = harness.daemons["alpha"]._round(round_id)
    assert company_round is not None
    seed = company_round.secrets.shuffle_seed
    assert harness.run(round_id) == RoundPhase.COMPLETE
    yield harness, round_id, finals, seed
    harness.close()


def test_the_coordinator_can_open_every_final_tag_not_only_the_shared(captured) -> None:
    """It holds every company's tag key: each company's failures over its whole list."""
    harness, round_id, finals, _ = captured
    tags = harness.book._rounds[round_id].company_tags
    for name, rows in POPULATION.items():
        final = finals[name]
        bits = tags[name].open([bytes(row) for row in final.tags])
        assert len(bits) == len(rows) and int(bits.sum()) == sum(f for _, f in rows)


def test_the_coordinator_and_one_company_link_that_companys_ids_to_tokens(captured) -> None:
    """A tag's nonce is the element's hop-0 position in its owner's list, unchanged round the
    ring: with alpha's shuffle (alpha's own secret), the coordinator maps every final token of
    alpha's list to an id, and reads off each id's membership in the other lists."""
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
