"""The coordinator's TOML configuration (deploy/coordinator.toml shows every key).

The section dataclasses below are the one source of the keys, their defaults, their
checks and the comments in deploy/; `CoordinatorConfig` is what the coordinator runs with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from monoculture.analysis.budget import DEFAULT_MAX_EPSILON_PER_ROSTER, amount, round_cost
from monoculture.analysis.release import ReleasePolicy
from monoculture.core.config import (
    TlsPaths,
    check_sections,
    optional_path,
    path_value,
    read_section,
    read_toml,
    resolve_path,
)
from monoculture.core.errors import ConfigError
from monoculture.observe import check_metrics_address
from monoculture.transport import TlsFiles

MIN_WORKERS = 4  # below this, long polls could hold every gRPC thread


@dataclass(frozen=True)
class CoordinatorSection:
    """Where the coordinator listens and keeps its state."""

    listen: str = field(
        default="127.0.0.1:50051",
        metadata={"doc": "Address to listen on; port 0 lets the operating system choose (see port_file)."},
    )
    port_file: str = field(
        default="", metadata={"doc": 'Where to write the bound port once listening ("" = nowhere).'}
    )
    record_dir: str = field(
        default="",
        metadata={
            "doc": "Test aid: keep a copy of everything the coordinator stores in this folder\n"
            '("" = off). Never enable it in production.'
        },
    )
    max_workers: int = field(
        default=32,
        metadata={
            "doc": "gRPC worker threads; each call, long polls included, holds one while it runs\n"
            f"(at least {MIN_WORKERS}, and 3 x [limits] max_calls_per_company)."
        },
    )
    metrics_port: int = field(
        default=0,
        metadata={
            "doc": "Serve Prometheus metrics (rounds by phase, hops, bytes, refusals, epsilon spent) on\n"
            "this port; 0 = off (the default). No id or failure bit is ever exported."
        },
    )
    metrics_address: str = field(
        default="127.0.0.1", metadata={"doc": "The metrics endpoint's address (loopback by default)."}
    )
    database: str = field(
        default="coordinator-state/coordinator.sqlite",
        metadata={
            "doc": "Rounds, relayed chunks, results and the append-only audit log (SQLite); the key that\n"
            "seals the rounds' tag keys is written beside it as coordinator.sqlite.key (mode 0600)."
        },
    )

    def check(self) -> None:
        """Enough worker threads."""
        if self.max_workers < MIN_WORKERS:
            raise ConfigError(f"max_workers must be at least {MIN_WORKERS}")
        check_metrics_address(self.metrics_address, self.metrics_port, "[coordinator]")


@dataclass(frozen=True)
class TlsSection(TlsPaths):
    """mTLS. Made by `monoculture certs init` and `monoculture certs issue --coordinator HOST`.
    Without them the coordinator refuses to start unless given --insecure (loopback only)."""


@dataclass(frozen=True)
class Limits:
    """Bounds on what one company may send and how many rounds may run."""

    min_list_size: int = field(
        default=1,
        metadata={
            "doc": "No company may enrol fewer records (guards probe attacks; a round may ask for more)."
        },
    )
    max_list_size: int = field(default=10_000_000, metadata={"doc": "No company may enrol more records."})
    max_chunks_per_list: int = field(
        default=4096, metadata={"doc": "Most wire chunks one company's list may take."}
    )
    max_rounds_in_flight: int = field(
        default=16, metadata={"doc": "Rounds in progress at once; opening another is refused."}
    )
    deadline_seconds: float = field(
        default=3600.0,
        metadata={
            "doc": "A party must finish each step this many seconds after it can start, "
            "or the round fails naming it."
        },
    )
    max_calls_per_company: int = field(
        default=4,
        metadata={
            "doc": "Calls one company may have in flight at once; more are refused (RESOURCE_EXHAUSTED).\n"
            "An honest daemon makes one call at a time. The auditor has the same allowance of its own.\n"
            "[coordinator] max_workers must be at least 3 times this (a flooding company, an honest\n"
            "one and the auditor each at their limit)."
        },
    )
    max_polls_per_company: int = field(
        default=2,
        metadata={
            "doc": "Long polls (PollWork, which hold a worker thread while they wait) one company may\n"
            "have waiting at once; more are refused. 2 lets a restarted daemon poll while the poll\n"
            "of the process it replaced is still being noticed as gone (within about a second)."
        },
    )
    calls_per_second_per_company: float = field(
        default=20.0,
        metadata={
            "doc": "Sustained calls a second one company (and, separately, the auditor) may make;\n"
            "faster calls are refused. An honest daemon long-polls and makes a few calls per step."
        },
    )
    burst_calls_per_company: int = field(
        default=200, metadata={"doc": "Calls above that rate one company may make in a burst."}
    )
    max_concurrent_calls: int = field(
        default=0,
        metadata={
            "doc": "Calls the server holds at once, all parties together, running (max_workers of\n"
            "them) or queued for a worker; more are refused at once (RESOURCE_EXHAUSTED). Each party's\n"
            "long-held calls are bounded above, so the queue waits mostly behind refusals of a flood,\n"
            "which take a moment each. 0 = 4 x [coordinator] max_workers; else at least max_workers."
        },
    )

    def check(self) -> None:
        """Sizes in order and room for a round; admission limits that admit a call."""
        if not 1 <= self.min_list_size <= self.max_list_size or self.max_rounds_in_flight < 1:
            raise ConfigError("need 1 <= min_list_size <= max_list_size, max_rounds_in_flight >= 1")
        if not 1 <= self.max_polls_per_company <= self.max_calls_per_company:
            raise ConfigError("need 1 <= max_polls_per_company <= max_calls_per_company")
        rate = self.calls_per_second_per_company
        if not (rate > 0 and math.isfinite(rate)) or self.burst_calls_per_company < 1:
            raise ConfigError("need 0 < calls_per_second_per_company < inf, burst_calls_per_company >= 1")
        if self.max_concurrent_calls < 0:
            raise ConfigError("max_concurrent_calls must be 0 (= 4 x max_workers) or more")


@dataclass(frozen=True)
class ReleaseSection:
    """What the auditor publishes (docs/USAGE.md, "Release policy")."""

    # The keys of ReleasePolicy, with its defaults; the dp_ keys are its mechanism, epsilon, delta.
    min_shared_individuals: int = field(
        default=ReleasePolicy.min_shared_individuals,
        metadata={"doc": "Below this many shared individuals, nothing but the roster is published."},
    )
    min_cell_count: int = field(
        default=ReleasePolicy.min_cell_count,
        metadata={
            "doc": "Pattern cells with 1 to min_cell_count - 1 individuals are withheld, with complements."
        },
    )
    dp_mechanism: str = field(
        default=ReleasePolicy.mechanism,
        metadata={
            "doc": '"none", "discrete-laplace" (epsilon) or "discrete-gaussian" (epsilon, delta); per round.'
        },
    )
    dp_epsilon: float = field(default=ReleasePolicy.epsilon, metadata={"doc": "Privacy budget per round."})
    dp_delta: float = field(default=ReleasePolicy.delta, metadata={"doc": "The discrete Gaussian's delta."})
    max_epsilon_per_roster: float = field(
        default=DEFAULT_MAX_EPSILON_PER_ROSTER,
        metadata={
            "doc": "Privacy budget of a roster: the most epsilon all rounds with the same set of companies\n"
            "may spend together (they release figures about the same people, so their epsilons add up).\n"
            "Opening a round that would go above it is refused; a round that fails is refunded (it\n"
            "published nothing), except for its DP dummies' share once it was relaying (padded sizes\n"
            "could reach the coordinator). 10 by default, so that DP rounds cannot repeat without bound\n"
            "(ten rounds at epsilon 1); inf = no cap, only when the auditor keeps this account elsewhere.\n"
            "Rounds without noise cost nothing here (they promise nothing). `monoculture round budget`."
        },
    )
    dummy_epsilon: float = field(
        default=0.0,
        metadata={
            "doc": "DP dummies on what the coordinator itself sees: every list's size and every overlap\n"
            "of two companies get dummy ids (epsilon for one person's change, two cells at epsilon/2\n"
            "each; 0 = none). Regions of three or more companies (not the output) stay exact.\n"
            'docs/PROTOCOL.md, "DP dummies".'
        },
    )
    dummy_delta: float = field(default=1e-6, metadata={"doc": "The dummies' delta."})

    def policy(self) -> ReleasePolicy:
        """The ReleasePolicy these keys describe."""
        return ReleasePolicy(
            self.min_shared_individuals,
            self.min_cell_count,
            self.dp_mechanism,
            self.dp_epsilon,
            self.dp_delta,
        )

    @classmethod
    def of(
        cls,
        policy: ReleasePolicy,
        max_epsilon_per_roster: float = DEFAULT_MAX_EPSILON_PER_ROSTER,
        dummy_epsilon: float = 0.0,
        dummy_delta: float = 1e-6,
    ) -> ReleaseSection:
        """The keys that describe `policy`, the roster cap and the dummies."""
        return cls(
            policy.min_shared_individuals,
            policy.min_cell_count,
            policy.mechanism,
            policy.epsilon,
            policy.delta,
            max_epsilon_per_roster,
            dummy_epsilon,
            dummy_delta,
        )

    def check(self) -> None:
        """The policy's own check, a cap that leaves room for one round, and sane dummies."""
        policy = self.policy()
        policy.check()
        if not (0 <= self.dummy_epsilon < math.inf and 0 < self.dummy_delta < 1):
            raise ConfigError("need 0 <= dummy_epsilon < inf (0 = no dummies) and 0 < dummy_delta < 1")
        cap = self.max_epsilon_per_roster
        if math.isnan(cap) or cap <= 0:
            raise ConfigError(
                f"max_epsilon_per_roster must be above 0 (got {cap:g})", hint="inf means no cap"
            )
        epsilon = round_cost(policy).epsilon + self.dummy_epsilon  # both are charged to the roster
        if epsilon > cap:
            raise ConfigError(
                f"dp_epsilon and dummy_epsilon, {amount(epsilon)} together, are above "
                f"max_epsilon_per_roster {amount(cap)}: no round could be opened",
                hint="lower dp_epsilon or dummy_epsilon, or raise max_epsilon_per_roster",
            )


SECTIONS = {"coordinator": CoordinatorSection, "tls": TlsSection, "limits": Limits, "release": ReleaseSection}


@dataclass(frozen=True)
class CoordinatorConfig:
    """What the coordinator runs with: paths resolved, [release] as a ReleasePolicy.

    Defaults are the sections' (a key left out of a file means the same as one left out here).
    """

    listen: str = CoordinatorSection.listen
    port_file: Path | None = None  # where to write the bound port (for listen port 0); port_file ""
    record_dir: Path | None = None  # test aid: keep a copy of everything stored; record_dir ""
    max_workers: int = CoordinatorSection.max_workers
    database: Path = Path(CoordinatorSection.database)
    metrics_port: int = CoordinatorSection.metrics_port  # 0: no metrics endpoint
    metrics_address: str = CoordinatorSection.metrics_address
    tls: TlsFiles | None = None  # None only with --insecure
    limits: Limits = field(default_factory=Limits)
    release: ReleasePolicy = field(default_factory=ReleasePolicy)
    max_epsilon_per_roster: float = ReleaseSection.max_epsilon_per_roster  # [release]; inf = no cap
    dummy_epsilon: float = ReleaseSection.dummy_epsilon  # [release]; 0 = no dummies
    dummy_delta: float = ReleaseSection.dummy_delta


def _tls(path: Path, section: TlsSection, insecure: bool) -> TlsFiles | None:
    given = section.given()
    if given and len(given) != 3:
        raise ConfigError("[tls] needs ca_file, cert_file and key_file together", where=str(path))
    if not given and not insecure:
        raise ConfigError(
            "no [tls] files: the coordinator needs its certificate, key and the CA",
            where=str(path),
            hint="create them with `monoculture certs init` and "
            "`monoculture certs issue --coordinator HOST`, or pass --insecure (plaintext, loopback only)",
        )
    return None if insecure else TlsFiles(*section.resolved(path))


def load_coordinator_config(path: Path, *, insecure: bool = False) -> CoordinatorConfig:
    """Read and check the coordinator's config; paths are relative to the file's folder."""
    document = read_toml(path)
    check_sections(path, document, set(SECTIONS))
    values = read_section(path, document, "coordinator", CoordinatorSection)
    tls = _tls(path, read_section(path, document, "tls", TlsSection), insecure)
    release = read_section(path, document, "release", ReleaseSection)
    return CoordinatorConfig(
        listen=values.listen,
        port_file=optional_path(path, values.port_file),
        record_dir=optional_path(path, values.record_dir),
        max_workers=values.max_workers,
        database=resolve_path(path, values.database),
        metrics_port=values.metrics_port,
        metrics_address=values.metrics_address,
        tls=tls,
        limits=read_section(path, document, "limits", Limits),
        release=release.policy(),
        max_epsilon_per_roster=release.max_epsilon_per_roster,
        dummy_epsilon=release.dummy_epsilon,
        dummy_delta=release.dummy_delta,
    )


def _tls_section(tls: TlsFiles | None) -> TlsSection:
    if tls is None:
        return TlsSection()
    return TlsSection(str(tls.ca_file), str(tls.cert_file), str(tls.key_file), path_value(tls.crl_file))


def coordinator_sections(config: CoordinatorConfig) -> dict[str, object]:
    """`config` as the sections of its file, for `render_toml` (paths written as they are held)."""
    return {
        "coordinator": CoordinatorSection(
            listen=config.listen,
            port_file=path_value(config.port_file),
            record_dir=path_value(config.record_dir),
            max_workers=config.max_workers,
            database=str(config.database),
            metrics_port=config.metrics_port,
            metrics_address=config.metrics_address,
        ),
        "tls": _tls_section(config.tls),
        "limits": config.limits,
        "release": ReleaseSection.of(
            config.release, config.max_epsilon_per_roster, config.dummy_epsilon, config.dummy_delta
        ),
    }
