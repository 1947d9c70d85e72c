"""deploy/k8s/: every manifest is valid against the Kubernetes 1.30 schemas (kubernetes-validate,
strict: unknown fields are refused), and the pieces fit together: every volume, ConfigMap, claim
and Secret a pod uses is defined (the Secrets by the `kubectl create secret` commands of
docs/DEPLOY-systemd-k8s.md, with the keys the configs read), the configs in the ConfigMaps load
with the daemons' own loaders, the probes run `monoculture health --config` on the mounted
config the container starts with, ports agree with the Service and the listen address, every
path a daemon writes is on a writable volume, and the pods run locked down.

Offline (kubernetes-validate ships its schemas): about 1 s of tests, 3 s with collection.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from monoculture.client.config import load_client_config
from monoculture.coordinator.config import load_coordinator_config

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate is missing: pip install -e '.[dev]'"
)
yaml = pytest.importorskip("yaml", reason="PyYAML (a dependency of kubernetes-validate) is missing")

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
DOC = ROOT / "docs" / "DEPLOY-systemd-k8s.md"
KUBERNETES_VERSION = "1.30"
COMPANIES = ("google", "microsoft", "ibm")
HEALTH = ["monoculture", "health", "--config"]

Manifest = dict[str, Any]


def manifests() -> list[tuple[str, Manifest]]:
    """Every object in deploy/k8s/*.yaml, with the file it is in."""
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert isinstance(document, dict), f"{path.name}: a document that is not an object"
            found.append((path.name, document))
    return found


def named(kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for _, m in manifests() if m["kind"] == kind}


def workloads() -> list[Manifest]:
    return [m for _, m in manifests() if m["kind"] in ("StatefulSet", "Deployment")]


def test_the_manifests_are_the_ones_meant() -> None:
    kinds = sorted((name, m["kind"]) for name, m in manifests())
    assert ("coordinator.yaml", "StatefulSet") in kinds and ("coordinator.yaml", "Service") in kinds
    for company in COMPANIES:
        assert (f"company-{company}.yaml", "Deployment") in kinds
    assert not [m for _, m in manifests() if m["kind"] == "Secret"], "no key material is shipped"


@pytest.mark.parametrize("file_name", sorted(p.name for p in K8S.glob("*.yaml")))
def test_valid_against_the_kubernetes_schemas(file_name: str) -> None:
    for name, manifest in manifests():
        if name == file_name:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_strict_validation_refuses_an_unknown_field() -> None:
    """The check above can fail: a misspelt field is an error in strict mode."""
    (statefulset,) = named("StatefulSet").values()
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["readOnlyRootFileSystem"] = True  # the real one ends "Filesystem"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, KUBERNETES_VERSION, strict=True)


def documented_secrets() -> dict[str, set[str]]:
    """The Secrets the docs create (`kubectl create secret generic NAME --from-file=...`), with
    their keys; the command shown for google stands for every company."""
    text = DOC.read_text(encoding="utf-8").replace("\\\n", " ")
    secrets: dict[str, set[str]] = {}
    for line in text.splitlines():
        command = re.search(r"kubectl .*create secret generic (\S+)(.*)", line)
        if not command:
            continue
        keys = set()
        for given in re.findall(r"--from-file=(\S+)", command.group(2)):
            key, _, source = given.rpartition("=")
            keys.add(key or PurePosixPath(source).name)
        secrets[command.group(1)] = keys
    for company in COMPANIES[1:]:
        for name, keys in list(secrets.items()):
            if "google" in name:
                secrets[name.replace("google", company)] = {k.replace("google", company) for k in keys}
    return secrets


def mounts(workload: Manifest) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Each volume mount of the workload's one container, with the volume it mounts."""
    pod = workload["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for template in workload["spec"].get("volumeClaimTemplates", []):
        volumes[template["metadata"]["name"]] = {"claimTemplate": template}
    (container,) = pod["containers"]
    for mount in container["volumeMounts"]:
        assert mount["name"] in volumes, f"{workload['metadata']['name']}: no volume {mount['name']}"
        yield mount, volumes[mount["name"]]


def mount_of(workload: Manifest, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The mount a file is on: the longest mount path above it."""
    candidates = [(m, v) for m, v in mounts(workload) if path.is_relative_to(m["mountPath"])]
    assert candidates, f"{workload['metadata']['name']}: {path} is on no volume (the root is read-only)"
    return max(candidates, key=lambda found: len(found[0]["mountPath"]))


@pytest.mark.parametrize("workload", workloads(), ids=lambda w: w["metadata"]["name"])
def test_every_reference_is_defined(workload: Manifest) -> None:
    config_maps, claims, secrets = named("ConfigMap"), named("PersistentVolumeClaim"), documented_secrets()
    pod = workload["spec"]["template"]["spec"]
    used = {mount["name"] for mount, _ in mounts(workload)}
    assert used == {v["name"] for v in pod["volumes"]} | {
        t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])
    }, "a volume is mounted nowhere"
    for volume in pod["volumes"]:
        if "configMap" in volume:
            assert volume["configMap"]["name"] in config_maps
        if "persistentVolumeClaim" in volume:
            assert volume["persistentVolumeClaim"]["claimName"] in claims
        if "secret" in volume:
            assert volume["secret"]["secretName"] in secrets, f"the docs create no {volume['secret']}"
            assert volume["secret"]["defaultMode"] == 0o440
    labels = workload["spec"]["template"]["metadata"]["labels"]
    assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()


@pytest.mark.parametrize("workload", workloads(), ids=lambda w: w["metadata"]["name"])
def test_pods_run_locked_down(workload: Manifest) -> None:
    pod = workload["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    for bound in ("requests", "limits"):
        assert set(container["resources"][bound]) == {"cpu", "memory"}, f"resources.{bound}"
    for mount, volume in mounts(workload):
        writable = "claimTemplate" in volume or "persistentVolumeClaim" in volume or "emptyDir" in volume
        assert mount.get("readOnly", False) or writable, f"{mount['name']} is writable"


def config_of(workload: Manifest, tmp_path: Path) -> tuple[str, Path]:
    """The config file the container starts with (its mounted path), written out to tmp_path.

    The probes must read the same file."""
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["monoculture"]
    args = container["args"]
    mounted = PurePosixPath(args[args.index("--config") + 1])
    mount, volume = mount_of(workload, Path(mounted))
    config_map = named("ConfigMap")[volume["configMap"]["name"]]
    key = str(mounted.relative_to(mount["mountPath"]))
    assert key in config_map["data"], f"{mounted}: the ConfigMap has no key {key}"
    local = tmp_path / key
    local.write_text(config_map["data"][key], encoding="utf-8")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if probe in container:
            assert container[probe]["exec"]["command"] == [*HEALTH, str(mounted)], probe
    assert "readinessProbe" in container
    return args[0], local


def coordinator_port() -> int:
    (service,) = named("Service").values()
    (port,) = service["spec"]["ports"]
    (statefulset,) = named("StatefulSet").values()
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    (container_port,) = container["ports"]
    assert port["targetPort"] == container_port["name"] and port["name"] == "grpc"
    assert (
        service["spec"]["selector"].items() <= statefulset["spec"]["template"]["metadata"]["labels"].items()
    )
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    assert port["port"] == container_port["containerPort"]
    return int(port["port"])


def tls_keys(workload: Manifest, files: tuple[Path, Path, Path]) -> None:
    """The TLS files are keys of the Secret the docs create, mounted where the config reads them."""
    for path in files:
        mount, volume = mount_of(workload, path)
        assert "secret" in volume and mount["readOnly"] is True, f"{path} is not on a read-only Secret"
        assert path.parent == Path(mount["mountPath"])
        assert path.name in documented_secrets()[volume["secret"]["secretName"]], path


def test_coordinator_fits_together(tmp_path: Path) -> None:
    (statefulset,) = named("StatefulSet").values()
    subcommand, local = config_of(statefulset, tmp_path)
    assert subcommand == "coordinator"
    config = load_coordinator_config(local)
    host, _, port = config.listen.rpartition(":")
    assert host == "0.0.0.0" and int(port) == coordinator_port()
    mount, volume = mount_of(statefulset, config.database)
    assert "claimTemplate" in volume and not mount.get("readOnly"), "SQLite and its key must persist"
    assert config.tls is not None
    tls_keys(statefulset, (config.tls.ca_file, config.tls.cert_file, config.tls.key_file))
    assert statefulset["spec"]["replicas"] == 1


@pytest.mark.parametrize("company", COMPANIES)
def test_company_fits_together(company: str, tmp_path: Path) -> None:
    deployment = named("Deployment")[f"monoculture-{company}"]
    subcommand, local = config_of(deployment, tmp_path)
    assert subcommand == "client"
    config = load_client_config(local)
    assert config.company == company
    (service,) = named("Service").values()
    assert config.coordinator == f"{service['metadata']['name']}:{coordinator_port()}"
    mount, volume = mount_of(deployment, config.state_dir)
    assert "persistentVolumeClaim" in volume and not mount.get("readOnly"), "the ledger must persist"
    mount, volume = mount_of(deployment, config.data.path)
    assert mount["readOnly"] is True and volume["persistentVolumeClaim"]["readOnly"] is True
    assert config.tls is not None
    tls_keys(deployment, (config.tls.ca_file, config.tls.cert_file, config.tls.key_file))
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert 1 <= config.workers <= int(container["resources"]["limits"]["cpu"]), "workers = 0 counts the node"
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
