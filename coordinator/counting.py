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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from monoculture.analysis.table import PatternTable
from monoculture.core.errors import ProtocolError
from monoculture.core.masks import add_values, decode_sums, values_from_bytes
from monoculture.core.protocol import Ring
from monoculture.core.psi_crypto import NONCE_SIZE, POINT_SIZE, CompanyTags, split_tags
from monoculture.core.rerandomise import CoordinatorKey, SumTable, tags_decode

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


def _sorted(final: FinalList, nonce_size: int = NONCE_SIZE) -> _SortedList:
    tokens = np.frombuffer(final.tokens, dtype=f"S{POINT_SIZE}")
    if len(tokens) != len(final.tags):
        raise ProtocolError(f"the final list of {final.owner}: tokens and tags differ in number{_UNNAMED}")
    order = np.argsort(tokens, kind="stable")
    ordered = tokens[order]
    if len(ordered) > 1 and bool((ordered[1:] == ordered[:-1]).any()):
        raise ProtocolError(f"the final list of {final.owner}: a token repeats{_UNNAMED}")
    if not nonce_size:  # re-randomised tags carry no nonce (a replayed one fails its sum)
        return _SortedList(ordered, order, final.tags)
    nonces = np.sort(np.ascontiguousarray(final.tags[:, :nonce_size]).view(f"V{nonce_size}").ravel())
    if len(nonces) > 1 and bool((nonces[1:] == nonces[:-1]).any()):
        raise ProtocolError(f"the final list of {final.owner}: a failure tag repeats{_UNNAMED}")
    return _SortedList(ordered, order, final.tags)


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
    """The overall pattern table and one table per declared group label (declared order)."""

    table: PatternTable
    groups: dict[str, PatternTable] = field(default_factory=dict)


def _shared_tags(
    roster: Sequence[str], finals: Iterable[FinalList], nonce_size: int = NONCE_SIZE
) -> list[np.ndarray]:
    """The tags of the tokens in every list: one array per company (roster order), row n of
    each the same shared token."""
    by_owner: dict[str, _SortedList] = {}
    for final in finals:
        by_owner[final.owner] = _sorted(final, nonce_size)
        del final
    lists = [by_owner[owner] for owner in roster]
    shared = lists[0].tokens
    for other in lists[1:]:
        shared = shared[_members(other, shared)]
    return [lst.tags[lst.order[np.searchsorted(lst.tokens, shared)]] for lst in lists]


def _bad_sums(bad: int, shared: int) -> ProtocolError:
    return ProtocolError(
        f"the masked failure values of {bad} of {shared} shared individuals do not "
        "add up to a pattern: a failure tag was swapped, moved between lists, replayed from another "
        "round or shifted by a company (a bad sum names no one)",
    )


def _tables(
    roster: Sequence[str],
    index: np.ndarray,
    codes: np.ndarray,
    groups_from: str = "",
    group_labels: Sequence[str] = (),
) -> GroupedCounts:
    index, codes = index.astype(np.int64), codes.astype(np.int64)
    cells = 2 ** len(roster)
    counts = np.bincount(index, minlength=cells)
    table = PatternTable(tuple(roster), tuple(int(c) for c in counts))
    if not groups_from:
        return GroupedCounts(table)
    per_group = np.bincount(codes * cells + index, minlength=len(group_labels) * cells)
    per_group = per_group.reshape(len(group_labels), cells)
    if not np.array_equal(per_group.sum(axis=0), counts):  # by construction; checked all the same
        raise ProtocolError("the group tables do not add up to the overall table", where="coordinator")
    tables = {
        label: PatternTable(tuple(roster), tuple(int(c) for c in row))
        for label, row in zip(group_labels, per_group, strict=True)
    }
    return GroupedCounts(table, tables)


def _count(
    roster: Sequence[str],
    finals: Iterable[FinalList],
    openers: dict[str, CompanyTags],
    groups_from: str = "",
    group_labels: Sequence[str] = (),
) -> GroupedCounts:
    total: np.ndarray | None = None
    columns = _shared_tags(roster, finals)
    for owner, tags in zip(roster, columns, strict=True):
        opened = openers[owner].open(split_tags(tags.tobytes()))
        values = values_from_bytes(opened.tobytes())
        total = values if total is None else add_values(total, values)
    assert total is not None  # a ring has at least two companies
    index, codes, ok = decode_sums(total, len(roster), len(group_labels) if groups_from else 0)
    if not bool(np.all(ok)):
        raise _bad_sums(int((~ok).sum()), len(total))
    return _tables(roster, index, codes, groups_from, group_labels)


def _name_invalid_points(roster: Sequence[str], columns: list[np.ndarray], bad: list[int]) -> None:
    """Where a sum failed, a tag point outside the prime-order group names its sender: the last
    relay of that list, whose signed upload the coordinator holds (checked only for the failed
    sums: a valid but wrong ciphertext names no one)."""
    ring = Ring(tuple(roster))
    for owner, column in zip(roster, columns, strict=True):
        if not tags_decode(column[bad].tobytes()):
            sender = ring.blinder(owner, ring.final_hop)
            raise ProtocolError(
                f"the final list of {owner}, as {sender} sent it, holds failure tags that are not points "
                "of the prime-order group",
                where=sender,
            )


def count_rerandomised(
    roster: Sequence[str],
    finals: Iterable[FinalList],
    key: CoordinatorKey,
    groups_from: str = "",
    group_labels: Sequence[str] = (),
) -> GroupedCounts:
    """`count_patterns` / `count_group_patterns` for re-randomised tags (core/rerandomise.py):
    the k ElGamal tags of every shared token are added and the sum decrypted, and only a sum in
    the table of valid sums is accepted."""
    if groups_from and (groups_from not in roster or not group_labels):
        raise ProtocolError("a round with groups needs its groups company and labels", where="coordinator")
    columns = _shared_tags(roster, finals, nonce_size=0)
    table = SumTable(len(roster), len(group_labels) if groups_from else 0)
    patterns, codes, bad = key.decrypt_sums([c.tobytes() for c in columns], table)
    if bad:
        _name_invalid_points(roster, columns, [n for n, p in enumerate(patterns) if p < 0])
        raise _bad_sums(bad, len(patterns))
    return _tables(
        roster, np.array(patterns, dtype=np.int64), np.array(codes, dtype=np.int64), groups_from, group_labels
    )


def count_patterns(
    roster: Sequence[str], finals: Iterable[FinalList], openers: dict[str, CompanyTags]
) -> PatternTable:
    """Match tokens present in all k lists, open only their tags, count patterns.

    `finals` may be a generator: each list's raw bytes can go as soon as it is sorted.
    Nothing per token outlives this call.
    """
    return _count(roster, finals, openers).table


def count_group_patterns(
    roster: Sequence[str],
    finals: Iterable[FinalList],
    openers: dict[str, CompanyTags],
    groups_from: str,
    group_labels: Sequence[str],
) -> GroupedCounts:
    """`count_patterns`, and one table per group: the group of a shared individual is the code
    in `groups_from`'s tag (whose opener must know the round's `group_labels`; a code beyond
    them fails the round). The group tables add up to the overall table."""
    if groups_from not in roster or not group_labels:
        raise ProtocolError("a round with groups needs its groups company and labels", where="coordinator")
    return _count(roster, finals, openers, groups_from, group_labels)
