"""DP dummies: noisy Venn-region counts for the coordinator (the pure core; issue 12).

Pure: no I/O, no network. It says how many dummies every region gets, draws them, and
(`company_dummies`) gives the dummy ids a company adds: its own region, every region of two
companies and, where the round's padding is ALL (`round_padding_level`), every region of
three or more but the full intersection, whose seed its lowest member draws and seals to the
other members (`SeedEnvelope`).

**What is protected.** The coordinator sees, for every region R of the k-set Venn diagram
(the ids in exactly the lists of R), a count. With dummies it sees o_R = n_R + d_R, where
every member of R adds the same d_R dummy ids (so they match each other and land in R),
and company j adds d_{j} ids of its own to its list alone (the singleton region {j}, which
hides its list size). The full intersection gets no dummy: it is the output and stays
exact (the release policy's own noise, if any, protects it).

**Accounting.** Neighbours: one person added to or removed from one list j. That person
moves from region R (the other lists holding them; possibly none) to R + {j}: two cells
change by 1 (one when R is empty). Each cell gets independent noise that is
(eps_c, delta_c)-DP for a count of sensitivity 1, so by basic composition a change costs
at most (2 eps_c, 2 delta_c) = (eps, delta) with eps_c = eps / 2, delta_c = delta / 2.
List sizes and every other figure the coordinator derives from the o_R are
post-processing.

**Noise of one cell** (`offset`, `noise_pmf`): d = mu + Z, Z ~ discrete Laplace with
P(Z = z) proportional to t^|z|, t = exp(-eps_c), conditioned on |Z| <= mu, so
0 <= d <= 2 mu (never negative: a count of dummy ids) and E[d] = mu (o_R - mu is
unbiased). For counts c and c + 1 the outputs c + d and c + 1 + d have pmfs whose ratio is
t^(|o-c-mu| - |o-c-1-mu|), within e^(±eps_c), wherever both are positive; only o = c
(impossible from c + 1) and o = c + 2 mu + 1 (impossible from c) are unbounded, each of
probability t^mu / C with C = sum_{|z| <= mu} t^|z| = (1 + t - 2 t^(mu+1)) / (1 - t).
The hockey-stick divergence at eps_c is therefore exactly t^mu / C, and the mechanism is
(eps_c, delta_c)-DP iff

    t^mu (1 - t) / (1 + t - 2 t^(mu+1)) <= delta_c.

mu is the smallest integer meeting it (the left side falls with mu). At eps = 1,
delta = 1e-6: eps_c = 1/2, delta_c = 5e-7 gives mu = 27 (mu = 26 gives 5.5e-7); where a
change touches one cell (eps_c = 1, delta_c = 1e-6), mu = 14 (13 gives 1.04e-6).

**Sampler** (`region_noise`, `singleton_noise`): exact, integer-only (Canonne, Kamath,
Steinke 2020, Algorithms 1 and 2: Bernoulli(exp(-gamma)) from Bernoulli(rational) draws,
then a geometric, then the discrete Laplace), eps_c a Fraction, rejection while |Z| > mu.
Its random bits are an AES-256-CTR keystream (zero IV) under the key
HKDF-SHA256(ikm = seed, salt = none, info = "monoculture/v2 dummies" | round | region),
each field length-prefixed (`noise_key`). The key is unique to (seed, round, region), so
every member of R computes the same d_R, a retry of the same round reproduces it, and a
different seed, round or region gives an independent draw. No floating point decides
anything in sampling. Its running time depends on the value drawn (it is not
constant-time); it runs in the company's hop-0 step, where tens of microseconds vanish in
the elliptic-curve work of the list and the network's jitter.

**Padding budget** (`round_padding_level`): every region is padded while a company's
expected dummies, (2^(k-1) - 1) mu, stay within 10% of the round's minimum list size (a
public bound every party reads from JoinRound, so the choice tells nothing of any list) and
its most dummies within MAX_DUMMIES_PER_COMPANY. Beyond that only the singletons and the
regions of two companies are padded (k mu expected per company), and every region of three
to k - 1 companies stays exact to the coordinator (`exact_regions`).

**Seeds of regions of three or more** (`region_seed`, `SeedEnvelope`): the member of R
first in ring order derives seed_R from its own sealed seed (so a retry gives the same one)
and seals, for each other member b, the seeds of every such region it leads that holds b:
AES-256-GCM under HKDF(s_ab, "monoculture/v2 region seeds" | round | sender | receiver |
the roster in ring order), nonce zero (the key is used once), the regions' names as
associated data. The envelope travels with its key confirmation; the coordinator, which lacks
s_ab, relays it and checks only its exact length (`sealed_seeds_size`).

What the seeds do not give (review of ed117dd): the leader alone chooses seed_R, so it can
seal different seeds to different members, or any member can leave out the region's dummies,
which leaves that region exact to the coordinator (nothing detects it); a leader trying seeds
can also push a member's padded size across a round's size bounds, failing the round with
the member named. And an envelope that does not open is put on the coordinator as a claim,
though a sender sealing garbage causes it too: s_ab is shared, so the receiver cannot show
which (as for a key confirmation that does not match).
"""

from __future__ import annotations

import enum
import functools
import itertools
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from monoculture.core.keystream import random_bytes

INFO_LABEL = b"monoculture/v2 dummies"
SEED_SIZE = 32  # bytes of a fresh seed (`new_seed`); at least MIN_SEED_SIZE are accepted
MIN_SEED_SIZE = 16
PADDING_SHARE = Fraction(1, 10)  # the largest expected padding, as a share of a list, for every region
CELLS_PER_CHANGE = 2  # cells one person's change to one list moves (R and R + {j})
_PRECISION = 60  # decimal digits of the pmf and the offset's condition


# ------------------------------------------------------------------ accounting


def _exact(value: Fraction | int | float | str) -> Fraction:
    """An epsilon or delta as an exact fraction: a float is taken at its exact binary value."""
    if isinstance(value, bool):
        raise TypeError("a privacy parameter is a number, not a bool")
    return Fraction(value)


def _base(eps_c: Fraction) -> Decimal:
    """t = exp(-eps_c) to _PRECISION digits (callers set the context)."""
    return (-(Decimal(eps_c.numerator) / Decimal(eps_c.denominator))).exp()


def truncation_delta(eps_c: Fraction | int, mu: int) -> Decimal:
    """The exact delta at eps_c of one cell's noise with offset mu: t^mu (1 - t) / (1 + t - 2 t^(mu+1)).

    It is the probability of the one output that the neighbouring count cannot produce
    (o = c from count c), and the hockey-stick divergence at eps_c (see the module's text).
    """
    eps = _positive(eps_c)
    if mu < 0:
        raise ValueError(f"the offset mu must be non-negative, not {mu}")
    with localcontext() as context:
        context.prec = _PRECISION
        t = _base(eps)
        return t**mu * (1 - t) / (1 + t - 2 * t ** (mu + 1))


def offset(eps_c: Fraction | int, delta_c: Fraction | int) -> int:
    """The smallest mu with which d = mu + Z, |Z| <= mu, is (eps_c, delta_c)-DP for a count.

    `truncation_delta` falls as mu grows; a binary search finds where it first reaches delta_c.
    """
    delta = Fraction(delta_c)
    if not 0 < delta < 1:
        raise ValueError(f"delta_c must be in (0, 1): truncated noise always needs some delta, got {delta}")
    with localcontext() as context:
        context.prec = _PRECISION
        bound = Decimal(delta.numerator) / Decimal(delta.denominator)

    def meets(mu: int) -> bool:
        return truncation_delta(eps_c, mu) <= bound

    low, high = -1, 1  # meets(low) is false by convention, meets(high) is searched for
    while not meets(high):
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if meets(middle) else (middle, high)
    return high


def noise_pmf(eps_c: Fraction | int, mu: int) -> dict[int, Decimal]:
    """P(d = v) for v = 0 .. 2 mu: the exact distribution the sampler draws (60 digits)."""
    eps = _positive(eps_c)
    with localcontext() as context:
        context.prec = _PRECISION
        t = _base(eps)
        weights = {v: t ** abs(v - mu) for v in range(2 * mu + 1)}
        total = sum(weights.values(), Decimal(0))
        return {v: w / total for v, w in weights.items()}


class Padding(enum.Enum):
    """Which regions get dummies in a round."""

    ALL = "all"  # every region but the full intersection
    PAIRS = "singletons and pairs"  # singletons and regions of two companies only


@dataclass(frozen=True)
class DummyPlan:
    """The dummies of one round: its (epsilon, delta) for the Venn counts, and k companies.

    `cells_per_change` is 2 for the counts the coordinator sees (a person moves between
    R and R + {j}); 1 gives the figure for a count where a change touches one cell.
    """

    epsilon: Fraction
    delta: Fraction
    k: int
    cells_per_change: int = CELLS_PER_CHANGE

    @classmethod
    def for_round(
        cls,
        epsilon: Fraction | int | float | str,
        delta: Fraction | int | float | str,
        k: int,
        *,
        cells_per_change: int = CELLS_PER_CHANGE,
    ) -> DummyPlan:
        """The plan for a round; a float epsilon or delta is taken at its exact binary value."""
        plan = cls(_exact(epsilon), _exact(delta), k, cells_per_change)
        if plan.epsilon <= 0 or not 0 < plan.delta < 1:
            raise ValueError(f"need epsilon > 0 and 0 < delta < 1, got {plan.epsilon}, {plan.delta}")
        if k < 2:
            raise ValueError(f"a round has at least 2 companies, not {k}")
        if cells_per_change < 1:
            raise ValueError("cells_per_change must be at least 1")
        return plan

    @property
    def eps_c(self) -> Fraction:
        """Epsilon of each cell's noise: epsilon / cells_per_change."""
        return self.epsilon / self.cells_per_change

    @property
    def delta_c(self) -> Fraction:
        """Delta of each cell's noise: delta / cells_per_change."""
        return self.delta / self.cells_per_change

    @functools.cached_property
    def mu(self) -> int:
        """The offset: every cell gets mu + Z dummies, |Z| <= mu (`offset`)."""
        return offset(self.eps_c, self.delta_c)

    @property
    def regions(self) -> int:
        """Regions padded over the round when every region is: 2^k - 2 (all but the full intersection)."""
        return (1 << self.k) - 2

    def regions_per_company(self, padding: Padding = Padding.ALL) -> int:
        """Regions one company adds dummies to, its singleton included:
        2^(k-1) - 1 with every region padded (the 2^(k-1) - 2 shared ones, the full
        intersection excluded, and {j}); k with singletons and pairs ({j} and k - 1 pairs)."""
        every = (1 << (self.k - 1)) - 1
        return every if padding is Padding.ALL else min(self.k, every)  # k = 2: the pair is the output

    def expected_dummies_per_company(self, padding: Padding = Padding.ALL) -> int:
        """E[dummies one company adds] = mu per region (E[d] = mu)."""
        return self.regions_per_company(padding) * self.mu

    def max_dummies_per_company(self, padding: Padding = Padding.ALL) -> int:
        """The most dummies one company can add: 2 mu per region."""
        return 2 * self.expected_dummies_per_company(padding)

    def extra_multiplications_per_company(self, padding: Padding = Padding.ALL) -> int:
        """Expected extra EC multiplications per company: every company blinds every list,
        so k times the expected dummies of one company."""
        return self.k * self.expected_dummies_per_company(padding)

    def padding_for(self, list_size: int) -> Padding:
        """The 10% rule for one list: ALL while (2^(k-1) - 1) mu <= 10% of `list_size`, else PAIRS.

        The decision is visible to the coordinator, so `list_size` must be a figure it may
        know: a public bound, or the list's noisy size n_j + d_j (post-processing of the
        singleton's noise). Never pass an exact list size: a threshold on it is not DP.
        """
        if list_size < 0:
            raise ValueError(f"a list size is non-negative, not {list_size}")
        fits = self.expected_dummies_per_company(Padding.ALL) <= PADDING_SHARE * list_size
        return Padding.ALL if fits else Padding.PAIRS

    def round_padding(self, list_sizes: Iterable[int]) -> Padding:
        """One level for the whole round (a region's members must agree on whether to pad it):
        ALL only if it fits every list (`padding_for`), else PAIRS."""
        levels = [self.padding_for(size) for size in list_sizes]
        return Padding.ALL if all(level is Padding.ALL for level in levels) else Padding.PAIRS


# --------------------------------------------------------------------- regions


def _roster(companies: Sequence[str]) -> tuple[str, ...]:
    roster = tuple(companies)
    if len(roster) < 2 or len(set(roster)) != len(roster) or not all(roster):
        raise ValueError(f"a roster is at least 2 distinct, non-empty company names, not {roster!r}")
    return roster


def _all_regions(roster: tuple[str, ...]) -> list[tuple[str, ...]]:
    return [r for size in range(1, len(roster) + 1) for r in itertools.combinations(roster, size)]


def padded_regions(companies: Sequence[str], padding: Padding) -> list[tuple[str, ...]]:
    """Every region that gets dummies, in roster order (singletons first, then by size).

    ALL: every region but the full intersection (2^k - 2). PAIRS: the k singletons and the
    k (k - 1) / 2 regions of two companies.
    """
    roster = _roster(companies)
    largest = len(roster) - 1 if padding is Padding.ALL else min(2, len(roster) - 1)
    return [r for r in _all_regions(roster) if len(r) <= largest]


def exact_regions(companies: Sequence[str], padding: Padding) -> list[tuple[str, ...]]:
    """Every region whose count the coordinator sees exactly.

    Always the full intersection (the output). With PAIRS also every region of 3 to k - 1
    companies: a person added to list j who is already in two or more other lists then moves
    between two regions at least one of which is exact, and that change is not protected by
    the dummies; a person in at most one other list moves between padded cells (protected).
    """
    padded = set(padded_regions(companies, padding))
    return [r for r in _all_regions(_roster(companies)) if r not in padded]


def company_regions(company: str, companies: Sequence[str], padding: Padding) -> list[tuple[str, ...]]:
    """The padded regions `company` adds dummies to: its singleton and the shared regions holding it."""
    if company not in companies:
        raise ValueError(f"{company!r} is not in the roster {tuple(companies)!r}")
    return [r for r in padded_regions(companies, padding) if company in r]


# --------------------------------------------------------------------- sampler


def new_seed() -> bytes:
    """A fresh seed from `secrets`: for a company's singleton, or drawn by a region's lowest
    member for the region. The caller stores it sealed and reuses it on retries."""
    return secrets.token_bytes(SEED_SIZE)


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def noise_info(round_id: str, region: Iterable[str]) -> bytes:
    """HKDF's info: label | round | region, the region's names sorted (a set, however listed),
    every field 4-byte big-endian length-prefixed and the names preceded by their number."""
    names = sorted(region)
    if not round_id:
        raise ValueError("the round id is empty")
    if not names or len(set(names)) != len(names) or not all(names):
        raise ValueError(f"a region is distinct, non-empty company names, not {names!r}")
    encoded = [_field(name.encode("utf-8")) for name in names]
    return (
        _field(INFO_LABEL)
        + _field(round_id.encode("utf-8"))
        + len(names).to_bytes(4, "big")
        + b"".join(encoded)
    )


def noise_key(seed: bytes, round_id: str, region: Iterable[str]) -> bytes:
    """The AES-256 key of one draw: HKDF-SHA256(ikm = seed, no salt, info = `noise_info`)."""
    if len(seed) < MIN_SEED_SIZE:
        raise ValueError(f"a seed has at least {MIN_SEED_SIZE} bytes, not {len(seed)}")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=noise_info(round_id, region))
    return hkdf.derive(seed)


class RandomBits:
    """Bits of the AES-256-CTR keystream under `key` (IV zero: each key is used once),
    read most significant bit first."""

    _CHUNK = 64  # bytes encrypted at a time

    def __init__(self, key: bytes) -> None:
        self._stream = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
        self._pool = 0
        self._available = 0

    def take(self, count: int) -> int:
        """The next `count` bits as an integer in [0, 2^count)."""
        while self._available < count:
            chunk = self._stream.update(bytes(self._CHUNK))
            self._pool = (self._pool << (8 * self._CHUNK)) | int.from_bytes(chunk, "big")
            self._available += 8 * self._CHUNK
        self._available -= count
        value = self._pool >> self._available
        self._pool &= (1 << self._available) - 1
        return value

    def uniform(self, n: int) -> int:
        """Uniform on {0, ..., n - 1}, by rejection (exact)."""
        if n < 1:
            raise ValueError(f"uniform needs n >= 1, not {n}")
        width = (n - 1).bit_length()
        while True:
            value = self.take(width)
            if value < n:
                return value

    def bernoulli(self, p: Fraction) -> bool:
        """True with probability p (a fraction in [0, 1]), exactly."""
        return self.uniform(p.denominator) < p.numerator

    def bernoulli_exp(self, gamma: Fraction) -> bool:
        """True with probability exp(-gamma), gamma >= 0 (CKS 2020, Algorithm 1)."""
        if gamma < 0:
            raise ValueError("gamma must be non-negative")
        if gamma <= 1:
            k = 1
            while self.bernoulli(gamma / k):
                k += 1
            return k % 2 == 1
        whole = gamma.numerator // gamma.denominator
        for _ in range(whole):
            if not self.bernoulli_exp(Fraction(1)):
                return False
        return self.bernoulli_exp(gamma - whole)

    def discrete_laplace(self, eps: Fraction) -> int:
        """Z with P(Z = z) proportional to exp(-eps |z|) (CKS 2020, Algorithm 2, scale t/s = 1/eps)."""
        s, t = eps.numerator, eps.denominator
        while True:
            u = self.uniform(t)
            if not self.bernoulli_exp(Fraction(u, t)):
                continue
            v = 0
            while self.bernoulli_exp(Fraction(1)):
                v += 1
            y = (u + t * v) // s  # u + t v is geometric: P(x) proportional to exp(-x / t)
            negative = self.bernoulli(Fraction(1, 2))
            if negative and y == 0:
                continue
            return -y if negative else y

    def truncated_noise(self, eps: Fraction, mu: int) -> int:
        """mu + Z, Z discrete Laplace(exp(-eps)) conditioned on |Z| <= mu (rejection)."""
        while True:
            z = self.discrete_laplace(eps)
            if abs(z) <= mu:
                return mu + z


def _positive(eps_c: Fraction | int) -> Fraction:
    if isinstance(eps_c, bool) or not isinstance(eps_c, Fraction | int):
        raise TypeError(f"eps_c is a Fraction (or int), never a float: got {type(eps_c).__name__}")
    eps = Fraction(eps_c)
    if eps <= 0:
        raise ValueError(f"eps_c must be positive, not {eps}")
    return eps


def _draw(seed: bytes, round_id: str, region: Sequence[str], eps_c: Fraction | int, mu: int) -> int:
    eps = _positive(eps_c)
    if isinstance(mu, bool) or not isinstance(mu, int) or mu < 0:
        raise ValueError(f"mu is a non-negative integer, not {mu!r}")
    return RandomBits(noise_key(seed, round_id, region)).truncated_noise(eps, mu)


def region_noise(
    seed_R: bytes, round_id: str, region: tuple[str, ...], eps_c: Fraction | int, mu: int
) -> int:
    """d_R in [0, 2 mu]: the dummies every member of region R (two or more companies) adds.

    Deterministic in (seed_R, round_id, the set of names in `region`, eps_c, mu): every
    member computes the same value, and a retry of the round reproduces it.
    """
    if len(region) < 2:
        raise ValueError(f"a shared region has two or more companies, not {region!r}; see singleton_noise")
    return _draw(seed_R, round_id, region, eps_c, mu)


def singleton_noise(seed: bytes, round_id: str, company: str, eps_c: Fraction | int, mu: int) -> int:
    """d_{j} in [0, 2 mu]: the dummies company j adds to its own list alone (hides its size).

    `seed` is the company's own (`new_seed`), stored sealed and reused when it retries.
    """
    return _draw(seed, round_id, (company,), eps_c, mu)


# --------------------------------------------------------------------- a company's dummies

MAX_DUMMY_EPSILON = 100.0  # beyond this the dummies protect nothing: refused, not charged
MIN_DUMMY_EPSILON = 1e-3  # below this mu is beyond any list (and the exact arithmetic's range)
MIN_DUMMY_DELTA = 1e-12
MAX_DUMMIES_PER_COMPANY = 1_000_000  # the most a round may make one company add (memory, time)


def accepted_plan(epsilon: float, delta: float, k: int) -> DummyPlan:
    """The plan of an announced dummy policy, or ValueError saying why a company refuses it:
    epsilon in [MIN_DUMMY_EPSILON, MAX_DUMMY_EPSILON], delta in [MIN_DUMMY_DELTA, 1), and no more than
    MAX_DUMMIES_PER_COMPANY dummies per company at the singletons-and-pairs level (a tiny
    epsilon or delta would make mu, and a company's list, huge)."""
    if not MIN_DUMMY_EPSILON <= epsilon <= MAX_DUMMY_EPSILON:
        raise ValueError(
            f"dummy epsilon {epsilon:g} is outside [{MIN_DUMMY_EPSILON:g}, {MAX_DUMMY_EPSILON:g}]"
        )
    if not MIN_DUMMY_DELTA <= delta < 1:
        raise ValueError(f"dummy delta {delta:g} is outside [{MIN_DUMMY_DELTA:g}, 1)")
    plan = DummyPlan.for_round(epsilon, delta, k)
    most = plan.max_dummies_per_company(Padding.PAIRS)
    if most > MAX_DUMMIES_PER_COMPANY:
        raise ValueError(f"it could add {most} dummies per company, above {MAX_DUMMIES_PER_COMPANY}")
    return plan


_PAIR_SEED_LABEL = b"monoculture/v2 dummy pair seed"
_REGION_SEED_LABEL = b"monoculture/v2 dummy region seed"
_ENVELOPE_LABEL = b"monoculture/v2 region seeds"
_GCM_TAG = 16


def round_padding_level(plan: DummyPlan, min_list_size: int) -> Padding:
    """The round's padding, the same for every party: ALL when the 10% rule holds for the
    round's (public) minimum list size and a company's most dummies stay within
    MAX_DUMMIES_PER_COMPANY; else singletons and pairs."""
    if plan.padding_for(min_list_size) is Padding.ALL and (
        plan.max_dummies_per_company(Padding.ALL) <= MAX_DUMMIES_PER_COMPANY
    ):
        return Padding.ALL
    return Padding.PAIRS


def led_regions(sender: str, receiver: str, roster: Sequence[str], padding: Padding) -> list[tuple[str, ...]]:
    """The padded regions of three or more companies whose seed `sender` draws (it is their
    first member in ring order) and which hold `receiver`: what its envelope to `receiver` holds."""
    names = _roster(roster)
    return [
        region
        for region in padded_regions(names, padding)
        if len(region) >= 3 and region[0] == sender and receiver in region
    ]


def sealed_seeds_size(sender: str, receiver: str, roster: Sequence[str], padding: Padding) -> int:
    """The exact length of `sender`'s envelope to `receiver` (0: it sends none)."""
    count = len(led_regions(sender, receiver, roster, padding))
    return count * SEED_SIZE + _GCM_TAG if count else 0


def region_seed(own_seed: bytes, round_id: str, region: tuple[str, ...]) -> bytes:
    """seed_R of a region of three or more, drawn by its first member from its own sealed seed."""
    info = _REGION_SEED_LABEL + noise_info(round_id, region)
    return HKDF(algorithm=hashes.SHA256(), length=SEED_SIZE, salt=None, info=info).derive(own_seed)


@dataclass(frozen=True)
class SeedEnvelope:
    """`sender`'s envelope to `receiver` in one round: the seeds of the regions of three or more
    it leads that hold `receiver` (`led_regions`), AES-256-GCM under a key from their pair key."""

    pair_key: bytes
    round_id: str
    sender: str
    receiver: str
    roster: tuple[str, ...]
    padding: Padding

    @property
    def regions(self) -> list[tuple[str, ...]]:
        return led_regions(self.sender, self.receiver, self.roster, self.padding)

    def _aead(self) -> tuple[AESGCM, bytes]:
        fields = (self.round_id, self.sender, self.receiver, *self.roster)  # the roster in ring order
        info = _ENVELOPE_LABEL + b"".join(_field(value.encode()) for value in fields)
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(self.pair_key)
        return AESGCM(key), b"".join(noise_info(self.round_id, region) for region in self.regions)

    def seal(self, own_seed: bytes) -> bytes:
        """The sender's envelope (b"" when it leads no region holding the receiver)."""
        if not self.regions:
            return b""
        aead, aad = self._aead()
        plain = b"".join(region_seed(own_seed, self.round_id, region) for region in self.regions)
        return aead.encrypt(bytes(12), plain, aad)  # zero nonce: the key is used once

    def open(self, sealed: bytes) -> dict[tuple[str, ...], bytes]:
        """The seeds by region; ValueError if `sealed` is not the envelope the round needs
        (missing, of another length, or not sealed under the pair key for this round)."""
        if len(sealed) != sealed_seeds_size(self.sender, self.receiver, self.roster, self.padding):
            raise ValueError(f"the region seeds of {self.sender} are {len(sealed)} bytes, not the round's")
        if not self.regions:
            return {}
        aead, aad = self._aead()
        try:
            plain = aead.decrypt(bytes(12), sealed, aad)
        except InvalidTag:
            raise ValueError(f"the region seeds of {self.sender} do not open under the pair key") from None
        return {region: plain[n * SEED_SIZE : (n + 1) * SEED_SIZE] for n, region in enumerate(self.regions)}


_IDS_LABEL = b"monoculture/v2 dummy ids"
DUMMY_ID_PREFIX = "~dummy~"  # no input id starts so in practice; ids are 128 random bits besides


def pair_seed(pair_key: bytes, round_id: str, region: tuple[str, ...]) -> bytes:
    """seed_R of a region of two companies, from their pair key s_ij (core/masks.py): both
    derive it, the coordinator, which lacks s_ij, cannot."""
    info = _PAIR_SEED_LABEL + noise_info(round_id, region)
    hkdf = HKDF(algorithm=hashes.SHA256(), length=SEED_SIZE, salt=None, info=info)
    return hkdf.derive(pair_key)


def dummy_ids(seed: bytes, round_id: str, region: tuple[str, ...], count: int) -> list[str]:
    """`count` dummy ids for a region: 128-bit values of an AES-CTR stream under a key from the
    region's seed, so every member of the region adds the same ids and their blinded tokens meet
    in those lists alone."""
    if len(seed) < MIN_SEED_SIZE:
        raise ValueError(f"a seed has at least {MIN_SEED_SIZE} bytes, not {len(seed)}")
    raw = random_bytes(seed, _IDS_LABEL + noise_info(round_id, region), 16 * count)
    return [DUMMY_ID_PREFIX + raw[16 * i : 16 * (i + 1)].hex() for i in range(count)]


def company_dummies(
    company: str,
    roster: Sequence[str],
    round_id: str,
    plan: DummyPlan,
    own_seed: bytes,
    pair_keys: Mapping[int, bytes],
    padding: Padding = Padding.PAIRS,
    received_seeds: Mapping[tuple[str, ...], bytes] | None = None,
) -> list[str]:
    """Every dummy id `company` adds to its list: its own region's d_j (from its own sealed
    seed); with each peer j, the pair region's d_R ids (from a seed derived from their pair
    key); with `padding` ALL, every region of three or more but the full intersection that
    holds it (the seed its own, derived, where it leads the region, else from
    `received_seeds`, opened from the leader's envelope). The same inputs give the same ids
    (retries); no dummy is in every list (at k = 2 the pair is the full intersection)."""
    names = _roster(roster)
    ids = dummy_ids(
        own_seed, round_id, (company,), singleton_noise(own_seed, round_id, company, plan.eps_c, plan.mu)
    )
    if len(names) == 2:
        return ids
    for position, peer in enumerate(names):
        if peer == company:
            continue
        region = tuple(sorted((company, peer), key=names.index))
        seed = pair_seed(pair_keys[position], round_id, region)
        ids += dummy_ids(seed, round_id, region, region_noise(seed, round_id, region, plan.eps_c, plan.mu))
    for region in company_regions(company, names, padding):
        if len(region) < 3:
            continue
        if region[0] == company:
            seed = region_seed(own_seed, round_id, region)
        elif received_seeds is not None and region in received_seeds:
            seed = received_seeds[region]
        else:
            raise ValueError(f"no seed for the region {', '.join(region)} (its first member sends it)")
        ids += dummy_ids(seed, round_id, region, region_noise(seed, round_id, region, plan.eps_c, plan.mu))
    return ids
