"""Every role of a round in one process, without a network: the real state
machine, the real crypto (blinding, tags, sealed relays) and the real wire
chunks, driven in ring order.

For property tests and quick experiments; the CLI's `simulate` runs separate
processes over gRPC instead. Relay keys are not certified here (as with
--insecure): there is no transport to authenticate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from monoculture.analysis.table import PatternTable
from monoculture.client.company import (
    ListInTransit,
    ListReceiver,
    Masking,
    OperationCounts,
    Rerandomising,
    blind_own_list,
    outgoing_chunks,
    relay_list,
)
from monoculture.coordinator.counting import (
    FinalList,
    GroupedCounts,
    count_group_patterns,
    count_patterns,
    count_rerandomised,
)
from monoculture.coordinator.state import RoundState, new_round_id
from monoculture.core.dataset import CompanyRecords
from monoculture.core.masks import pair_keys, transcript_digest
from monoculture.core.protocol import Ring
from monoculture.core.psi_crypto import BlindingKey, TagOpener, TagSealer
from monoculture.core.relay import RelayKeys, RelayPeer
from monoculture.core.rerandomise import CoordinatorKey
from monoculture.core.wire import ChunkSequence, ListAddress, chunk_content
from monoculture.v1 import monoculture_pb2 as pb


@dataclass
class _Company:
    name: str
    records: CompanyRecords
    key: BlindingKey = field(default_factory=BlindingKey.fresh)
    relay: RelayKeys = field(default_factory=RelayKeys)
    counts: OperationCounts = field(default_factory=OperationCounts)

    def load(self) -> CompanyRecords:
        return self.records


@dataclass
class ObservedRound:
    """A round in one process, with what a test plays the parties' views from: every final
    list (the coordinator's), each owner's list as it left hop 0 (the owner's), every company's
    masking, and the coordinator's tag keys."""

    counts: GroupedCounts
    round_id: str
    finals: dict[str, FinalList] = field(default_factory=dict)
    sent_at_hop_0: dict[str, bytes] = field(default_factory=dict)  # owner -> tags as sent
    masking: dict[str, Masking] = field(default_factory=dict)
    tag_opener: TagOpener = field(default_factory=TagOpener)


def run_round_in_process(
    companies: Sequence[tuple[str, CompanyRecords]], chunk_elements: int = 64, rerandomise: bool = False
) -> PatternTable:
    """`rerandomise`: re-randomised failure tags (core/rerandomise.py)."""
    return _run_round(companies, chunk_elements, rerandomise=rerandomise).counts.table


def observed_round_in_process(
    companies: Sequence[tuple[str, CompanyRecords]], rerandomise: bool, chunk_elements: int = 64
) -> ObservedRound:
    """`run_round_in_process`, keeping what the parties saw (ObservedRound)."""
    return _run_round(companies, chunk_elements, rerandomise=rerandomise)


def run_grouped_round_in_process(
    companies: Sequence[tuple[str, CompanyRecords]],
    groups_from: str,
    group_labels: Sequence[str],
    chunk_elements: int = 64,
    rerandomise: bool = False,
) -> GroupedCounts:
    """A round with groups: `groups_from`'s records must hold their group labels
    (`load_records(..., groups=True)`), each one of `group_labels`."""
    return _run_round(companies, chunk_elements, groups_from, tuple(group_labels), rerandomise).counts


def _run_round(
    companies: Sequence[tuple[str, CompanyRecords]],
    chunk_elements: int,
    groups_from: str = "",
    group_labels: tuple[str, ...] = (),
    rerandomise: bool = False,
) -> ObservedRound:
    names = tuple(name for name, _ in companies)
    state = RoundState(
        new_round_id(),
        Ring(names),
        groups_from=groups_from,
        group_labels=group_labels,
        rerandomise=rerandomise,
    )
    opener = TagOpener()
    elgamal = CoordinatorKey(opener.private_bytes()) if rerandomise else None
    observed = ObservedRound(GroupedCounts(PatternTable(names, (0,) * 2 ** len(names))), state.round_id)
    observed.tag_opener = opener
    parties = {name: _Company(name, records) for name, records in companies}
    sealers, peers, company_tags = {}, {}, {}
    for name, party in parties.items():
        labels = state.group_labels_of(name)
        sealers[name] = TagSealer(state.round_id, name, opener.public_key, group_labels=labels)
        peers[name] = party.relay.signed(state.round_id, name, sealers[name].public_key, b"", None, names)
        company_tags[name] = opener.opener_for(state.round_id, name, sealers[name].public_key, labels)
        state.enroll(name, len(party.records), 0.0)
    masking = _pair_keys(state.round_id, names, {n: sealers[n].private_key for n in names}, peers)
    if elgamal is not None:
        masking = {n: replace(m, rerandomise_key=elgamal.public_key) for n, m in masking.items()}
    observed.masking = masking
    for name in names:  # the confirmations agree by construction here (see _pair_keys)
        state.confirm(name, {other: "" for other in names if other != name}, 0.0)
    lists: dict[tuple[str, int], list[pb.ListChunk]] = {}
    for hop in range(state.ring.parties):
        for owner in names:
            blinder = parties[state.ring.blinder(owner, hop)]
            if hop == 0:
                outgoing = blind_own_list(
                    blinder.load, blinder.key, sealers[owner], blinder.counts, masking[owner]
                )
                observed.sent_at_hop_0[owner] = bytes(_sent_tags(outgoing))
            else:
                state.check_download(blinder.name, owner, hop - 1)
                sender = peers[state.ring.blinder(owner, hop - 1)]
                relay_opener = blinder.relay.opener(sender, state.round_id, blinder.name, owner, hop - 1)
                receiver = ListReceiver(
                    ListAddress(state.round_id, owner, hop - 1), sender.company, relay_opener,
                    tag_size=state.tag_size,
                )  # fmt: skip
                for chunk in lists.pop((owner, hop - 1)):
                    receiver.add(chunk)
                how = None
                if elgamal is not None:
                    last = masking[blinder.name] if hop == state.ring.final_hop else None
                    how = Rerandomising(elgamal.public_key, last)
                outgoing = relay_list(receiver.finish(), blinder.key, blinder.counts, rerandomising=how)
            lists[(owner, hop)] = _send(state, blinder, peers, owner, hop, outgoing, chunk_elements)
    finals = []
    for owner in names:
        chunks = lists.pop((owner, state.ring.final_hop))
        tokens = b"".join(p for chunk in chunks for p in chunk_content(chunk, state.tag_size))
        tag_rows = np.frombuffer(b"".join(c.tags for c in chunks), dtype=np.uint8).reshape(-1, state.tag_size)
        finals.append(FinalList(owner, tokens, tag_rows))
        observed.finals[owner] = finals[-1]
    if elgamal is not None:
        observed.counts = count_rerandomised(names, finals, elgamal, groups_from, group_labels)
    elif groups_from:
        observed.counts = count_group_patterns(names, finals, company_tags, groups_from, group_labels)
    else:
        observed.counts = count_patterns(names, finals, company_tags)
    return observed


def _sent_tags(outgoing: ListInTransit) -> bytes:
    """The tags of a list in the order they leave."""
    rows = np.frombuffer(bytes(outgoing.tags), dtype=np.uint8).reshape(len(outgoing), -1)
    return (rows[outgoing.order] if outgoing.order is not None else rows).tobytes()


def _pair_keys(
    round_id: str, names: tuple[str, ...], tag_keys: dict[str, bytes], peers: dict[str, RelayPeer]
) -> dict[str, Masking]:
    """Every company's pairwise mask keys, derived as the daemons derive them (the confirmations
    they would exchange agree by construction here: one process holds every key)."""
    transcript = transcript_digest(round_id, names, [peers[name] for name in names])
    masking = {}
    for at, name in enumerate(names):
        others = {other: peers[other].tag_public_key for other in names if other != name}
        keys = pair_keys(tag_keys[name], name, others, transcript, round_id, names)
        masking[name] = Masking(at, len(names), keys)
    return masking


def _send(
    state: RoundState,
    sender: _Company,
    peers: dict[str, RelayPeer],
    owner: str,
    hop: int,
    outgoing: ListInTransit,
    chunk_elements: int,
) -> list[pb.ListChunk]:
    """Upload one list at one hop: sealed to the next company, open at the last hop."""
    state.check_upload(sender.name, owner, hop, len(outgoing))
    sealer = None
    if hop < state.ring.final_hop:
        receiver = peers[state.ring.blinder(owner, hop + 1)]
        sealer = sender.relay.sealer(receiver, state.round_id, sender.name, owner, hop)
    address = ListAddress(state.round_id, owner, hop)
    sequence = ChunkSequence(expected=address, sender=sender.name, tag_size=state.tag_size)
    for chunk in outgoing_chunks(address, sender.name, outgoing, sealer, chunk_elements):
        sequence.add(chunk)
    sequence.finish()
    state.record_upload(owner, hop, 0.0)
    return sequence.chunks
