"""The config dataclasses are the one source of keys, defaults, checks and deploy/ (issue
"One way for each thing"): deploy/ is what they generate, every deploy file loads, what
`render_toml` writes loads back equal, and bad files get errors naming file, section and key.
"""

from __future__ import annotations

import math
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import ROOT
from hypothesis import given
from hypothesis import strategies as st

from monoculture.analysis.budget import ReleaseFloor
from monoculture.analysis.release import ReleasePolicy
from monoculture.client.config import SECTIONS as CLIENT_SECTIONS
from monoculture.client.config import ClientConfig, client_sections, load_client_config, read_peers
from monoculture.coordinator.config import SECTIONS as COORDINATOR_SECTIONS
from monoculture.coordinator.config import (
    CoordinatorConfig,
    Limits,
    ReleaseSection,
    coordinator_sections,
    load_coordinator_config,
)
from monoculture.core.config import read_section, read_toml, render_toml
from monoculture.core.dataset import DuplicatePolicy, InputSpec
from monoculture.core.errors import ConfigError
from monoculture.research.deploy import DEPLOY_COMPANIES, deploy_differences, deploy_examples
from monoculture.transport import TlsFiles

DEPLOY = ROOT / "deploy"
CLIENT_OK = '[client]\ncompany = "a"\ncoordinator = "x:1"\n[data]\npath = "a.csv"\n'
COORDINATOR_OK = '[coordinator]\nlisten = "127.0.0.1:0"\n'


# ------------------------------------------------------------ deploy/ is generated


def test_deploy_matches_the_dataclasses() -> None:
    differences = deploy_differences(DEPLOY)
    assert not differences, "deploy/ is stale: run scripts/gen-deploy.py\n" + "".join(differences)


def test_gen_deploy_check_passes_and_a_stale_file_is_reported(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "gen-deploy.py"
    done = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    for name, text in deploy_examples().items():
        (tmp_path / name).write_text(text)
    assert deploy_differences(tmp_path) == []
    (tmp_path / "coordinator.toml").write_text(deploy_examples()["coordinator.toml"].replace("32", "33"))
    (tmp_path / "client-extra.toml").write_text("")
    differences = "".join(deploy_differences(tmp_path))
    assert "-max_workers = 33" in differences and "+max_workers = 32" in differences
    assert "client-extra.toml: not made from the dataclasses" in differences


def test_deploy_shows_every_key_with_its_comment() -> None:
    text = (DEPLOY / "coordinator.toml").read_text()
    for section in coordinator_sections(CoordinatorConfig()).values():
        for key in type(section).__dataclass_fields__.values():
            assert f"# {key.metadata['doc'].splitlines()[-1]}\n{key.name} = " in text


def test_every_deploy_file_loads() -> None:
    coordinator = load_coordinator_config(DEPLOY / "coordinator.toml")
    assert coordinator.listen == "127.0.0.1:50051"
    assert coordinator.tls is not None and coordinator.tls.cert_file == ROOT / "certs" / "coordinator.pem"
    assert coordinator.database == ROOT / "coordinator-state" / "coordinator.sqlite"
    assert load_coordinator_config(DEPLOY / "coordinator.toml", insecure=True).tls is None
    assert sorted(deploy_examples()) == sorted(p.name for p in DEPLOY.glob("*.toml"))
    for name in DEPLOY_COMPANIES:
        config = load_client_config(DEPLOY / f"client-{name}.toml")
        assert config.company == name and config.coordinator == coordinator.listen
        assert config.data.path == ROOT / "examples" / "api-predictions" / "digit" / f"{name}.csv"
        assert config.data.path.exists()
        assert config.tls is not None and config.tls.key_file == ROOT / "certs" / f"company-{name}.key"
        assert config.state_dir == ROOT / f"client-state-{name}"
        assert load_client_config(DEPLOY / f"client-{name}.toml", insecure=True).tls is None


# ------------------------------------------------------------ one source of defaults


def test_runtime_defaults_are_the_sections_defaults(tmp_path: Path) -> None:
    """A key left out of a file means what the same field left out of the runtime config means."""
    path = tmp_path / "client.toml"
    path.write_text(CLIENT_OK)
    client = read_toml(path)
    made = client_sections(ClientConfig(company="a", coordinator="x:1", data=InputSpec(Path("a.csv"))))
    assert made.pop("peers").entries == read_peers(path, client) == {}  # none pinned by default
    assert made == {
        name: read_section(tmp_path, client, name, kind) for name, kind in CLIENT_SECTIONS.items()
    }
    made = coordinator_sections(CoordinatorConfig())
    assert made == {
        name: read_section(tmp_path, {}, name, kind) for name, kind in COORDINATOR_SECTIONS.items()
    }
    assert ReleaseSection().policy() == ReleasePolicy()


# ------------------------------------------------------------ round trips


def _client(tmp_path: Path) -> ClientConfig:
    return ClientConfig(
        company="acme-1.b_c",
        coordinator="127.0.0.1:7",
        data=InputSpec(tmp_path / 'odd "name" \\ é.csv', "who", "bad", "csv", DuplicatePolicy.ANY_FAILED, 77),
        tls=TlsFiles(tmp_path / "ca.pem", tmp_path / "c.pem", tmp_path / "c.key"),
        poll_seconds=0.25,
        stats_file=tmp_path / "ops.jsonl",
        exit_after_rounds=3,
        chunk_elements=300,
        state_dir=tmp_path / "state",
        retry_seconds=1e-3,
        workers=2,
        release_floor=ReleaseFloor(100, 10, False, 1.0, 7.5),
    )


@pytest.mark.parametrize("comments", [True, False])
def test_a_rendered_client_config_loads_back_equal(tmp_path: Path, comments: bool) -> None:
    config = _client(tmp_path)
    path = tmp_path / "client.toml"
    path.write_text(render_toml(client_sections(config), comments=comments))
    assert load_client_config(path) == config
    insecure = ClientConfig(
        company="b", coordinator="x:1", data=InputSpec(tmp_path / "b.csv"), state_dir=tmp_path / "s"
    )
    path.write_text(render_toml(client_sections(insecure), comments=comments))
    assert load_client_config(path, insecure=True) == insecure


@pytest.mark.parametrize("comments", [True, False])
def test_a_rendered_coordinator_config_loads_back_equal(tmp_path: Path, comments: bool) -> None:
    config = CoordinatorConfig(
        listen="0.0.0.0:9",
        port_file=tmp_path / "port",
        record_dir=tmp_path / "rec",
        max_workers=5,
        database=tmp_path / "db.sqlite",
        tls=TlsFiles(tmp_path / "ca.pem", tmp_path / "s.pem", tmp_path / "s.key"),
        limits=Limits(min_list_size=10, max_list_size=100, max_chunks_per_list=5, deadline_seconds=2.5),
        release=ReleasePolicy(5, 3, "discrete-gaussian", 0.5, 1e-9),
        max_epsilon_per_roster=math.inf,  # written as inf, read back as inf
    )
    path = tmp_path / "coordinator.toml"
    path.write_text(render_toml(coordinator_sections(config), comments=comments))
    assert load_coordinator_config(path) == config


@dataclass(frozen=True)
class _Every:
    """A section of every kind of key.
    Two lines of docstring."""

    text: str = field(metadata={"doc": "Some text."})
    number: int = 0
    fraction: float = field(default=0.0, metadata={"doc": "First line.\nSecond line."})
    flag: bool = False


@given(
    text=st.text(),
    number=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    fraction=st.floats(allow_nan=False),
    flag=st.booleans(),
)
def test_any_values_render_and_read_back_equal(text: str, number: int, fraction: float, flag: bool) -> None:
    section = _Every(text, number, fraction, flag)
    for comments in (True, False):
        rendered = render_toml({"every": section}, comments=comments)
        assert read_section(Path("x.toml"), tomllib.loads(rendered), "every", _Every) == section


def test_comments_go_above_their_section_and_key() -> None:
    rendered = render_toml({"every": _Every("a")}, comments=True)
    assert rendered.startswith(
        '# A section of every kind of key.\n# Two lines of docstring.\n[every]\n# Some text.\ntext = "a"\n'
        "number = 0\n# First line.\n# Second line.\nfraction = 0.0\nflag = false\n"
    )
    assert "#" not in render_toml({"every": _Every("a")}, comments=False)


# ------------------------------------------------------------ errors name file, section and key


@pytest.mark.parametrize(
    ("text", "message", "hint"),
    [
        (CLIENT_OK + "colour = 1\n", "unknown key 'colour' in [data]", "allowed keys: duplicates, "),
        (CLIENT_OK.replace("[data]", "poll = 1\n[data]"), "unknown key 'poll' in [client]", "poll_seconds"),
        (CLIENT_OK + 'max_id_length = "9"\n', "[data] max_id_length must be a int, got str", ""),
        (
            CLIENT_OK.replace("[data]", "workers = true\n[data]"),
            "[client] workers must be a int, got bool",
            "",
        ),
        (
            CLIENT_OK.replace("[data]", 'retry_seconds = "1"\n[data]'),
            "[client] retry_seconds must be a float, got str",
            "",
        ),
        (
            CLIENT_OK.replace("[data]", "poll_seconds = [1]\n[data]"),
            "[client] poll_seconds must be a float, got list",
            "",
        ),
        ('[client]\ncompany = "a"\n[data]\npath = "a.csv"\n', "[client] needs key 'coordinator'", ""),
        (
            '[client]\ncompany = "a"\ncoordinator = "x:1"\n',
            "[data] give path (a CSV or Parquet file) or url and query",
            "",
        ),
        ('client = 1\n[data]\npath = "a.csv"\n', "[client] must be a table", ""),
        (
            CLIENT_OK + "[extra]\n",
            "unknown section [extra]",
            "allowed sections: client, data, peers, release_floor, tls",
        ),
        (CLIENT_OK.replace('"a"', '"A B"'), "[client] company: ", ""),
        (
            CLIENT_OK.replace("[data]", "chunk_elements = 0\n[data]"),
            "[client] chunk_elements must be 1..",
            "",
        ),
        (CLIENT_OK + 'duplicates = "x"\n', "[data] duplicates = 'x' is not a policy", "keep-first"),
        (
            CLIENT_OK + "[release_floor]\nmax_epsilon_per_round = 0\n",
            "[release_floor] max_epsilon_per_round must be above 0",
            "inf",
        ),
        (
            CLIENT_OK + "[release_floor]\nmin_cell_count = -1\n",
            "[release_floor] min_shared_individuals and min_cell_count must be non-negative",
            "",
        ),
        (
            CLIENT_OK + '[release_floor]\nallow_exact_release = "no"\n',
            "[release_floor] allow_exact_release must be a bool, got str",
            "",
        ),
    ],
)
def test_client_config_errors(tmp_path: Path, text: str, message: str, hint: str) -> None:
    path = tmp_path / "client.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_client_config(path, insecure=True)
    assert message in caught.value.message and caught.value.where == str(path)
    assert hint in caught.value.hint


def test_an_int_is_accepted_for_a_float(tmp_path: Path) -> None:
    path = tmp_path / "client.toml"
    path.write_text(CLIENT_OK.replace("[data]", "poll_seconds = 3\n[data]"))
    loaded = load_client_config(path, insecure=True)
    assert loaded.poll_seconds == 3.0 and isinstance(loaded.poll_seconds, float)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (COORDINATOR_OK + "threads = 4\n", "unknown key 'threads' in [coordinator]"),
        (COORDINATOR_OK + "max_workers = 4.0\n", "[coordinator] max_workers must be a int, got float"),
        (COORDINATOR_OK + "max_workers = 3\n", "[coordinator] max_workers must be at least 4"),
        (COORDINATOR_OK + "[limits]\nmin_list_size = 0\n", "[limits] need 1 <= min_list_size"),
        (
            COORDINATOR_OK + "[limits]\ndeadline_seconds = false\n",
            "[limits] deadline_seconds must be a float",
        ),
        (COORDINATOR_OK + '[release]\ndp_mechanism = "x"\n', "[release] unknown DP mechanism 'x'"),
        (COORDINATOR_OK + '[release]\ndp_mechanism = "discrete-laplace"\n', "[release] differential privacy"),
        (COORDINATOR_OK + '[tls]\nca_file = "ca.pem"\n', "[tls] needs ca_file, cert_file and key_file"),
        (
            COORDINATOR_OK + "[release]\nmax_epsilon_per_roster = 0\n",
            "[release] max_epsilon_per_roster must be above 0",
        ),
        (
            COORDINATOR_OK + '[release]\ndp_mechanism = "discrete-laplace"\ndp_epsilon = 2\n'
            "max_epsilon_per_roster = 1.5\n",
            "[release] dp_epsilon and dummy_epsilon, 2 together, are above max_epsilon_per_roster 1.5",
        ),
        (
            COORDINATOR_OK + "[release]\ndummy_epsilon = 2\nmax_epsilon_per_roster = 1.5\n",
            "[release] dp_epsilon and dummy_epsilon, 2 together, are above max_epsilon_per_roster 1.5",
        ),
        (COORDINATOR_OK + "[release]\ndummy_delta = 0\n", "0 < dummy_delta < 1"),
        (COORDINATOR_OK + "[limit]\n", "unknown section [limit]"),
        ("release = 1\n", "[release] must be a table"),
    ],
)
def test_coordinator_config_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "coordinator.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_coordinator_config(path, insecure=True)
    assert message in caught.value.message and caught.value.where == str(path)


def test_a_config_that_would_not_load_is_not_written(tmp_path: Path) -> None:
    bad_release = CoordinatorConfig(release=ReleasePolicy(mechanism="discrete-laplace"))
    with pytest.raises(ConfigError, match=r"\[release\] differential privacy needs epsilon"):
        render_toml(coordinator_sections(bad_release), comments=False)
    bad_name = ClientConfig(company="A B", coordinator="x:1", data=InputSpec(Path("a.csv")))
    with pytest.raises(ConfigError, match=r"\[client\] company: "):
        render_toml(client_sections(bad_name), comments=True)
    with pytest.raises(ConfigError, match=r"\[limits\] need"):
        render_toml({"limits": Limits(min_list_size=5, max_list_size=4)}, comments=False)
