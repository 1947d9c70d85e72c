"""Every role of a round in one process, without a network: the real state
machine, the real crypto and the real wire chunks, driven in ring order.

For property tests and quick experiments; the CLI's `simulate` runs separate
processes over gRPC instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from monoculture.core.company import OperationCounts, blind_own_list, relay_list
from monoculture.core.dataset import CompanyRecords
from monoculture.core.metrics import PatternTable
from monoculture.core.protocol import FinalList, Ring, RoundState, count_patterns, new_round_id
from monoculture.core.psi_crypto import BlindingKey, TagOpener, TagSealer, split_tags
from monoculture.core.wire import ChunkSequence, ListAddress, list_chunks


def _through_wire(
    address: ListAddress, sender: str, points: list[bytes], tags: bytes, chunk: int
) -> tuple[list[bytes], bytes]:
    sequence = ChunkSequence(expected=address, sender=sender)
    received: list[bytes] = []
    for message in list_chunks(address, sender, points, tags, chunk):
        received += sequence.add(message)
    sequence.finish()
    return received, sequence.tags()


def run_round_in_process(
    companies: Sequence[tuple[str, CompanyRecords]], chunk_elements: int = 64
) -> PatternTable:
    names = tuple(name for name, _ in companies)
    state = RoundState(new_round_id(), Ring(names))
    opener = TagOpener()
    keys = {name: BlindingKey.fresh() for name in names}
    counts = {name: OperationCounts() for name in names}
    lists: dict[tuple[str, int], tuple[list[bytes], bytes]] = {}
    company_tags = {}
    for name, records in companies:
        sealer = TagSealer(state.round_id, name, opener.public_key)
        state.enroll(name, len(records))
        company_tags[name] = opener.opener_for(state.round_id, name, sealer.public_key)
        points, tags = blind_own_list(records, keys[name], sealer, counts[name])
        state.check_upload(name, name, 0, len(points))
        lists[(name, 0)] = _through_wire(
            ListAddress(state.round_id, name, 0), name, points, tags, chunk_elements
        )
        state.record_upload(name, 0)
    for hop in range(1, state.ring.parties):
        for owner in names:
            blinder = state.ring.blinder(owner, hop)
            state.check_download(blinder, owner, hop - 1)
            points, tags = lists.pop((owner, hop - 1))
            points, tags = relay_list(points, tags, keys[blinder], counts[blinder])
            state.check_upload(blinder, owner, hop, len(points))
            address = ListAddress(state.round_id, owner, hop)
            lists[(owner, hop)] = _through_wire(address, blinder, points, tags, chunk_elements)
            state.record_upload(owner, hop)
    finals = []
    for owner in names:
        points, tags = lists.pop((owner, state.ring.final_hop))
        finals.append(FinalList(owner, b"".join(points), split_tags(tags)))
    return count_patterns(names, finals, company_tags)
