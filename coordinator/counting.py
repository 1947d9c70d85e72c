"""Counting: the fully blinded lists become the 2^k pattern table.

Tokens present in all k lists are the shared individuals. Each of their k tags opens
to a masked value (core/masks.py); the k values of one token add up to its pattern,
each company's failure bit in a 2-bit lane of its own (and, in a round with groups,
the group code above them), and only such a sum is accepted. The value of any other
token, alone or summed over fewer than k companies, is uniform: it tells nothing. A
swapped, moved, replayed or shifted tag gives a sum that does not decode, and the
round fails (a bad sum names no one). Nothing per token outlives
`count_patterns` / `count_group_patterns`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from monoculture.analysis.table import PatternTable
from monoculture.core.errors import ProtocolError
from monoculture.core.masks import add_values, decode_sums, values_from_bytes
from monoculture.core.protocol import Ring
from monoculture.core.psi_crypto import NONCE_SIZE, POINT_SIZE, CompanyTags, split_tags
from monoculture.core.rerandomise import CoordinatorKey, SumTable, invalid_tag_points

# Any company that blinded a list after its owner could have altered it (its owner too): the
# final list alone does not tell which, so a fault found in it names no one.
_UNNAMED = " (altered by its owner or a company that relayed it; no one is named)"


@dataclass(frozen=True)
class FinalList:
    """One fully blinded list as the coordinator received it."""

    owner: str
    tokens: bytes  # concatenated POINT_SIZE tokens
    tags: np.ndarray  # uint8, one TAG_SIZE row per token


@dataclass(frozen=True)
class _SortedList:
    """One final list, tokens sorted, with the way back to each token's tag."""

    tokens: np.ndarray  # sorted S33
    order: np.ndarray  # tokens[i] is the token at position order[i] of the received list
    tags: np.ndarray


def _sorted(final: FinalList, nonce_size: int = NONCE_SIZE, rows: np.ndarray | None = None) -> _SortedList:
    """`rows`: what to carry for each token instead of its tag (its opened value)."""
    rows = final.tags if rows is None else rows
    tokens = np.frombuffer(final.tokens, dtype=f"S{POINT_SIZE}")
    if len(tokens) != len(final.tags):
        raise ProtocolError(f"the final list of {final.owner}: tokens and tags differ in number{_UNNAMED}")
    order = np.argsort(tokens, kind="stable")
    ordered = tokens[order]
    if len(ordered) > 1 and bool((ordered[1:] == ordered[:-1]).any()):
        raise ProtocolError(f"the final list of {final.owner}: a token repeats{_UNNAMED}")
    if not nonce_size:  # re-randomised tags carry no nonce (a replayed one fails its sum)
        return _SortedList(ordered, order, rows)
    nonces = np.sort(np.ascontiguousarray(final.tags[:, :nonce_size]).view(f"V{nonce_size}").ravel())
    if len(nonces) > 1 and bool((nonces[1:] == nonces[:-1]).any()):
        raise ProtocolError(f"the final list of {final.owner}: a failure tag repeats{_UNNAMED}")
    return _SortedList(ordered, order, rows)


def _members(sorted_list: _SortedList, wanted: np.ndarray) -> np.ndarray:
    """Mask of the `wanted` tokens (sorted) that are in `sorted_list`."""
    at = np.searchsorted(sorted_list.tokens, wanted)
    at[at == len(sorted_list.tokens)] = 0
    return (
        np.asarray(sorted_list.tokens[at] == wanted)
        if len(sorted_list.tokens)
        else np.zeros(len(wanted), bool)
    )


@dataclass(frozen=True)
class GroupedCounts:
    """The overall pattern table, one table per declared group label (declared order), and the
    number of shared individuals whose sum did not decode (in no table: their pattern and group
    are unknown)."""

    table: PatternTable
    groups: dict[str, PatternTable] = field(default_factory=dict)
    undecodable: int = 0


@dataclass(frozen=True)
class _Shared:
    """The rows of the shared tokens (one array per list, roster order, row n of each the same
    token), the size of the smallest list, and every row of each list."""

    columns: list[np.ndarray]
    smallest: int
    rows: list[np.ndarray]

    def padded(self) -> list[bytes]:
        """The shared rows followed by as many rows of the lists as make them as long as the
        smallest list: work done on these takes a time set by the lists' sizes (public to every
        company that relays them), not by how many tokens are shared."""
        extra = max(0, self.smallest - len(self.columns[0]))
        return [
            np.concatenate([c, r[:extra]]).tobytes() for c, r in zip(self.columns, self.rows, strict=True)
        ]


def _shared_tags(
    roster: Sequence[str],
    finals: Iterable[FinalList],
    nonce_size: int = NONCE_SIZE,
    openers: dict[str, CompanyTags] | None = None,
) -> _Shared:
    """The tags of the tokens in every list (with `openers`: their opened values): one array per
    company (roster order), row n of each the same shared token.

    With `openers`, every tag of every list is opened, shared or not, before any token is
    matched: whether a tag fails to authenticate (which fails the round) must depend only on the
    bytes its list's last sender sent, never on whether its token is shared."""
    by_owner: dict[str, _SortedList] = {}
    for final in finals:
        values = None if openers is None else openers[final.owner].open(split_tags(final.tags.tobytes()))
        by_owner[final.owner] = _sorted(final, nonce_size, values)
        del final, values
    lists = [by_owner[owner] for owner in roster]
    shared = lists[0].tokens
    for other in lists[1:]:
        shared = shared[_members(other, shared)]
    columns = [lst.tags[lst.order[np.searchsorted(lst.tokens, shared)]] for lst in lists]
    return _Shared(columns, min(len(lst.tokens) for lst in lists), [lst.tags for lst in lists])


def _tables(
    roster: Sequence[str],
    index: np.ndarray,
    codes: np.ndarray,
    groups_from: str = "",
    group_labels: Sequence[str] = (),
) -> GroupedCounts:
    """The tables of the decoded sums (index >= 0); the others are counted as undecodable."""
    index, codes = index.astype(np.int64), codes.astype(np.int64)
    decoded = index >= 0
    undecodable = int(len(index) - np.count_nonzero(decoded))
    index, codes = index[decoded], codes[decoded]
    cells = 2 ** len(roster)
    counts = np.bincount(index, minlength=cells)
    table = PatternTable(tuple(roster), tuple(int(c) for c in counts))
    if not groups_from:
        return GroupedCounts(table, undecodable=undecodable)
    per_group = np.bincount(codes * cells + index, minlength=len(group_labels) * cells)
    per_group = per_group.reshape(len(group_labels), cells)
    if not np.array_equal(per_group.sum(axis=0), counts):  # by construction; checked all the same
        raise ProtocolError("the group tables do not add up to the overall table", where="coordinator")
    tables = {
        label: PatternTable(tuple(roster), tuple(int(c) for c in row))
        for label, row in zip(group_labels, per_group, strict=True)
    }
    return GroupedCounts(table, tables, undecodable)


def _count(
    roster: Sequence[str],
    finals: Iterable[FinalList],
    openers: dict[str, CompanyTags],
    groups_from: str = "",
    group_labels: Sequence[str] = (),
) -> GroupedCounts:
    total: np.ndarray | None = None
    for opened in _shared_tags(roster, finals, openers=openers).columns:
        values = values_from_bytes(opened.tobytes())
        total = values if total is None else add_values(total, values)
    assert total is not None  # a ring has at least two companies
    index, codes, _ = decode_sums(total, len(roster), len(group_labels) if groups_from else 0)
    return _tables(roster, index, codes, groups_from, group_labels)


def _checked_points(roster: Sequence[str], finals: Iterable[FinalList]) -> Iterator[FinalList]:
    """Each final list, once every tag point in it is one a relay accepts (canonical, in the
    prime-order group). A point that is not names the list's last relay, whose signed upload the
    coordinator holds: relays check every point they receive, so only the last can send one. Every
    point is checked, shared or not, so whether the round fails here depends only on what that
    relay sent, never on the intersection or on whether a sum decodes."""
    ring = Ring(tuple(roster))
    for final in finals:
        if invalid_tag_points(final.tags.tobytes()):
            sender = ring.blinder(final.owner, ring.final_hop)
            raise ProtocolError(
                f"the final list of {final.owner}, as {sender} sent it, holds failure tags that are not "
                "points of the prime-order group",
                where=sender,
            )
        yield final


def count_rerandomised(
    roster: Sequence[str],
    finals: Iterable[FinalList],
    key: CoordinatorKey,
    groups_from: str = "",
    group_labels: Sequence[str] = (),
) -> GroupedCounts:
    """`count_patterns` / `count_group_patterns` for re-randomised tags (core/rerandomise.py):
    the k ElGamal tags of every shared token are added and the sum decrypted; a sum in the table
    of valid sums gives a pattern (and group), any other is counted as undecodable."""
    if groups_from and (groups_from not in roster or not group_labels):
        raise ProtocolError("a round with groups needs its groups company and labels", where="coordinator")
    shared = _shared_tags(roster, _checked_points(roster, finals), nonce_size=0)
    table = SumTable(len(roster), len(group_labels) if groups_from else 0)
    # Decrypting takes ~73 us a sum: as many as the smallest list holds are decrypted, the
    # shared ones first, so the time counting takes does not tell how many are shared.
    patterns, codes, _ = key.decrypt_sums(shared.padded(), table)
    count = len(shared.columns[0])
    patterns, codes = patterns[:count], codes[:count]
    return _tables(
        roster, np.array(patterns, dtype=np.int64), np.array(codes, dtype=np.int64), groups_from, group_labels
    )


def count_patterns(
    roster: Sequence[str], finals: Iterable[FinalList], openers: dict[str, CompanyTags]
) -> GroupedCounts:
    """Match tokens present in all k lists, open only their tags, count patterns (and the sums
    that do not decode).

    `finals` may be a generator: each list's raw bytes can go as soon as it is sorted.
    Nothing per token outlives this call.
    """
    return _count(roster, finals, openers)


def count_group_patterns(
    roster: Sequence[str],
    finals: Iterable[FinalList],
    openers: dict[str, CompanyTags],
    groups_from: str,
    group_labels: Sequence[str],
) -> GroupedCounts:
    """`count_patterns`, and one table per group: the group of a shared individual is the code
    in `groups_from`'s tag (whose opener must know the round's `group_labels`; a code beyond
    them is an undecodable sum). The group tables add up to the overall table."""
    if groups_from not in roster or not group_labels:
        raise ProtocolError("a round with groups needs its groups company and labels", where="coordinator")
    return _count(roster, finals, openers, groups_from, group_labels)
