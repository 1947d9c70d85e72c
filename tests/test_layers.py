"""The layers of docs/ARCHITECTURE.md, checked on every import in the package.

Each module may import only layers below its own (and its own package); the
two roles and the auditor's client never import each other; the pure layers
(`core`, `analysis`) never touch the network; openmined-psi is imported by
`core/psi_crypto.py` alone. A change that breaks a rule fails here, naming the
file, the line and the import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Where each installed package lives in the repository (pyproject's package-dir).
PACKAGE_DIRS = {
    "monoculture": ROOT / "monoculture",
    "monoculture.client": ROOT / "client",
    "monoculture.coordinator": ROOT / "coordinator",
}

# Bottom to top; a module may import from its own layer's package and from layers below.
LAYERS: list[tuple[str, ...]] = [
    ("monoculture.v1",),
    ("monoculture.core",),
    ("monoculture.analysis",),
    (
        "monoculture.memory",
        "monoculture.transport",
        "monoculture.pki",
        "monoculture.report",
        "monoculture.observe",
        "monoculture.progress",
    ),
    ("monoculture.client", "monoculture.coordinator", "monoculture.auditor"),
    ("monoculture.research",),
    ("monoculture.cli",),
    ("monoculture.__main__",),
]
# Within one layer these never import each other: each role's logic stays in its role.
SIBLINGS_APART = {"monoculture.client", "monoculture.coordinator", "monoculture.auditor"}
PURE = ("monoculture.core", "monoculture.analysis")
NETWORK = ("grpc", "socket", "urllib", "http", "requests", "sqlalchemy", "psycopg")


@dataclass(frozen=True)
class Import:
    importer: str  # module name
    imported: str
    where: str  # file:line


def _module_name(package: str, folder: Path, path: Path) -> str:
    parts = list(path.relative_to(folder).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([package, *parts])


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in folder.rglob("*.py"):
            if "__pycache__" in path.parts or (
                package == "monoculture" and path.parent.name in ("client", "coordinator")
            ):
                continue
            found[_module_name(package, folder, path)] = path
    return found


def _imports(module: str, path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        where = f"{path.relative_to(ROOT)}:{node.lineno}"
        found += [Import(module, name, where) for name in names]
    return found


def _layer(module: str) -> tuple[int, str] | None:
    """(index of the layer, the package of that layer holding `module`)."""
    for index, packages in enumerate(LAYERS):
        for package in packages:
            if module == package or module.startswith(package + "."):
                return index, package
    return None


def _all_imports() -> list[Import]:
    return [imp for module, path in _modules().items() for imp in _imports(module, path)]


def layer_violations(imports: list[Import]) -> list[str]:
    """Every import that runs upward or across the roles, as 'file:line: a imports b (why)'."""
    problems = []
    for imp in imports:
        mine, theirs = _layer(imp.importer), _layer(imp.imported)
        if mine is None or theirs is None or mine[1] == theirs[1]:
            continue
        if theirs[0] > mine[0]:
            problems.append(f"{imp.where}: {imp.importer} imports {imp.imported} (a layer above it)")
        elif theirs[0] == mine[0] and {mine[1], theirs[1]} <= SIBLINGS_APART:
            problems.append(
                f"{imp.where}: {imp.importer} imports {imp.imported} (roles never import each other)"
            )
    return problems


def test_every_module_sits_in_a_layer() -> None:
    unplaced = [m for m in _modules() if _layer(m) is None and m != "monoculture"]
    assert unplaced == [], "add these modules to a layer of docs/ARCHITECTURE.md and LAYERS"


def test_no_import_runs_upward_or_across_roles() -> None:
    assert layer_violations(_all_imports()) == []


def test_the_checker_catches_an_upward_and_a_cross_role_import() -> None:
    planted = [
        Import("monoculture.core.wire", "monoculture.analysis.table", "core/wire.py:1"),
        Import("monoculture.analysis.metrics", "monoculture.coordinator.state", "analysis/metrics.py:1"),
        Import("monoculture.client.daemon", "monoculture.coordinator.rounds", "client/daemon.py:1"),
        Import("monoculture.coordinator.rounds", "monoculture.auditor", "coordinator/rounds.py:1"),
        Import("monoculture.research.bench", "monoculture.client.workers", "research/bench.py:1"),  # allowed
    ]
    assert len(layer_violations(planted)) == 4


def test_pure_layers_do_no_network_io() -> None:
    offending = [
        f"{imp.where}: {imp.imported}"
        for imp in _all_imports()
        if imp.importer.startswith(PURE) and imp.imported.split(".")[0] in NETWORK
    ]
    assert offending == []


def test_only_the_crypto_wrapper_imports_openmined_psi() -> None:
    importers = {
        imp.importer for imp in _all_imports() if imp.imported.startswith("private_set_intersection")
    }
    assert importers == {"monoculture.core.psi_crypto"}


def test_only_the_rerandomised_tags_import_pynacl() -> None:
    """libsodium's edwards25519 operations stay behind one module (docs/ARCHITECTURE.md)."""
    importers = {imp.importer for imp in _all_imports() if imp.imported.split(".")[0] == "nacl"}
    assert importers == {"monoculture.core.rerandomise"}


@pytest.mark.parametrize("module", ["monoculture.client", "monoculture.coordinator"])
def test_the_roles_import_from_any_directory(tmp_path: Path, module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}, sys; print({module}.__name__)"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == module


def test_only_monoculture_is_installed_at_the_top_level() -> None:
    """No generic top-level `client` or `coordinator` package beside it."""
    done = subprocess.run(
        [sys.executable, "-c", "import importlib.util as u; print(u.find_spec('client'), u.find_spec('coordinator'))"],  # noqa: E501
        cwd="/", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.stdout.split() == ["None", "None"], done.stdout


def test_the_wheel_holds_monoculture_alone_with_every_module(tmp_path: Path) -> None:
    """Built as a user installs it: one top-level package, and no module left out of
    pyproject's package list (a new subpackage must be added there)."""
    import zipfile

    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("monoculture-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {
        "monoculture",
        f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info",
    }
    shipped = {
        n.removesuffix(".py").replace("/", ".").removesuffix(".__init__") for n in names if n.endswith(".py")
    }
    assert set(_modules()) - shipped == set()


@pytest.mark.e2e
def test_a_plain_install_runs_simulate_from_the_checkouts_root(tmp_path: Path) -> None:
    """Before: after `pip install .` (not -e), `monoculture simulate` started in the repository's
    root died with ModuleNotFoundError: its spawned `python -m monoculture` took the checkout's own
    monoculture/ folder, which lacks the role packages, from the current folder. The daemons are
    now started so the current folder cannot shadow the installed package (python -P)."""
    import site
    import venv

    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    (target,) = (env_dir / "lib").glob("python3*/site-packages")
    (wheel,) = wheels.glob("monoculture-*.whl")
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target),
         str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-2000:]
    # The dependencies from this environment; its editable install of monoculture is not activated
    # (a path listed in a .pth file is not itself searched for .pth files).
    (target / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n", encoding="utf-8")
    # `-P` as the console script would run it (its folder is bin/, not the current one).
    args = [str(python), "-P", "-m", "monoculture", "simulate", "--out", str(tmp_path / "r.json")]
    for name in ("google", "microsoft", "ibm"):
        args += ["--company", f"{name}=examples/api-predictions/digit/{name}.csv"]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "H = 4.6676" in done.stdout or "4.6676" in done.stdout
    where = subprocess.run([str(python), "-P", "-c", "import monoculture; print(monoculture.__file__)"],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert str(target) in where.stdout  # the installed package, not the checkout's folder
    schema = subprocess.run(
        [str(python), "-P", "-c",
         "from monoculture.research.result import result_schema as s; print(s()['title'])"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "result JSON" in schema.stdout, schema.stderr  # the schema ships with the package
