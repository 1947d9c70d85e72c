"""The company daemon's TOML configuration (deploy/client-*.toml show every key).

The section dataclasses below are the one source of the keys, their defaults, their
checks and the comments in deploy/; `ClientConfig` is what the daemon runs with.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monoculture.analysis.budget import ReleaseFloor
from monoculture.client.sources import check_password_source, holds_password, sql_query
from monoculture.core.config import (
    FreeTable,
    TlsPaths,
    check_sections,
    optional_path,
    path_value,
    read_section,
    read_toml,
    resolve_path,
)
from monoculture.core.dataset import DuplicatePolicy, InputSpec, SqlQuery
from monoculture.core.errors import ConfigError, MonocultureError, ProtocolError
from monoculture.core.identity import FINGERPRINT_PREFIX
from monoculture.core.protocol import check_company_name
from monoculture.core.wire import CHUNK_ELEMENTS, MAX_CHUNK_ELEMENTS
from monoculture.observe import check_metrics_address
from monoculture.transport import TlsFiles

log = logging.getLogger("monoculture.client")


@dataclass(frozen=True)
class ClientSection:
    """This company's daemon: its name, the coordinator it dials and how it works."""

    company: str = field(
        metadata={
            "doc": "This company's name on rounds' rosters (1-64 of a-z 0-9 - _ .); "
            "must match its certificate."
        }
    )
    coordinator: str = field(metadata={"doc": "The coordinator's address. The daemon only dials out."})
    poll_seconds: float = field(default=10.0, metadata={"doc": "Long-poll duration, seconds."})
    metrics_port: int = field(
        default=0,
        metadata={
            "doc": "Serve Prometheus metrics (steps and their durations, hops, bytes, elements blinded)\n"
            "on this port; 0 = off (the default). No id or failure bit is ever exported."
        },
    )
    metrics_address: str = field(
        default="127.0.0.1", metadata={"doc": "The metrics endpoint's address (loopback by default)."}
    )
    stats_file: str = field(
        default="", metadata={"doc": 'Append per-round EC operation counts (JSON lines) here ("" = off).'}
    )
    exit_after_rounds: int = field(
        default=0, metadata={"doc": "Stop after this many rounds have ended (0 = serve forever)."}
    )
    chunk_elements: int = field(
        default=CHUNK_ELEMENTS,
        metadata={"doc": f"Elements per wire chunk, 1..{MAX_CHUNK_ELEMENTS} (the default is about 1 MiB)."},
    )
    state_dir: str = field(
        default="client-state",
        metadata={
            "doc": "Sealed per-round keys, so a restarted daemon finishes its rounds "
            "(mode 0700; deleted per round)."
        },
    )
    retry_seconds: float = field(
        default=600.0,
        metadata={
            "doc": "How long a step is retried (backoff with jitter) while the coordinator is unreachable."
        },
    )
    workers: int = field(
        default=0,
        metadata={
            "doc": "Blinding worker processes: 0 = one per core; 1 = blind in the daemon process itself."
        },
    )
    allow_unpinned: bool = field(
        default=False,
        metadata={
            "doc": "Take part in rounds with companies not pinned in [peers], trusting the auditor's CA\n"
            "alone to name them (logged as a warning at every such round). false: a round whose roster\n"
            "holds a company not in [peers] is refused before anything is sent. Keep it false: the\n"
            "auditor runs the CA and could certify a company of its own to probe yours."
        },
    )
    require_rerandomised_tags: bool = field(
        default=False,
        metadata={
            "doc": "Take part only in rounds whose failure tags every relay re-randomises (auditor:\n"
            "`round open --rerandomise`; about 4 times the wall time at a million records), so the\n"
            "coordinator together with one other company cannot link this company's ids to their\n"
            "final tokens.\n"
            "Rounds of two companies are refused too: the option protects nothing there."
        },
    )
    require_padded_regions: bool = field(
        default=False,
        metadata={
            "doc": "Take part only in rounds where every count the coordinator sees but the output is\n"
            "padded with DP dummies ([release] dummy_epsilon on the coordinator): rounds without\n"
            "dummies are refused, and so are rounds whose minimum list size is too small for the\n"
            "10% rule, where regions of three to k - 1 companies would stay exact (docs/USAGE.md,\n"
            "'DP dummies: what they cost')."
        },
    )

    def check(self) -> None:
        """The company name is valid and chunks are within the wire's bounds."""
        try:
            check_company_name(self.company)
        except MonocultureError as exc:
            raise ConfigError(f"company: {exc.message}", hint=exc.hint) from None
        if not 1 <= self.chunk_elements <= MAX_CHUNK_ELEMENTS:
            raise ConfigError(f"chunk_elements must be 1..{MAX_CHUNK_ELEMENTS}")
        check_metrics_address(self.metrics_address, self.metrics_port, "[client]")


@dataclass(frozen=True)
class TlsSection(TlsPaths):
    """mTLS: the CA and this company's certificate and key, from the auditor
    (`monoculture certs issue --company NAME`). Required unless --insecure."""


@dataclass(frozen=True)
class DataSection:
    """This company's records: one row per individual, an id and a failure indicator.
    From a file (path) or from a database (url and query), exactly one of them."""

    # The defaults are InputSpec's, which `monoculture simulate` and the CLI use too.
    path: str = field(
        default="", metadata={"doc": "CSV with a header, or Parquet (by suffix, or set format); or set url."}
    )
    format: str = field(default=InputSpec.file_format, metadata={"doc": "auto | csv | parquet"})
    id_column: str = field(default=InputSpec.id_column, metadata={"doc": "The column of ids."})
    failure_column: str = field(
        default=InputSpec.failure_column,
        metadata={"doc": "0/1 or true/false; 1 = the model failed on this individual."},
    )
    duplicates: str = field(
        default=InputSpec.duplicates.value,
        metadata={"doc": f'{" | ".join(DuplicatePolicy)} (docs/USAGE.md, "Duplicate ids").'},
    )
    max_id_length: int = field(
        default=InputSpec.max_id_length, metadata={"doc": "Longest id accepted, in UTF-8 bytes."}
    )
    group_column: str = field(
        default="",
        metadata={
            "doc": 'The column of group labels ("" = none), read only in rounds that take their groups\n'
            "from this company (round open --groups-from); every label must be one the round declared."
        },
    )
    url: str = field(
        default="",
        metadata={
            "doc": 'Read the records from a database instead ("" = from path): an SQLAlchemy URL, e.g.\n'
            "postgresql+psycopg://reader@db.example:5432/records or sqlite:///records.db (relative to\n"
            "this file). Keep the password out of it: password_env or password_file."
        },
    )
    query: str = field(
        default="",
        metadata={
            "doc": "With url: the SQL returning one row per individual, with the id, failure and\n"
            "(optional) group columns named as above, e.g. SELECT person AS id, failed FROM outcomes\n"
            "ORDER BY person. It runs in a read-only transaction on PostgreSQL; grant the user SELECT only."
        },
    )
    password_env: str = field(
        default="",
        metadata={"doc": 'With url: the environment variable holding the database password ("" = none).'},
    )
    password_file: str = field(
        default="",
        metadata={"doc": 'With url: a file holding the database password, e.g. mode 0600 ("" = none).'},
    )

    def check(self) -> None:
        """`duplicates` names a policy; the records come from a file or from a query, not both."""
        self.policy()
        if bool(self.path) == bool(self.url):
            raise ConfigError(
                "give path (a CSV or Parquet file) or url and query (a database), exactly one of them"
            )
        if bool(self.url) != bool(self.query):
            raise ConfigError("url and query go together: the database and the SQL that reads the records")
        if not self.url and (self.password_env or self.password_file):
            raise ConfigError("password_env and password_file are for a database url")

    def policy(self) -> DuplicatePolicy:
        """The duplicate-id policy named by `duplicates`."""
        try:
            return DuplicatePolicy(self.duplicates)
        except ValueError:
            raise ConfigError(
                f"duplicates = {self.duplicates!r} is not a policy",
                hint=f"choose one of {', '.join(DuplicatePolicy)}",
            ) from None


@dataclass(frozen=True)
class ReleaseFloorSection:
    """The weakest release policy this company accepts, and its privacy budget (docs/USAGE.md,
    "Release policy"). Every round announces its policy when the company joins; a round whose
    policy is weaker, or that would take this company over its budget, is refused before
    anything is sent, and fails naming this company and the rule. The defaults accept any
    policy and cap the epsilon spent per roster at 10, and over every roster together at 10
    (analysis/budget.py says why). A sensible floor: min_shared_individuals = 100,
    min_cell_count = 10, allow_exact_release = false, max_epsilon_per_round = 1.0,
    max_epsilon_per_roster = 10.0."""

    # The keys of analysis.budget.ReleaseFloor, with its defaults.
    min_shared_individuals: int = field(
        default=ReleaseFloor.min_shared_individuals,
        metadata={
            "doc": "Refuse a round publishing figures over fewer shared individuals than this "
            "(e.g. 100; 0 = any)."
        },
    )
    min_cell_count: int = field(
        default=ReleaseFloor.min_cell_count,
        metadata={"doc": "Refuse a round publishing pattern cells smaller than this (e.g. 10; 0 = any)."},
    )
    allow_exact_release: bool = field(
        default=ReleaseFloor.allow_exact_release,
        metadata={
            "doc": "Accept a round released without differential privacy (dp_mechanism none); e.g. false.\n"
            "An exact release counts 0 against the epsilon keys below (it promises no privacy at all):\n"
            "only this key refuses it."
        },
    )
    max_epsilon_per_round: float = field(
        default=ReleaseFloor.max_epsilon_per_round,
        metadata={"doc": "Refuse a round whose release spends a larger epsilon (e.g. 1.0; inf = any)."},
    )
    max_epsilon_per_roster: float = field(
        default=ReleaseFloor.max_epsilon_per_roster,
        metadata={
            "doc": "Refuse a round that would take the epsilon this company has spent on rounds with\n"
            "the same roster (the same set of companies) above this (10 by default, as the auditor's\n"
            "cap; inf = no limit). Kept in state_dir/privacy-ledger.json, charged when the company\n"
            "enrols, every attempt, never refunded: it is what stops failed rounds with DP dummies\n"
            "from being repeated until their padded sizes average out to the exact size."
        },
    )

    max_epsilon_total: float = field(
        default=ReleaseFloor.max_epsilon_total,
        metadata={
            "doc": "Refuse a round that would take the epsilon this company has spent on every round,\n"
            "over every roster together, above this (10 by default; inf = no limit). The people this\n"
            "company holds, its list size and its overlaps with each peer are in every roster it is\n"
            "on, so rounds over different rosters add up for them. Same ledger file."
        },
    )

    def floor(self) -> ReleaseFloor:
        """The ReleaseFloor these keys describe."""
        return ReleaseFloor(
            self.min_shared_individuals,
            self.min_cell_count,
            self.allow_exact_release,
            self.max_epsilon_per_round,
            self.max_epsilon_per_roster,
            self.max_epsilon_total,
        )

    @classmethod
    def of(cls, floor: ReleaseFloor) -> ReleaseFloorSection:
        """The keys that describe `floor`."""
        return cls(
            floor.min_shared_individuals,
            floor.min_cell_count,
            floor.allow_exact_release,
            floor.max_epsilon_per_round,
            floor.max_epsilon_per_roster,
            floor.max_epsilon_total,
        )

    def check(self) -> None:
        """The floor's own check."""
        self.floor().check()


PEERS_DOC = """The companies this one agrees to be measured with, and the key each holds:
NAME = "sha256:HEX", the fingerprint of that company's certificate key as it gives it to
you out of band (it runs `monoculture certs fingerprint company-NAME.pem`). The daemon joins
only rounds whose whole roster is here, and checks every peer's signed keys against these
fingerprints, not only against the auditor's CA. Empty: every round is refused (unless
--insecure, or [client] allow_unpinned = true)."""
_FINGERPRINT = re.compile(re.escape(FINGERPRINT_PREFIX) + r"[0-9a-f]{64}")

SECTIONS = {
    "client": ClientSection,
    "tls": TlsSection,
    "data": DataSection,
    "release_floor": ReleaseFloorSection,
}
PEERS = "peers"  # a FreeTable section, read by read_peers


def read_peers(path: Path, document: dict[str, Any]) -> dict[str, str]:
    """[peers]: company name -> `sha256:HEX` public key fingerprint, each checked."""
    raw = document.get(PEERS, {})
    if not isinstance(raw, dict):
        raise ConfigError('[peers] must be a table of NAME = "sha256:HEX"', where=str(path))
    peers: dict[str, str] = {}
    for name, value in raw.items():
        try:
            check_company_name(name)
        except ProtocolError as exc:
            raise ConfigError(f"[peers] {exc.message}", where=str(path), hint=exc.hint) from None
        if not isinstance(value, str) or not _FINGERPRINT.fullmatch(value.strip().lower()):
            raise ConfigError(
                f'[peers] {name} must be "sha256:" and 64 hex digits, got {str(value)[:80]!r}',
                where=str(path),
                hint=f"ask {name} for the output of `monoculture certs fingerprint` on its certificate",
            )
        peers[name] = value.strip().lower()
    return peers


@dataclass(frozen=True)
class ClientConfig:
    """What the company daemon runs with: paths resolved, [data] as an InputSpec.

    Defaults are ClientSection's (a key left out of a file means the same as one left out here).
    """

    company: str
    coordinator: str
    data: InputSpec
    tls: TlsFiles | None = None  # None only with --insecure
    poll_seconds: float = ClientSection.poll_seconds
    stats_file: Path | None = None  # JSON lines of per-round EC operation counts; [client] stats_file ""
    exit_after_rounds: int = ClientSection.exit_after_rounds  # 0: serve forever
    chunk_elements: int = ClientSection.chunk_elements
    state_dir: Path = Path(ClientSection.state_dir)  # sealed per-round keys, for restarts
    retry_seconds: float = ClientSection.retry_seconds  # retry a step this long while unreachable
    workers: int = ClientSection.workers  # blinding processes; 0 = one per core, 1 = in the daemon
    release_floor: ReleaseFloor = field(default_factory=ReleaseFloor)  # accepts any policy, no budget
    # [peers]: company -> its certificate key's fingerprint; rounds with others are refused
    peers: Mapping[str, str] = field(default_factory=dict)
    allow_unpinned: bool = ClientSection.allow_unpinned
    require_rerandomised_tags: bool = ClientSection.require_rerandomised_tags
    require_padded_regions: bool = ClientSection.require_padded_regions
    metrics_port: int = ClientSection.metrics_port  # 0: no metrics endpoint
    metrics_address: str = ClientSection.metrics_address


def _tls(path: Path, section: TlsSection, insecure: bool) -> TlsFiles | None:
    if insecure:
        return None
    if len(section.given()) != 3:
        raise ConfigError(
            "[tls] needs ca_file, cert_file and key_file",
            where=str(path),
            hint="get them from the auditor (`monoculture certs issue --company NAME`), "
            "or pass --insecure (plaintext, loopback only)",
        )
    return TlsFiles(*section.resolved(path))


def load_client_config(path: Path, *, insecure: bool = False) -> ClientConfig:
    """Read and check the company daemon's config; paths are relative to the file's folder."""
    document = read_toml(path)
    check_sections(path, document, {*SECTIONS, PEERS})
    client = read_section(path, document, "client", ClientSection)
    data = read_section(path, document, "data", DataSection)
    tls = _tls(path, read_section(path, document, "tls", TlsSection), insecure)
    floor = read_section(path, document, "release_floor", ReleaseFloorSection).floor()
    peers = read_peers(path, document)
    if tls is not None and not peers and not client.allow_unpinned:
        log.warning(
            "%s: [peers] is empty: every round will be refused; pin the companies you agree to be "
            'measured with (docs/USAGE.md, "Deployment")',
            path,
        )
    return ClientConfig(
        company=client.company,
        coordinator=client.coordinator,
        tls=tls,
        poll_seconds=client.poll_seconds,
        stats_file=optional_path(path, client.stats_file),
        exit_after_rounds=client.exit_after_rounds,
        chunk_elements=client.chunk_elements,
        state_dir=resolve_path(path, client.state_dir),
        retry_seconds=client.retry_seconds,
        workers=client.workers,
        data=InputSpec(
            path=resolve_path(path, data.path) if data.path else None,
            sql=_sql_query(path, data),
            id_column=data.id_column,
            failure_column=data.failure_column,
            file_format=data.format,
            duplicates=data.policy(),
            max_id_length=data.max_id_length,
            group_column=data.group_column or None,
        ),
        release_floor=floor,
        peers=peers,
        allow_unpinned=client.allow_unpinned,
        require_rerandomised_tags=client.require_rerandomised_tags,
        require_padded_regions=client.require_padded_regions,
        metrics_port=client.metrics_port,
        metrics_address=client.metrics_address,
    )


def _sql_query(path: Path, data: DataSection) -> SqlQuery | None:
    """[data] url and query, checked: the URL parses, its password source is there."""
    if not data.url:
        return None
    try:
        sql = sql_query(
            data.url, data.query, password_env=data.password_env,
            password_file=optional_path(path, data.password_file), base=path.parent,
        )  # fmt: skip
        check_password_source(sql)
    except ConfigError as exc:
        raise ConfigError(exc.message, where=exc.where or str(path), hint=exc.hint) from None
    if holds_password(sql):
        log.warning(
            "%s: [data] url holds a password: keep it out of the config file with password_env or "
            "password_file",
            path,
        )
    return sql


def _tls_section(tls: TlsFiles | None) -> TlsSection:
    if tls is None:
        return TlsSection()
    return TlsSection(str(tls.ca_file), str(tls.cert_file), str(tls.key_file), path_value(tls.crl_file))


def client_sections(config: ClientConfig) -> dict[str, object]:
    """`config` as the sections of its file, for `render_toml` (paths written as they are held)."""
    return {
        "client": ClientSection(
            company=config.company,
            coordinator=config.coordinator,
            poll_seconds=config.poll_seconds,
            stats_file=path_value(config.stats_file),
            exit_after_rounds=config.exit_after_rounds,
            chunk_elements=config.chunk_elements,
            state_dir=str(config.state_dir),
            retry_seconds=config.retry_seconds,
            workers=config.workers,
            allow_unpinned=config.allow_unpinned,
            require_rerandomised_tags=config.require_rerandomised_tags,
            require_padded_regions=config.require_padded_regions,
            metrics_port=config.metrics_port,
            metrics_address=config.metrics_address,
        ),
        "tls": _tls_section(config.tls),
        "data": DataSection(
            path=path_value(config.data.path),
            format=config.data.file_format,
            id_column=config.data.id_column,
            failure_column=config.data.failure_column,
            duplicates=config.data.duplicates.value,
            max_id_length=config.data.max_id_length,
            group_column=config.data.group_column or "",
            **_sql_keys(config.data.sql),
        ),
        "release_floor": ReleaseFloorSection.of(config.release_floor),
        PEERS: FreeTable(PEERS_DOC, dict(config.peers)),
    }


def _sql_keys(sql: SqlQuery | None) -> dict[str, str]:
    """[data]'s database keys for `sql` (none for a file)."""
    if sql is None:
        return {}
    return {"url": sql.url, "query": sql.query, "password_env": sql.password_env,
            "password_file": path_value(sql.password_file)}  # fmt: skip
