"""The example configs in deploy/, written from the config dataclasses of the two roles
(the single source of their keys, defaults and comments); `scripts/gen-deploy.py`
rewrites them and `--check` (and tests/test_config_source.py) fails when they are stale.
"""

from __future__ import annotations

import difflib
from dataclasses import replace
from pathlib import Path

from monoculture.client.config import ClientConfig, client_sections
from monoculture.coordinator.config import CoordinatorConfig, coordinator_sections
from monoculture.core.config import render_reference, render_toml
from monoculture.core.dataset import InputSpec
from monoculture.core.identity import Identity, Role
from monoculture.pki import tls_files

DEPLOY_COMPANIES = ("google", "microsoft", "ibm")
_UP = Path("..")  # deploy/'s paths are relative to deploy/, and point beside it
_GENERATED = "# Made by scripts/gen-deploy.py from {source}: edit that, and run it again."


def deploy_examples() -> dict[str, str]:
    """The example configs of deploy/, by file name: every key, with its comment.

    Values are the defaults but for the paths (certs/, examples/, state beside deploy/) and
    the companies' names.
    """
    examples = {"coordinator.toml": _coordinator_example()}
    for name in DEPLOY_COMPANIES:
        examples[f"client-{name}.toml"] = _client_example(name)
    return examples


def _coordinator_example() -> str:
    default = CoordinatorConfig()
    settings = replace(
        default,
        database=_UP / default.database,
        tls=tls_files(_UP / "certs", Identity(Role.COORDINATOR, "")),
    )
    header = [
        "# monoculture coordinator: `monoculture coordinator serve --config deploy/coordinator.toml`",
        "# Every key is shown, with its default unless it is a path. Unknown keys are refused.",
        "# Relative paths are relative to this file.",
        _GENERATED.format(source="coordinator/config.py"),
    ]
    return "\n".join(header) + "\n\n" + render_toml(coordinator_sections(settings), comments=True)


def _client_example(name: str) -> str:
    settings = ClientConfig(
        company=name,
        coordinator=CoordinatorConfig().listen,
        data=InputSpec(_UP / "examples" / "api-predictions" / "digit" / f"{name}.csv"),
        tls=tls_files(_UP / "certs", Identity(Role.COMPANY, name)),
        state_dir=_UP / f"client-state-{name}",
    )
    header = [
        f"# monoculture company daemon: `monoculture client run --config deploy/client-{name}.toml`",
        "# Every key is shown, with its default unless it is a path or names this company.",
        "# Unknown keys are refused. Relative paths are relative to this file.",
        _GENERATED.format(source="client/config.py"),
    ]
    return "\n".join(header) + "\n\n" + render_toml(client_sections(settings), comments=True)


REFERENCE_HEADER = """# Configuration reference

<!-- Made by scripts/gen-deploy.py from coordinator/config.py and client/config.py: edit those,
and run it again. -->

Every key of the two config files, with its type, its default and what it does: the same
dataclasses that read the files write this page and the commented examples in `deploy/`
(`deploy/coordinator.toml`, `deploy/client-*.toml`). Unknown keys are refused; relative paths are
relative to the file's folder. How to run a deployment: [USAGE.md](USAGE.md).
"""


def configuration_reference() -> str:
    """docs/CONFIGURATION.md: every key of both roles' files (core.config.render_reference)."""
    coordinator = coordinator_sections(CoordinatorConfig())
    company = client_sections(
        ClientConfig(company="name", coordinator=CoordinatorConfig().listen, data=InputSpec(Path("data.csv")))
    )
    return (
        REFERENCE_HEADER
        + "\n## The coordinator: `monoculture coordinator serve --config FILE`\n\n"
        + render_reference(coordinator)
        + "\n## A company daemon: `monoculture client run --config FILE`\n\n"
        + render_reference(company)
    )


def write_deploy_examples(folder: Path) -> list[str]:
    """Write `deploy_examples()` into `folder`; returns the names of the files it changed."""
    changed = []
    for name, text in deploy_examples().items():
        path = folder / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(name)
    return changed


def deploy_differences(folder: Path) -> list[str]:
    """How `folder` differs from `deploy_examples()`: unified diffs and stray .toml files.

    Empty when it matches.
    """
    expected = deploy_examples()
    differences = [
        f"{folder / name}: not made from the dataclasses (remove it, or add it to deploy_examples)\n"
        for name in sorted(p.name for p in folder.glob("*.toml"))
        if name not in expected
    ]
    for name, text in expected.items():
        path = folder / name
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        differences += difflib.unified_diff(
            current.splitlines(keepends=True),
            text.splitlines(keepends=True),
            fromfile=f"{path} (as it is)",
            tofile=f"{path} (from the dataclasses)",
        )
    return differences
