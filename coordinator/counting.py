"""Counting: the fully blinded lists become the 2^k pattern table.

Tokens present in all k lists are the shared individuals; only their tags are
opened. Nothing per token outlives `count_patterns`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from monoculture.analysis.table import PatternTable
from monoculture.core.errors import ProtocolError
from monoculture.core.psi_crypto import NONCE_SIZE, POINT_SIZE, CompanyTags, split_tags


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


def _sorted(final: FinalList) -> _SortedList:
    tokens = np.frombuffer(final.tokens, dtype=f"S{POINT_SIZE}")
    if len(tokens) != len(final.tags):
        raise ProtocolError("tokens and tags differ in number", where=f"list of {final.owner}")
    order = np.argsort(tokens, kind="stable")
    ordered = tokens[order]
    if len(ordered) > 1 and bool((ordered[1:] == ordered[:-1]).any()):
        raise ProtocolError("a token repeats within one list", where=f"list of {final.owner}")
    nonces = np.sort(np.ascontiguousarray(final.tags[:, :NONCE_SIZE]).view(f"V{NONCE_SIZE}").ravel())
    if len(nonces) > 1 and bool((nonces[1:] == nonces[:-1]).any()):
        raise ProtocolError("a failure tag repeats within one list", where=f"list of {final.owner}")
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


def count_patterns(
    roster: Sequence[str], finals: Iterable[FinalList], openers: dict[str, CompanyTags]
) -> PatternTable:
    """Match tokens present in all k lists, open only their tags, count patterns.

    `finals` may be a generator: each list's raw bytes can go as soon as it is sorted.
    Nothing per token outlives this call.
    """
    by_owner: dict[str, _SortedList] = {}
    for final in finals:
        by_owner[final.owner] = _sorted(final)
        del final
    lists = [by_owner[owner] for owner in roster]
    shared = lists[0].tokens
    for other in lists[1:]:
        shared = shared[_members(other, shared)]
    index = np.zeros(len(shared), dtype=np.int64)
    for owner, sorted_list in zip(roster, lists, strict=True):
        positions = sorted_list.order[np.searchsorted(sorted_list.tokens, shared)]
        bits = openers[owner].open(split_tags(sorted_list.tags[positions].tobytes()))
        index = (index << 1) | bits.astype(np.int64)
    counts = np.bincount(index, minlength=2 ** len(roster))
    return PatternTable(tuple(roster), tuple(int(c) for c in counts))
