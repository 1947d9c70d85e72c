"""A company's two protocol steps, without I/O (docs/PROTOCOL.md, "Steps").

- `blind_own_list` (hop 0): shuffle, hash every id to the curve and multiply by
  the round key (one hash-to-curve + one multiplication per record), seal every
  failure bit in a tag only the coordinator can open (with its group code, for the
  company a round takes its groups from).
- `relay_list` (hops 1..k-1): shuffle again and multiply every point by the
  round key (one multiplication per record); tags travel with their points.
  The list is re-blinded where it lies and shuffled as it leaves, so a company
  holds one copy of it (memory per record: 33 + 44 bytes, and 8 for the order).
- `ListReceiver` / `outgoing_chunks`: a relayed list arrives sealed to this
  company by the one before it and leaves sealed to the one after it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from monoculture.core import rerandomise as rr
from monoculture.core.blame import COORDINATOR, RelayFault
from monoculture.core.dataset import CompanyRecords, GroupLabelError, IdColumn
from monoculture.core.errors import ProtocolError
from monoculture.core.masks import id_digests, masked_values
from monoculture.core.psi_crypto import (
    POINT_SIZE,
    TAG_SIZE,
    BlindingKey,
    TagSealer,
    check_points,
    random_permutation,
    split_points,
)
from monoculture.core.relay import ChunkOpener, ChunkSealer, ChunkSigner, ChunkVerifier
from monoculture.core.wire import CHUNK_ELEMENTS, ChunkSequence, ListAddress, chunk_content, list_chunks
from monoculture.v1 import monoculture_pb2 as pb

# Blinding runs in batches so progress can be shown and memory stays flat.
BLIND_BATCH = 16384
# A relayed list announcing more elements than this is refused before any memory is taken.
MAX_RECEIVED_LIST = 50_000_000

Progress = Callable[[int, int], None]


@dataclass
class OperationCounts:
    """Elliptic-curve work one company did in one round (for the benchmark)."""

    hash_to_curve: int = 0
    multiplications: int = 0
    bytes_uploaded: int = 0  # serialized ListChunk bytes, last attempt of each upload
    elements_uploaded: int = 0
    largest_list: int = 0


def _no_progress(done: int, total: int) -> None:
    return None


class Blinder(Protocol):
    """Runs openmined-psi over batches: in this process, or spread over worker processes."""

    def hash_and_blind(self, key: BlindingKey, batches: Iterable[Sequence[str]]) -> Iterator[bytes]: ...

    def reblind(self, key: BlindingKey, batches: Iterable[Sequence[bytes]]) -> Iterator[bytes]: ...

    def encrypt(self, public_key: bytes, batches: Iterable[tuple[bytes, bytes]]) -> Iterator[bytes]:
        """Re-randomised tags, hop 0: (values, randomness) scalars per batch (core/rerandomise.py)."""
        ...

    def rerandomise(self, public_key: bytes, batches: Iterable[rr.TagBatch]) -> Iterator[bytes]:
        """Re-randomised tags, hops 1..k-1: (tags, randomness, shifts) per batch."""
        ...


class InlineBlinder:
    """One batch after another, in this process."""

    def hash_and_blind(self, key: BlindingKey, batches: Iterable[Sequence[str]]) -> Iterator[bytes]:
        for batch in batches:
            yield b"".join(key.hash_and_blind(batch))

    def reblind(self, key: BlindingKey, batches: Iterable[Sequence[bytes]]) -> Iterator[bytes]:
        for batch in batches:
            yield b"".join(key.reblind(batch))

    def encrypt(self, public_key: bytes, batches: Iterable[tuple[bytes, bytes]]) -> Iterator[bytes]:
        for values, randomness in batches:
            yield rr.encrypt(public_key, values, randomness)

    def rerandomise(self, public_key: bytes, batches: Iterable[rr.TagBatch]) -> Iterator[bytes]:
        for tags, randomness, shifts in batches:
            yield rr.rerandomise(public_key, tags, randomness, shifts)


INLINE = InlineBlinder()


def shuffle_label(owner: str, hop: int) -> bytes:
    return f"{owner}|{hop}".encode()


@dataclass
class ListInTransit:
    """A list between two steps: its points (one buffer, 33 bytes each), its tags (29 bytes
    each) and the order it leaves in: element `order[p]` is sent at position p (None: as held).

    Relays keep a list where it arrived and shuffle it as it leaves, so a company never
    holds a second copy of a list.
    """

    points: bytearray
    tags: bytearray
    order: npt.NDArray[np.int64] | None = None

    def __len__(self) -> int:
        return len(self.points) // POINT_SIZE

    def digest(self) -> str:
        """SHA-256 of the points and tags as held (which list this is, for the once-per-hop rule)."""
        digest = hashlib.sha256(self.points)
        digest.update(self.tags)
        return digest.hexdigest()

    def take(self) -> tuple[bytearray, bytearray]:
        """The buffers, leaving this holder empty (so they can be freed as soon as they are used)."""
        points, tags = self.points, self.tags
        self.points, self.tags, self.order = bytearray(), bytearray(), None
        return points, tags


def _collect(
    parts: Iterable[bytes],
    into: bytearray,
    progress: Progress,
    width: int = POINT_SIZE,
    work: str = "blinding",
    unit: str = "points",
) -> bytearray:
    """Batches of `width`-byte results (blinded points, or tags) written one after another into
    `into` (allocated once, no growth copies; it may be the buffer the batches were read from: a
    batch is read before it is written)."""
    size = len(into) // width
    filled = 0
    for part in parts:
        if filled + len(part) > len(into):  # slice assignment past the end would grow the buffer
            raise ProtocolError(f"{work} returned more than the {size} {unit} of the list")
        into[filled : filled + len(part)] = part
        filled += len(part)
        progress(filled // width, size)
    if filled != len(into):
        raise ProtocolError(f"{work} returned {filled // width} of {size} {unit}")
    return into


@dataclass(frozen=True)
class Masking:
    """What masks a company's failure values (core/masks.py): its ring position, the number of
    companies, and its pairwise mask key with each peer (by the peer's ring position)."""

    position: int
    parties: int
    pair_keys: Mapping[int, bytes]
    # Re-randomised tags (core/rerandomise.py): the coordinator's ElGamal round key; empty: the
    # tags are masked values sealed with AES-GCM.
    rerandomise_key: bytes = b""


def blind_own_list(
    load: Callable[[], CompanyRecords],
    key: BlindingKey,
    sealer: TagSealer,
    counts: OperationCounts,
    masking: Masking,
    progress: Progress = _no_progress,
    seed: bytes | None = None,
    owner: str = "",
    blinder: Blinder = INLINE,
    dummy_ids: Sequence[str] = (),
    tag_progress: Progress = _no_progress,
) -> ListInTransit:
    """Hop 0: the company's own list as shuffled blinded points and sealed tags.

    `load` gives the records; they are let go once blinded, before the tags are sealed,
    so ids, points and tags are never all held at once. With the round's secret `seed`
    the result is the same every time (restarts). Each tag seals the element's masked value:
    its failure bit in this company's lane, plus the pairwise masks of its id, which only the
    k values of one individual together cancel. When `sealer` carries the round's group labels
    (this company defines the groups), the records' labels become group codes in the values;
    a label the round did not declare is a GroupLabelError.
    """
    records = load()
    size = len(records)
    codes = None
    if sealer.group_labels:
        if records.groups is None:
            raise GroupLabelError(
                "the records were read without their group labels",
                reason="the round takes its groups from this company, but its records hold none",
            )
        codes = records.groups.round_codes(sealer.group_labels)
    failed, ids = records.failed, records.ids
    if dummy_ids:  # DP dummies: shuffled in like records, failure bit 0, group code 0
        ids = ids.extended(dummy_ids)
        failed = np.concatenate([failed, np.zeros(len(dummy_ids), dtype=failed.dtype)])
        codes = (
            np.concatenate([codes, np.zeros(len(dummy_ids), dtype=codes.dtype)])
            if codes is not None
            else None
        )
        size = len(ids)
    order = random_permutation(size, seed, shuffle_label(owner, 0))
    failed = failed[order]
    codes = codes[order] if codes is not None else None
    del records
    digests: list[npt.NDArray[np.uint8]] = []  # u(x) of each batch, taken as it goes to blinding
    batches = _id_batches(ids, order, digests)
    points = _collect(blinder.hash_and_blind(key, batches), bytearray(size * POINT_SIZE), progress)
    del batches, ids, order
    u = np.concatenate(digests) if digests else np.zeros((0, 16), dtype=np.uint8)
    del digests
    counts.hash_to_curve += size
    counts.multiplications += size
    if masking.rerandomise_key:
        tags = _encrypted_tags(masking, u, failed, codes, blinder, seed, owner, tag_progress)
        return ListInTransit(points, tags)
    values = masked_values(masking.position, masking.pair_keys, u, failed, codes)
    return ListInTransit(points, sealer.seal(values))


def _encrypted_tags(
    masking: Masking,
    u: npt.NDArray[np.uint8],
    failed: npt.NDArray[Any],
    codes: npt.NDArray[Any] | None,
    blinder: Blinder,
    seed: bytes | None,
    owner: str,
    progress: Progress = _no_progress,
) -> bytearray:
    """Hop 0 of a round with re-randomised tags: an ElGamal tag of e_i(x) per element, a batch
    at a time (the randomness from the round's seed: a restart sends the same bytes)."""

    def batches() -> Iterator[tuple[bytes, bytes]]:
        for start in range(0, len(u), BLIND_BATCH):
            end = min(len(u), start + BLIND_BATCH)
            batch_codes = codes[start:end] if codes is not None else None
            values = rr.exponent_values(
                masking.position, masking.pair_keys, u[start:end], failed[start:end], batch_codes
            )
            label = f"{shuffle_label(owner, 0).decode()}|{start}".encode()
            yield rr.scalars(values), rr.scalars(rr.randomisers(seed, label, end - start))

    tags = bytearray(len(u) * rr.ELGAMAL_TAG_SIZE)
    parts = blinder.encrypt(masking.rerandomise_key, batches())
    return _collect(parts, tags, progress, rr.ELGAMAL_TAG_SIZE, "encryption", "tags")


def _id_batches(
    ids: IdColumn, order: npt.NDArray[np.int64], digests: list[npt.NDArray[np.uint8]]
) -> Iterator[list[str]]:
    """The ids in `order`, a batch at a time, each decoded once: its u(x) digests go to `digests`
    (for the masked values) as the batch goes to blinding."""
    for start in range(0, len(order), BLIND_BATCH):
        batch = ids.take(order[start : start + BLIND_BATCH].tolist())
        digests.append(id_digests(batch))
        yield batch


def relay_list(
    incoming: ListInTransit,
    key: BlindingKey,
    counts: OperationCounts,
    progress: Progress = _no_progress,
    seed: bytes | None = None,
    label: bytes = b"",
    blinder: Blinder = INLINE,
    rerandomising: Rerandomising | None = None,
    tag_progress: Progress = _no_progress,
) -> ListInTransit:
    """Hops 1..k-1: re-blind every point where it lies, and shuffle the list as it leaves
    (the same bytes as shuffling first: element `order[p]`, re-blinded, is sent at p).
    With `rerandomising`, every tag is re-randomised where it lies too (and, at the last hop,
    shifted by this company's token masks of the final tokens).

    Takes the buffers out of `incoming`: the list is held once, re-blinded in place.
    """
    points, tags = incoming.take()
    size = len(points) // POINT_SIZE
    order = random_permutation(size, seed, label)
    step = BLIND_BATCH * POINT_SIZE
    batches = (split_points(bytes(points[at : at + step])) for at in range(0, len(points), step))
    _collect(blinder.reblind(key, batches), points, progress)
    counts.multiplications += size
    if rerandomising is not None:
        _rerandomise_tags(points, tags, rerandomising, blinder, seed, label, tag_progress)
    return ListInTransit(points, tags, order)


@dataclass(frozen=True)
class Rerandomising:
    """What a relay re-randomises tags with: the coordinator's round key and, at the last hop
    only, this company's masking (for the token masks t_j(T))."""

    public_key: bytes
    last_hop: Masking | None = None


def _rerandomise_tags(
    points: bytearray,
    tags: bytearray,
    how: Rerandomising,
    blinder: Blinder,
    seed: bytes | None,
    label: bytes,
    progress: Progress = _no_progress,
) -> None:
    """Every tag plus a fresh encryption of 0 (of t_j(T) at the last hop), in place."""
    size, width = len(points) // POINT_SIZE, rr.ELGAMAL_TAG_SIZE
    if len(tags) != size * width:
        raise ProtocolError(f"{len(tags)} bytes of tags for {size} points: not {width}-byte tags")

    def batches() -> Iterator[tuple[bytes, bytes, bytes]]:
        for start in range(0, size, BLIND_BATCH):
            end = min(size, start + BLIND_BATCH)
            randomness = rr.scalars(rr.randomisers(seed, label + f"|{start}".encode(), end - start))
            shifts = b""
            if how.last_hop is not None:
                final = points[start * POINT_SIZE : end * POINT_SIZE]
                masks = rr.token_masks(how.last_hop.position, how.last_hop.pair_keys, final, POINT_SIZE)
                shifts = rr.scalars(masks)
            yield bytes(tags[start * width : end * width]), randomness, shifts

    _collect(
        blinder.rerandomise(how.public_key, batches()), tags, progress, width, "re-randomisation", "tags"
    )


class ListReceiver:
    """Receives a relayed list chunk by chunk: checks its place and its sender's signature, opens
    it (it must be sealed to us), keeps only the points and tags.

    What cannot be used is a RelayFault naming the party at fault: a chunk out of place or
    without its sender's signature, the coordinator (which checked that signature when the
    chunk arrived); a signed chunk that does not open, its sender, with the chunk and this
    company's relay key for the round as evidence. Memory for the list is taken only once
    its first chunk has opened: a size no sender signed allocates nothing.
    """

    def __init__(
        self,
        expected: ListAddress,
        sender: str,
        opener: ChunkOpener,
        verifier: ChunkVerifier | None = None,
        relay_private_key: bytes = b"",
        tag_size: int = TAG_SIZE,
    ) -> None:
        self._sequence = ChunkSequence(expected=expected, sender=sender, keep=False, tag_size=tag_size)
        self._tag_size = tag_size
        self._opener = opener
        self._verifier = verifier  # None in an --insecure round: nothing is signed
        self._relay_private_key = relay_private_key
        self._sender = sender
        self._received = ListInTransit(bytearray(), bytearray())
        self._filled = 0

    def add(self, chunk: pb.ListChunk) -> None:
        try:
            self._sequence.add(chunk)
        except ProtocolError as exc:
            raise RelayFault(f"as relayed: {exc.message}", where=COORDINATOR) from None
        if not chunk.sealed:
            raise RelayFault(f"chunk {chunk.chunk_index} came unsealed", where=COORDINATOR)
        if self._verifier is not None and not self._verifier.signed_by_sender(chunk):
            raise RelayFault(
                f"chunk {chunk.chunk_index} does not carry {self._sender}'s signature: altered after "
                f"{self._sender} signed it",
                where=COORDINATOR,
                evidence=pb.BlameEvidence(chunk=chunk),
            )
        opened = self._open(chunk)
        if chunk.chunk_index == 0:  # opened, so its size is the sender's: allocate once
            if chunk.list_size > MAX_RECEIVED_LIST:
                raise RelayFault(f"a list of {chunk.list_size} elements is beyond {MAX_RECEIVED_LIST}",
                                 where=self._sender)  # fmt: skip
            self._received = ListInTransit(
                bytearray(chunk.list_size * POINT_SIZE), bytearray(chunk.list_size * self._tag_size)
            )
        points = self._content(chunk, opened)
        lo, hi = self._filled, self._filled + len(points)
        self._received.points[lo * POINT_SIZE : hi * POINT_SIZE] = b"".join(points)
        self._received.tags[lo * self._tag_size : hi * self._tag_size] = opened.tags
        self._filled = hi

    def _open(self, chunk: pb.ListChunk) -> pb.ListChunk:
        try:
            return self._opener.open(chunk)
        except ProtocolError as exc:
            raise self._sender_fault(chunk, f"does not open ({exc.message})") from None

    def _content(self, chunk: pb.ListChunk, opened: pb.ListChunk) -> list[bytes]:
        """The points of an opened chunk; malformed ones (the sender sealed them so) are its fault."""
        try:
            return chunk_content(opened, self._tag_size)
        except ProtocolError as exc:
            raise self._sender_fault(chunk, f"holds malformed points ({exc.message})") from None

    def _sender_fault(self, chunk: pb.ListChunk, what: str) -> RelayFault:
        """A chunk that authenticated as sealed by the sender is unusable: the sender's fault,
        with the chunk and this company's relay key as evidence the coordinator can check. In an
        --insecure round nothing is signed: no telling the sender from the coordinator."""
        if self._verifier is None:
            return RelayFault(f"chunk {chunk.chunk_index} {what}", where=COORDINATOR)
        evidence = pb.BlameEvidence(chunk=chunk, receiver_relay_private_key=self._relay_private_key)
        return RelayFault(
            f"chunk {chunk.chunk_index}, signed by {self._sender}, {what}: {self._sender} sealed it so",
            where=self._sender,
            evidence=evidence,
        )

    def finish(self) -> ListInTransit:
        self._sequence.finish()
        return self._received


def chunk_has_invalid_points(opened: pb.ListChunk, rerandomise: bool = False) -> bool:
    """Whether an opened chunk holds bytes that are not curve points (evidence search); with
    re-randomised tags, its tags' points too."""
    try:
        check_points(chunk_content(opened, rr.ELGAMAL_TAG_SIZE if rerandomise else TAG_SIZE))
    except ProtocolError:
        return True
    return rerandomise and not rr.tags_decode(opened.tags)


def outgoing_chunks(
    address: ListAddress,
    sender: str,
    outgoing: ListInTransit,
    sealer: ChunkSealer | None,
    chunk_elements: int = CHUNK_ELEMENTS,
    signer: ChunkSigner | None = None,
) -> Iterator[pb.ListChunk]:
    """A list's chunks, sealed to the next company (or open at the last hop: sealer None), each
    signed by this company (signer None: --insecure)."""
    for chunk in list_chunks(address, sender, outgoing.points, outgoing.tags, chunk_elements, outgoing.order):
        sealed = sealer.seal(chunk) if sealer is not None else chunk
        yield signer.sign(sealed) if signer is not None else sealed
