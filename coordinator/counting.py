"""Counting: the fully blinded lists become the 2^k pattern table.

Tokens present in all k lists are the shared individuals. Each of their k tags opens
to a masked value (core/masks.py); the k values of one token add up to its pattern,
each company's failure bit in a 2-bit lane of its own (and, in a round with groups,
the group code above them), and only such a sum is accepted. The value of any other
token, alone or summed over fewer than k companies, is uniform: it tells nothing. A
swapped, moved, replayed or shifted tag gives a sum that does not decode, and the
round fails (a bad sum names no one). Nothing per token outlives
`count_patterns` / `count_group_patterns`.

With a `SpillPlan` (the coordinator always gives one), lists too large to count within
its memory budget are counted bucket by bucket (coordinator/buckets.py): each list is
written once to bucket files by token, and each bucket of the k lists is then matched
and counted in memory. Both paths give the same counts and fail on the same faults
with the same reason (tests/test_counting_spill.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from monoculture.analysis.table import PatternTable
from monoculture.coordinator.buckets import Partition, SpillPlan, Stream
from monoculture.core.errors import ProtocolError
from monoculture.core.masks import add_values, decode_sums, values_from_bytes
from monoculture.core.protocol import Ring
from monoculture.core.psi_crypto import NONCE_SIZE, POINT_SIZE, TAG_SIZE, CompanyTags, split_tags
from monoculture.core.rerandomise import ELGAMAL_TAG_SIZE, CoordinatorKey, SumTable, invalid_tag_points

# Any company that blinded a list after its owner could have altered it (its owner too): the
# final list alone does not tell which, so a fault found in it names no one.
_UNNAMED = " (altered by its owner or a company that relayed it; no one is named)"

# The checks one final list goes through, in the order the in-memory path runs them.
_TAGS, _COUNTS, _TOKENS, _NONCES = range(4)


@dataclass(frozen=True)
class FinalList:
    """One fully blinded list as the coordinator received it (or a part of one: `blocks`)."""

    owner: str
    tokens: bytes  # concatenated POINT_SIZE tokens
    tags: np.ndarray  # uint8, one TAG_SIZE row per token

    @property
    def size(self) -> int:
        return len(self.tokens) // POINT_SIZE

    def blocks(self) -> Iterator[FinalList]:
        yield self


class FinalSource(Protocol):
    """A final list read in parts (the coordinator's store: chunk by chunk), so that it need not
    be held whole; `size`: the tokens its parts hold."""

    @property
    def owner(self) -> str: ...

    @property
    def size(self) -> int: ...

    def blocks(self) -> Iterator[FinalList]: ...


def whole(source: FinalSource) -> FinalList:
    """The list in one piece (the in-memory path)."""
    if isinstance(source, FinalList):
        return source
    parts = list(source.blocks())
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return FinalList(source.owner, b"", np.empty((0, TAG_SIZE), dtype=np.uint8))
    return FinalList(source.owner, b"".join(p.tokens for p in parts), np.concatenate([p.tags for p in parts]))


def _count_mismatch(owner: str) -> ProtocolError:
    return ProtocolError(f"the final list of {owner}: tokens and tags differ in number{_UNNAMED}")


def _token_repeat(owner: str) -> ProtocolError:
    return ProtocolError(f"the final list of {owner}: a token repeats{_UNNAMED}")


def _nonce_repeat(owner: str) -> ProtocolError:
    return ProtocolError(f"the final list of {owner}: a failure tag repeats{_UNNAMED}")


def _repeats(ordered: np.ndarray) -> bool:
    return len(ordered) > 1 and bool((ordered[1:] == ordered[:-1]).any())


def _sorted_nonces(tags: np.ndarray, nonce_size: int) -> np.ndarray:
    return np.sort(np.ascontiguousarray(tags[:, :nonce_size]).view(f"V{nonce_size}").ravel())


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
        raise _count_mismatch(final.owner)
    order = np.argsort(tokens, kind="stable")
    ordered = tokens[order]
    if _repeats(ordered):
        raise _token_repeat(final.owner)
    # re-randomised tags carry no nonce (a replayed one fails its sum)
    if nonce_size and _repeats(_sorted_nonces(final.tags, nonce_size)):
        raise _nonce_repeat(final.owner)
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


def _columns(lists: Sequence[_SortedList]) -> list[np.ndarray]:
    """The rows of the tokens in every list: one array per list, row n of each the same token."""
    shared = lists[0].tokens
    for other in lists[1:]:
        shared = shared[_members(other, shared)]
    return [lst.tags[lst.order[np.searchsorted(lst.tokens, shared)]] for lst in lists]


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
    return _Shared(_columns(lists), min(len(lst.tokens) for lst in lists), [lst.tags for lst in lists])


class _Tally:
    """The tables of decoded sums (index >= 0) added up part by part; the others are counted as
    undecodable."""

    def __init__(self, roster: Sequence[str], groups_from: str = "", group_labels: Sequence[str] = ()):
        self.roster = tuple(roster)
        self.labels = tuple(group_labels) if groups_from else ()
        self.cells = 2 ** len(roster)
        self.counts = np.zeros(self.cells, dtype=np.int64)
        self.per_group = np.zeros(len(self.labels) * self.cells, dtype=np.int64)
        self.undecodable = 0

    def add(self, index: np.ndarray, codes: np.ndarray) -> None:
        index, codes = index.astype(np.int64), codes.astype(np.int64)
        decoded = index >= 0
        self.undecodable += int(len(index) - np.count_nonzero(decoded))
        index, codes = index[decoded], codes[decoded]
        self.counts += np.bincount(index, minlength=self.cells)
        if self.labels:
            self.per_group += np.bincount(codes * self.cells + index, minlength=len(self.per_group))

    def result(self) -> GroupedCounts:
        table = PatternTable(self.roster, tuple(int(c) for c in self.counts))
        if not self.labels:
            return GroupedCounts(table, undecodable=self.undecodable)
        per_group = self.per_group.reshape(len(self.labels), self.cells)
        if not np.array_equal(per_group.sum(axis=0), self.counts):  # by construction; checked all the same
            raise ProtocolError("the group tables do not add up to the overall table", where="coordinator")
        tables = {
            label: PatternTable(self.roster, tuple(int(c) for c in row))
            for label, row in zip(self.labels, per_group, strict=True)
        }
        return GroupedCounts(table, tables, self.undecodable)


def _tables(
    roster: Sequence[str],
    index: np.ndarray,
    codes: np.ndarray,
    groups_from: str = "",
    group_labels: Sequence[str] = (),
) -> GroupedCounts:
    """The tables of the decoded sums (index >= 0); the others are counted as undecodable."""
    tally = _Tally(roster, groups_from, group_labels)
    tally.add(index, codes)
    return tally.result()


def _masked_sums(columns: Sequence[np.ndarray], k: int, group_count: int) -> tuple[np.ndarray, np.ndarray]:
    """The decoded sums of the opened values of shared tokens (one array per list)."""
    total: np.ndarray | None = None
    for opened in columns:
        values = values_from_bytes(opened.tobytes())
        total = values if total is None else add_values(total, values)
    assert total is not None  # a ring has at least two companies
    index, codes, _ = decode_sums(total, k, group_count)
    return index, codes


def _count(
    roster: Sequence[str],
    finals: Iterable[FinalList],
    openers: dict[str, CompanyTags],
    groups_from: str = "",
    group_labels: Sequence[str] = (),
) -> GroupedCounts:
    columns = _shared_tags(roster, finals, openers=openers).columns
    index, codes = _masked_sums(columns, len(roster), len(group_labels) if groups_from else 0)
    return _tables(roster, index, codes, groups_from, group_labels)


def _points_fault(roster: Sequence[str], owner: str, tags: np.ndarray) -> ProtocolError | None:
    """A list's tag points that a relay does not accept (not canonical, or outside the
    prime-order group) name its last relay, whose signed upload the coordinator holds: relays
    check every point they receive, so only the last can send one."""
    if not invalid_tag_points(tags.tobytes()):
        return None
    ring = Ring(tuple(roster))
    sender = ring.blinder(owner, ring.final_hop)
    return ProtocolError(
        f"the final list of {owner}, as {sender} sent it, holds failure tags that are not "
        "points of the prime-order group",
        where=sender,
    )


def _checked_points(roster: Sequence[str], finals: Iterable[FinalList]) -> Iterator[FinalList]:
    """Each final list, once every tag point in it is one a relay accepts (`_points_fault`).
    Every point is checked, shared or not, so whether the round fails here depends only on
    what that relay sent, never on the intersection or on whether a sum decodes."""
    for final in finals:
        fault = _points_fault(roster, final.owner, final.tags)
        if fault is not None:
            raise fault
        yield final


def _rerandomised_in_memory(
    roster: Sequence[str], finals: Iterable[FinalList], key: CoordinatorKey, table: SumTable
) -> tuple[np.ndarray, np.ndarray]:
    shared = _shared_tags(roster, _checked_points(roster, finals), nonce_size=0)
    # Decrypting takes ~73 us a sum: as many as the smallest list holds are decrypted, the
    # shared ones first, so the time counting takes does not tell how many are shared.
    patterns, codes, _ = key.decrypt_sums(shared.padded(), table)
    count = len(shared.columns[0])
    return np.array(patterns[:count], dtype=np.int64), np.array(codes[:count], dtype=np.int64)


# ------------------------------------------------------------------ counting in buckets


class _Faults:
    """The faults the bucket path finds, bucket by bucket. The one raised is the one the
    in-memory path raises: that of the first list (roster order) with a fault, and of that
    list's checks the first that fails (`_TAGS` to `_NONCES`)."""

    def __init__(self) -> None:
        self.first: tuple[int, int, ProtocolError] | None = None

    def note(self, position: int, check: int, error: ProtocolError) -> None:
        if self.first is None or (position, check) < self.first[:2]:
            self.first = (position, check, error)

    def __bool__(self) -> bool:
        return self.first is not None

    def raise_first(self) -> None:
        if self.first is not None:
            raise self.first[2]


_TOKEN_ROWS, _NONCE_ROWS = "tokens", "nonces"


@dataclass
class _Spilled:
    """How one counting's tags are checked and summed: masked (`openers`) or re-randomised (`key`)."""

    roster: tuple[str, ...]
    tally: _Tally
    openers: dict[str, CompanyTags] | None = None
    key: CoordinatorKey | None = None
    table: SumTable | None = None
    faults: _Faults = field(default_factory=_Faults)
    decrypted: int = 0

    @property
    def tag_size(self) -> int:
        return TAG_SIZE if self.key is None else ELGAMAL_TAG_SIZE

    @property
    def nonce_size(self) -> int:
        return NONCE_SIZE if self.key is None else 0

    def streams(self) -> list[Stream]:
        tokens = Stream(_TOKEN_ROWS, POINT_SIZE + self.tag_size, POINT_SIZE)
        if not self.nonce_size:
            return [tokens]
        return [tokens, Stream(_NONCE_ROWS, self.nonce_size, self.nonce_size)]

    def checked(self, position: int, tags: np.ndarray) -> np.ndarray:
        """Every tag is checked where it is read: the opened values (masked) or the tags."""
        owner = self.roster[position]
        if self.key is not None:
            fault = _points_fault(self.roster, owner, tags)
            if fault is not None:
                self.faults.note(position, _TAGS, fault)
            return tags
        assert self.openers is not None
        try:
            return self.openers[owner].open(split_tags(tags.tobytes()))
        except ProtocolError as fault:
            self.faults.note(position, _TAGS, fault)
            return np.zeros((len(tags), 16), dtype=np.uint8)

    def spill(self, sources: Sequence[FinalSource], partition: Partition) -> None:
        """Pass one: every list's rows to the bucket files (a part whose tokens and tags differ in
        number is checked but not written: the round fails on it)."""
        for source in sources:
            position = self.roster.index(source.owner)
            for block in source.blocks():
                tokens = np.frombuffer(block.tokens, dtype=np.uint8).reshape(-1, POINT_SIZE)
                tags = block.tags if block.tags.ndim == 2 else block.tags.reshape(-1, self.tag_size)
                if len(tokens) != len(tags):
                    self.checked(position, tags)
                    self.faults.note(position, _COUNTS, _count_mismatch(source.owner))
                    continue
                partition.add(position, _TOKEN_ROWS, np.hstack([tokens, tags]))
                if self.nonce_size:
                    partition.add(position, _NONCE_ROWS, np.ascontiguousarray(tags[:, : self.nonce_size]))
            partition.close_list(position)

    def bucket(self, partition: Partition, bucket: int) -> None:
        """Pass two: one bucket of every list checked, matched and counted."""
        lists, rows = [], []
        for position, owner in enumerate(self.roster):
            found = partition.rows(position, _TOKEN_ROWS, bucket)
            tokens = np.ascontiguousarray(found[:, :POINT_SIZE]).view(f"S{POINT_SIZE}").ravel()
            tags = found[:, POINT_SIZE:]
            carried = self.checked(position, tags)
            order = np.argsort(tokens, kind="stable")
            ordered = tokens[order]
            if _repeats(ordered):
                self.faults.note(position, _TOKENS, _token_repeat(owner))
            if self.nonce_size:
                nonces = partition.rows(position, _NONCE_ROWS, bucket)
                if _repeats(_sorted_nonces(nonces, self.nonce_size)):
                    self.faults.note(position, _NONCES, _nonce_repeat(owner))
            lists.append(_SortedList(ordered, order, carried))
            rows.append(tags)
        if self.faults:
            return  # the round fails; what is left to read is only checked
        columns = _columns(lists)
        if self.key is None:
            group_count = len(self.tally.labels)
            self.tally.add(*_masked_sums(columns, len(self.roster), group_count))
            return
        # As many sums decrypted in this bucket as its smallest list holds, the shared first.
        smallest = min(len(lst.tokens) for lst in lists)
        self.tally.add(*self._decrypted(_Shared(columns, smallest, rows).padded(), len(columns[0])))

    def _decrypted(self, columns: list[bytes], keep: int) -> tuple[np.ndarray, np.ndarray]:
        assert self.key is not None and self.table is not None
        count = len(columns[0]) // ELGAMAL_TAG_SIZE
        self.decrypted += count
        if not count:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        patterns, codes, _ = self.key.decrypt_sums(columns, self.table)
        return np.array(patterns[:keep], dtype=np.int64), np.array(codes[:keep], dtype=np.int64)

    def pad(self, partition: Partition) -> None:
        """Re-randomised tags: more sums decrypted (rows of each list taken in bucket order) until
        as many as the smallest list holds are, as in memory: the time counting takes follows the
        lists' sizes, not the intersection's."""
        smallest = int(partition.counts[_TOKEN_ROWS].sum(axis=1).min())
        left = smallest - self.decrypted
        readers = [_RowReader(partition, position) for position in range(len(self.roster))]
        while left > 0:
            take = min(left, 1 << 16)
            columns = [reader.take(take)[:, POINT_SIZE:].tobytes() for reader in readers]
            self._decrypted(columns, 0)
            left -= take


class _RowReader:
    """One list's rows in bucket order, handed out `take` at a time (one bucket held at most)."""

    def __init__(self, partition: Partition, position: int) -> None:
        self._partition = partition
        self._position = position
        self._bucket = 0
        self._held = np.empty((0, partition.streams[_TOKEN_ROWS][1].width), dtype=np.uint8)

    def take(self, count: int) -> np.ndarray:
        parts = []
        while count > 0:
            if not len(self._held):
                self._held = self._partition.rows(self._position, _TOKEN_ROWS, self._bucket)
                self._bucket += 1
                continue
            part, self._held = self._held[:count], self._held[count:]
            parts.append(part)
            count -= len(part)
        return np.concatenate(parts)


def _count_in_buckets(
    sources: Sequence[FinalSource], plan: SpillPlan, buckets: int, spilled: _Spilled
) -> GroupedCounts:
    with Partition(plan.folder, buckets, len(spilled.roster), spilled.streams()) as partition:
        spilled.spill(sources, partition)
        for bucket in range(buckets):
            spilled.bucket(partition, bucket)
        spilled.faults.raise_first()
        if spilled.key is not None:
            spilled.pad(partition)
        if plan.stats is not None:
            plan.stats.record(buckets, partition.disk_bytes, sum(s.size for s in sources))
    return spilled.tally.result()


def _plan(finals: Iterable[FinalSource], spill: SpillPlan | None) -> tuple[Iterable[FinalSource], int]:
    """The lists, and how many buckets to count them in (0: in memory, one list at a time)."""
    if spill is None:
        return finals, 0
    sources = list(finals)
    return sources, spill.buckets([s.size for s in sources])


def _in_memory(sources: Iterable[FinalSource]) -> Iterator[FinalList]:
    """Each list whole, one at a time: each list's raw bytes can go once it is sorted."""
    for source in sources:
        yield whole(source)


# ------------------------------------------------------------------ the three entry points


def count_rerandomised(
    roster: Sequence[str],
    finals: Iterable[FinalSource],
    key: CoordinatorKey,
    groups_from: str = "",
    group_labels: Sequence[str] = (),
    spill: SpillPlan | None = None,
) -> GroupedCounts:
    """`count_patterns` / `count_group_patterns` for re-randomised tags (core/rerandomise.py):
    the k ElGamal tags of every shared token are added and the sum decrypted; a sum in the table
    of valid sums gives a pattern (and group), any other is counted as undecodable."""
    if groups_from and (groups_from not in roster or not group_labels):
        raise ProtocolError("a round with groups needs its groups company and labels", where="coordinator")
    table = SumTable(len(roster), len(group_labels) if groups_from else 0)
    sources, buckets = _plan(finals, spill)
    if buckets:
        assert spill is not None
        tally = _Tally(roster, groups_from, group_labels)
        spilled = _Spilled(tuple(roster), tally, key=key, table=table)
        return _count_in_buckets(list(sources), spill, buckets, spilled)
    patterns, codes = _rerandomised_in_memory(roster, _in_memory(sources), key, table)
    return _tables(roster, patterns, codes, groups_from, group_labels)


def count_patterns(
    roster: Sequence[str],
    finals: Iterable[FinalSource],
    openers: dict[str, CompanyTags],
    spill: SpillPlan | None = None,
) -> GroupedCounts:
    """Match tokens present in all k lists, open only their tags, count patterns (and the sums
    that do not decode).

    `finals` may be a generator: each list's raw bytes can go as soon as it is sorted. With
    `spill`, lists too large for its memory budget are counted in bucket files (its folder).
    Nothing per token outlives this call.
    """
    return _count_masked(roster, finals, openers, "", (), spill)


def count_group_patterns(
    roster: Sequence[str],
    finals: Iterable[FinalSource],
    openers: dict[str, CompanyTags],
    groups_from: str,
    group_labels: Sequence[str],
    spill: SpillPlan | None = None,
) -> GroupedCounts:
    """`count_patterns`, and one table per group: the group of a shared individual is the code
    in `groups_from`'s tag (whose opener must know the round's `group_labels`; a code beyond
    them is an undecodable sum). The group tables add up to the overall table."""
    if groups_from not in roster or not group_labels:
        raise ProtocolError("a round with groups needs its groups company and labels", where="coordinator")
    return _count_masked(roster, finals, openers, groups_from, group_labels, spill)


def _count_masked(
    roster: Sequence[str],
    finals: Iterable[FinalSource],
    openers: dict[str, CompanyTags],
    groups_from: str,
    group_labels: Sequence[str],
    spill: SpillPlan | None,
) -> GroupedCounts:
    sources, buckets = _plan(finals, spill)
    if buckets:
        assert spill is not None
        spilled = _Spilled(tuple(roster), _Tally(roster, groups_from, group_labels), openers=openers)
        return _count_in_buckets(list(sources), spill, buckets, spilled)
    return _count(roster, _in_memory(sources), openers, groups_from, group_labels)
