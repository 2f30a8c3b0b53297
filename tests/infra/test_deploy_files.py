"""Static checks of the production deployment files (infra/compose, infra/k8s).

Neither Docker nor Kubernetes runs on the development machines, so these tests parse the YAML and hold it
against the code it deploys:

(a) every JUDGELINE_* name the files set is one the settings accept (``schemas.settings.env_names()``): an
    unknown top-level name would be silently ignored by pydantic-settings;
(b) the values the files give make ``Settings()`` construct, and reach the setting they name;
(c) no secret is written literally: compose refers to ``${VAR:?...}``, the k8s Secrets hold REPLACE_ME;
(d) Triton asks for a GPU in both;
(e) every judgeline container runs one of the CLI subcommands in ``CLI_SUBCOMMANDS``;
plus the structure both tools would otherwise reject or silently misroute (references, selectors, probes).
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, SecretStr, ValidationError

from schemas.settings import (
    ENV_NESTED_DELIMITER,
    ENV_PREFIX,
    Settings,
    env_names,
    secret_env_names,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "infra" / "compose" / "docker-compose.yml"
K8S_DIR = REPO_ROOT / "infra" / "k8s"
K8S_FILES = ("namespace.yaml", "config.yaml", "secret.yaml", "workers.yaml", "jobs.yaml", "triton.yaml")

JUDGELINE_IMAGE = "judgeline:latest"
# The judgeline CLI subcommands a deploy file may run (after the `judgeline` executable).
CLI_SUBCOMMANDS: frozenset[tuple[str, ...]] = frozenset(
    {("worker", "inline"), ("worker", "frontier"), ("migrate",), ("topics", "create"), ("route-policy", "watch")}
)
WORKER_SUBCOMMANDS = frozenset({("worker", "inline"), ("worker", "frontier")})
CONTROLLER_SUBCOMMANDS = frozenset({("route-policy", "watch")})  # long-running, no Faust web server
ONE_SHOT_SUBCOMMANDS = CLI_SUBCOMMANDS - WORKER_SUBCOMMANDS - CONTROLLER_SUBCOMMANDS
COMPOSE_SERVICES = {
    "judgeline-inline": ("worker", "inline"),
    "judgeline-frontier": ("worker", "frontier"),
    "judgeline-migrate": ("migrate",),
    "judgeline-topics": ("topics", "create"),
    "judgeline-route-policy": ("route-policy", "watch"),
}
REQUIRED_SECRET_NAMES = frozenset(
    {"JUDGELINE_FRONTIER__API_KEY", "JUDGELINE_CLICKHOUSE__PASSWORD", "JUDGELINE_KAFKA__SASL_PASSWORD"}
)
SECRET_PLACEHOLDER = "REPLACE_ME"
PRODUCTION_TIMEOUTS = {"JUDGELINE_KAFKA__SESSION_TIMEOUT_MS": "45000", "JUDGELINE_KAFKA__HEARTBEAT_INTERVAL_MS": "3000"}
WORKER_WEB_PORT = 6066
SECRET_LOOKING = re.compile(r"PASSWORD|SECRET|API_KEY|TOKEN", re.IGNORECASE)
# The whole value is one required variable reference: ${NAME:?message} or ${NAME?message} (no default).
REQUIRED_REFERENCE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*:?\?[^}]*\}$")
LITERAL_KEY = re.compile(r"\bsk-[A-Za-z0-9_-]{16,}")
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "Pod"}
API_VERSIONS = {
    "Namespace": "v1",
    "ConfigMap": "v1",
    "Secret": "v1",
    "Service": "v1",
    "PersistentVolumeClaim": "v1",
    "Deployment": "apps/v1",
    "Job": "batch/v1",
}

Found = tuple[str, str]  # (where, variable name)


# ---------------------------------------------------------------------------------------------- loading


def load_yaml(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


@lru_cache(maxsize=1)
def compose() -> dict[str, Any]:
    docs = load_yaml(COMPOSE_FILE)
    assert len(docs) == 1, "docker-compose.yml must hold one YAML document"
    return docs[0]


@lru_cache(maxsize=1)
def k8s_files() -> dict[str, list[dict[str, Any]]]:
    return {name: load_yaml(K8S_DIR / name) for name in K8S_FILES}


def k8s_docs() -> list[dict[str, Any]]:
    return [doc for docs in k8s_files().values() for doc in docs]


def k8s_objects(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in k8s_docs() if doc.get("kind") == kind]


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    matches = [doc for doc in k8s_objects(kind) if doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name!r} in infra/k8s, found {len(matches)}"
    return matches[0]


# ------------------------------------------------------------------------------------------- checkers


def compose_environment(service: Mapping[str, Any]) -> dict[str, str | None]:
    """A compose service's `environment` as a mapping (both the mapping and the list form)."""
    env = service.get("environment") or {}
    if isinstance(env, Mapping):
        return {str(k): None if v is None else str(v) for k, v in env.items()}
    out: dict[str, str | None] = {}
    for item in env:
        key, sep, value = str(item).partition("=")
        out[key] = value if sep else None
    return out


def judgeline_names_in_compose(doc: Mapping[str, Any]) -> list[Found]:
    return [
        (f"services.{svc}.environment", key)
        for svc, service in (doc.get("services") or {}).items()
        for key in compose_environment(service)
        if key.upper().startswith(ENV_PREFIX)
    ]


def pod_spec(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    kind = doc.get("kind")
    if kind == "Pod":
        return doc["spec"]
    if kind in WORKLOAD_KINDS:
        return doc["spec"]["template"]["spec"]
    return None


def containers(doc: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    spec = pod_spec(doc)
    if spec:
        yield from spec.get("initContainers") or []
        yield from spec.get("containers") or []


def judgeline_names_in_k8s(docs: Iterable[Mapping[str, Any]]) -> list[Found]:
    found: list[Found] = []
    for doc in docs:
        where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        if doc.get("kind") == "ConfigMap":
            found += [(f"{where}.data", k) for k in doc.get("data") or {}]
        if doc.get("kind") == "Secret":
            found += [(f"{where}.stringData", k) for k in doc.get("stringData") or {}]
            found += [(f"{where}.data", k) for k in doc.get("data") or {}]
        for c in containers(doc):
            found += [(f"{where}.{c['name']}.env", e["name"]) for e in c.get("env") or []]
    return [(where, name) for where, name in found if name.upper().startswith(ENV_PREFIX)]


def unknown_names(found: Iterable[Found], known: set[str] | None = None) -> list[Found]:
    known = env_names() if known is None else known
    return [(where, name) for where, name in found if name not in known]


_VARIABLE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose variable interpolation: $$, ${X}, ${X:-d}, ${X-d}, ${X:?e}, ${X?e}, ${X:+r}, ${X+r}."""

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("name") or m.group("bare")
        op, arg, current = m.group("op"), m.group("arg") or "", env.get(name)
        is_set = current is not None and (current != "" or not (op or "").startswith(":"))
        if op in (":-", "-"):
            return current if is_set else arg
        if op in (":?", "?"):
            if not is_set:
                raise KeyError(f"required variable {name} is not set ({arg})")
            return current
        if op in (":+", "+"):
            return arg if is_set else ""
        return current or ""

    return _VARIABLE.sub(repl, value)


def cli_subcommand(command: str | list[str] | None, args: list[str] | None = None) -> tuple[str, ...]:
    argv = shlex.split(command) if isinstance(command, str) else list(command or [])
    argv += list(args or [])
    assert argv and argv[0] == "judgeline", f"command {argv!r} does not run the judgeline CLI"
    words = argv[1:]
    options = next((i for i, w in enumerate(words) if w.startswith("-")), len(words))
    sub = tuple(words[:options])  # the subcommand; its options (route-policy watch --every 300) follow
    assert sub in CLI_SUBCOMMANDS, f"`judgeline {' '.join(sub)}` is not one of {sorted(CLI_SUBCOMMANDS)}"
    return sub


def judgeline_services() -> dict[str, dict[str, Any]]:
    return {k: v for k, v in compose()["services"].items() if v.get("image") == JUDGELINE_IMAGE}


def build_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: Mapping[str, str]) -> Settings:
    """Settings() from exactly `env` (no other JUDGELINE_ variable, no .env file)."""
    for key in list(os.environ):
        if key.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    try:
        return Settings()
    except ValidationError as exc:  # pragma: no cover - the failure message is the point
        pytest.fail(f"Settings() rejects the deploy values:\n{exc}")


def setting_value(settings: Settings, name: str) -> Any:
    value: Any = settings
    for part in name.removeprefix(ENV_PREFIX).lower().split(ENV_NESTED_DELIMITER):
        value = getattr(value, part)
    return value


def assert_reaches_setting(settings: Settings, name: str, raw: str) -> None:
    value = setting_value(settings, name)
    if isinstance(value, BaseModel):
        return  # a whole group given as JSON
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, bool):
        assert value == (raw.lower() in ("1", "true", "yes", "on")), name
    elif isinstance(value, (int, float)):
        assert value == float(raw), f"{name}={raw!r} became {value!r}"
    else:
        assert str(value) == raw, f"{name}={raw!r} became {value!r}"


def probe_port(container: Mapping[str, Any], probe: Mapping[str, Any]) -> int:
    port = probe["httpGet"]["port"]
    if isinstance(port, int):
        return port
    named = {p.get("name"): p["containerPort"] for p in container.get("ports") or []}
    assert port in named, f"probe port {port!r} is not a named port of container {container['name']}"
    return named[port]


# ------------------------------------------------------------------------------- (a) names are known


def test_compose_judgeline_names_are_settings() -> None:
    found = judgeline_names_in_compose(compose())
    assert found, "compose sets no JUDGELINE_* variable at all"
    assert unknown_names(found) == []


def test_k8s_judgeline_names_are_settings() -> None:
    found = judgeline_names_in_k8s(k8s_docs())
    assert found, "infra/k8s sets no JUDGELINE_* variable at all"
    assert unknown_names(found) == []


def test_judgeline_containers_are_configured_only_by_judgeline_names() -> None:
    for name, service in judgeline_services().items():
        stray = [k for k in compose_environment(service) if not k.startswith(ENV_PREFIX)]
        assert stray == [], f"compose service {name} sets non-JUDGELINE_ variables {stray}"
    referenced = {
        (kind, ref["name"])
        for doc in k8s_docs()
        for c in containers(doc)
        for src in c.get("envFrom") or []
        for kind, ref in (("ConfigMap", src.get("configMapRef")), ("Secret", src.get("secretRef")))
        if ref
    }
    assert ("ConfigMap", "judgeline-config") in referenced and ("Secret", "judgeline-secrets") in referenced
    for kind, name in referenced:
        obj = k8s_object(kind, name)
        keys = list(obj.get("data") or {}) + list(obj.get("stringData") or {})
        stray = [k for k in keys if not k.startswith(ENV_PREFIX)]
        assert stray == [], f"{kind} {name} is used with envFrom but has non-JUDGELINE_ keys {stray}"


def test_checker_rejects_a_misspelled_name() -> None:
    bad, good = "JUDGELINE_KAFKA__BOOTSTRAP_SERVER", "JUDGELINE_KAFKA__BOOTSTRAP_SERVERS"
    assert good in env_names() and bad not in env_names()
    mapping_form = {"services": {"w": {"environment": {bad: "kafka:9092", "JUDGELINE_LOG_LEVEL": "INFO"}}}}
    list_form = {"services": {"w": {"environment": [f"{bad}=kafka:9092", "JUDGELINE_LOG_LEVEL=INFO"]}}}
    for doc in (mapping_form, list_form):
        assert unknown_names(judgeline_names_in_compose(doc)) == [("services.w.environment", bad)]
    manifests = [
        {"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {bad: "x", good: "y"}},
        {"kind": "Secret", "metadata": {"name": "s"}, "stringData": {"JUDGELINE_FRONTIER__APIKEY": "x"}},
        {
            "kind": "Deployment",
            "metadata": {"name": "d"},
            "spec": {"template": {"spec": {"containers": [{"name": "w", "env": [{"name": bad, "value": "x"}]}]}}},
        },
    ]
    assert unknown_names(judgeline_names_in_k8s(manifests)) == [
        ("ConfigMap/c.data", bad),
        ("Secret/s.stringData", "JUDGELINE_FRONTIER__APIKEY"),
        ("Deployment/d.w.env", bad),
    ]


# ----------------------------------------------------------------------- (b) values construct Settings


def test_k8s_config_values_construct_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data = k8s_object("ConfigMap", "judgeline-config")["data"]
    assert all(isinstance(v, str) for v in data.values()), "ConfigMap data values must be YAML strings"
    secrets = k8s_object("Secret", "judgeline-secrets")["stringData"]
    settings = build_settings(monkeypatch, tmp_path, {**data, **secrets})
    for name, raw in {**data, **secrets}.items():
        assert_reaches_setting(settings, name, raw)
    assert settings.kafka.security_protocol == "SASL_SSL" and settings.kafka.sasl_mechanism
    assert settings.clickhouse_dsn.startswith(("http://", "https://")), "production needs a ClickHouse server"


@pytest.mark.parametrize("service_name", sorted(COMPOSE_SERVICES))
def test_compose_values_construct_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, service_name: str
) -> None:
    service = compose()["services"][service_name]
    shell = {"OPENAI_API_KEY": "test-key", "CLICKHOUSE_PASSWORD": "test-password"}
    env = {k: interpolate(v or "", shell) for k, v in compose_environment(service).items()}
    settings = build_settings(monkeypatch, tmp_path, env)
    for name, raw in env.items():
        if name.startswith(ENV_PREFIX):
            assert_reaches_setting(settings, name, raw)
    assert settings.clickhouse_dsn == "http://clickhouse:8123"
    assert settings.kafka.bootstrap_servers == "kafka:9092"


def test_production_kafka_timeouts() -> None:
    data = k8s_object("ConfigMap", "judgeline-config")["data"]
    for name, value in PRODUCTION_TIMEOUTS.items():
        assert data.get(name) == value, f"ConfigMap {name}"
        for svc, service in judgeline_services().items():
            assert compose_environment(service).get(name) == value, f"compose {svc} {name}"


# ----------------------------------------------------------------------------- (c) no literal secrets


def test_compose_secrets_are_variable_references() -> None:
    assert not LITERAL_KEY.search(COMPOSE_FILE.read_text(encoding="utf-8")), "an API key is written in compose"
    secret_names = secret_env_names()
    assert REQUIRED_SECRET_NAMES <= secret_names, "schemas.settings no longer types these as SecretStr"
    checked = 0
    for svc, service in compose()["services"].items():
        for key, value in compose_environment(service).items():
            if key in secret_names or SECRET_LOOKING.search(key):
                checked += 1
                assert value and REQUIRED_REFERENCE.match(value), (
                    f"compose {svc}: {key} must be a required variable reference like ${{VAR:?message}}, "
                    f"got {value!r}"
                )
    frontier_env = compose_environment(compose()["services"]["judgeline-frontier"])
    assert (frontier_env.get("JUDGELINE_FRONTIER__API_KEY") or "").startswith("${OPENAI_API_KEY")
    assert checked >= 3


def test_k8s_secrets_are_placeholders() -> None:
    secrets = k8s_objects("Secret")
    assert secrets
    for secret in secrets:
        name = secret["metadata"]["name"]
        assert "data" not in secret, f"Secret {name}: use stringData placeholders, not base64 data"
        values = secret.get("stringData") or {}
        assert values and all(v == SECRET_PLACEHOLDER for v in values.values()), f"Secret {name}"
    assert REQUIRED_SECRET_NAMES <= set(k8s_object("Secret", "judgeline-secrets")["stringData"])
    config_keys = set(k8s_object("ConfigMap", "judgeline-config")["data"])
    assert config_keys & secret_env_names() == set(), "a secret setting is in the ConfigMap"


# -------------------------------------------------------------------------------------- (d) GPU Triton


def triton_model_args(argv: list[str], model_name: str) -> None:
    """Triton loads exactly the model the workers ask for (JUDGELINE_TRITON__MODEL_NAME)."""
    assert argv and argv[0] == "tritonserver", argv
    assert "--model-control-mode=explicit" in argv, argv
    assert f"--load-model={model_name}" in argv, argv


def test_compose_triton_requests_a_gpu() -> None:
    tritons = [s for s in compose()["services"].values() if "tritonserver" in s.get("image", "")]
    assert len(tritons) == 1
    triton = tritons[0]
    devices = triton["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d.get("capabilities", []) and d.get("driver", "nvidia") == "nvidia" for d in devices)
    argv = shlex.split(triton["command"]) if isinstance(triton["command"], str) else triton["command"]
    inline_env = compose_environment(judgeline_services()["judgeline-inline"])
    triton_model_args(argv, inline_env.get("JUDGELINE_TRITON__MODEL_NAME") or "judge")
    assert "../../triton_models:/models:ro" in triton["volumes"]
    assert (COMPOSE_FILE.parent / "../../triton_models").resolve() == REPO_ROOT / "triton_models"
    assert inline_env["JUDGELINE_TRITON__URL"] == "triton:8001"


def test_k8s_triton_requests_a_gpu() -> None:
    deployment = k8s_object("Deployment", "triton")
    spec = pod_spec(deployment)
    (container,) = [c for c in spec["containers"] if "tritonserver" in c["image"]]
    limits = container["resources"]["limits"]
    assert int(limits["nvidia.com/gpu"]) >= 1
    requests = container["resources"].get("requests", {})
    assert int(requests.get("nvidia.com/gpu", limits["nvidia.com/gpu"])) == int(limits["nvidia.com/gpu"])
    gpu_placement = any("nvidia.com/gpu" in k for k in spec.get("nodeSelector") or {}) or any(
        t.get("key") == "nvidia.com/gpu" for t in spec.get("tolerations") or []
    )
    assert gpu_placement, "Triton needs a nodeSelector or toleration for GPU nodes"
    data = k8s_object("ConfigMap", "judgeline-config")["data"]
    argv = list(container.get("command") or []) + list(container.get("args") or [])
    triton_model_args(argv, data.get("JUDGELINE_TRITON__MODEL_NAME") or "judge")
    ready = container["readinessProbe"]
    assert ready["httpGet"]["path"] == "/v2/health/ready" and probe_port(container, ready) == 8000
    service = k8s_object("Service", "triton")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    ports = {p["port"]: p for p in service["spec"]["ports"]}
    for setting, port in (("JUDGELINE_TRITON__URL", 8001), ("JUDGELINE_TRITON__HTTP_URL", 8000)):
        assert data[setting].split(":")[0].split(".")[0] == "triton" and data[setting].endswith(f":{port}")
        target = ports[port]["targetPort"]
        resolved = target if isinstance(target, int) else probe_port(container, {"httpGet": {"port": target}})
        assert resolved == port


# ---------------------------------------------------------------------------------- (e) CLI commands


def test_compose_commands_are_cli_subcommands() -> None:
    services = judgeline_services()
    assert set(services) == set(COMPOSE_SERVICES)
    for name, service in services.items():
        assert cli_subcommand(service.get("command")) == COMPOSE_SERVICES[name]
        assert service.get("entrypoint") is None, f"{name}: keep the image entrypoint, set only command"


def test_k8s_commands_are_cli_subcommands() -> None:
    seen: set[tuple[str, ...]] = set()
    for doc in k8s_docs():
        for c in containers(doc):
            if c["image"].split("/")[-1] != JUDGELINE_IMAGE:
                continue
            sub = cli_subcommand(c.get("command"), c.get("args"))
            expected = WORKER_SUBCOMMANDS | CONTROLLER_SUBCOMMANDS if doc["kind"] == "Deployment" \
                else ONE_SHOT_SUBCOMMANDS
            assert sub in expected, f"{doc['kind']} {doc['metadata']['name']} runs `judgeline {' '.join(sub)}`"
            seen.add(sub)
    assert seen == CLI_SUBCOMMANDS


def test_checkers_reject_bad_input() -> None:
    with pytest.raises(AssertionError):
        cli_subcommand(["judgeline", "worker", "inlin"])
    with pytest.raises(AssertionError):
        cli_subcommand("python -m judgeline migrate")
    assert cli_subcommand("judgeline topics create") == ("topics", "create")
    assert not REQUIRED_REFERENCE.match("sk-live-1234") and not REQUIRED_REFERENCE.match("${KEY:-sk-1234}")
    assert REQUIRED_REFERENCE.match("${OPENAI_API_KEY:?set it}")
    with pytest.raises(KeyError):
        interpolate("${OPENAI_API_KEY:?set it}", {})
    assert interpolate("${A:-x}/${B}/$$", {"B": "b"}) == "x/b/$"


def test_cli_defines_the_subcommands() -> None:
    """Each subcommand the deploy files run (CLI_SUBCOMMANDS) exists in the CLI."""
    import typer.main

    from cli.main import app

    root = typer.main.get_command(app)
    missing = []
    for sub in sorted(CLI_SUBCOMMANDS):
        cmd = root
        for part in sub:
            commands = getattr(cmd, "commands", {})
            if part not in commands:
                missing.append("judgeline " + " ".join(sub))
                break
            cmd = commands[part]
    assert missing == [], f"the deploy files run {missing}, which cli.main does not define"


# --------------------------------------------------------------------------------- structure of files


def test_compose_structure() -> None:
    doc = compose()
    allowed_top = {"name", "services", "volumes", "networks", "configs", "secrets"}
    assert {k for k in doc if not k.startswith("x-")} <= allowed_top
    services = doc["services"]
    assert {"kafka", "clickhouse", "triton"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    kraft = services["kafka"]["environment"]
    assert "controller" in kraft["KAFKA_PROCESS_ROLES"] and "broker" in kraft["KAFKA_PROCESS_ROLES"]
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        for dep, cond in (service.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            assert cond["condition"] in conditions, f"{name} -> {dep}: {cond}"
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy: it has no healthcheck"
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in (doc.get("volumes") or {}), f"{name}: named volume {source} is not declared"
    for name, service in judgeline_services().items():
        assert (COMPOSE_FILE.parent / service["build"]["context"]).resolve() == REPO_ROOT, name
        deps = service.get("depends_on") or {}
        if COMPOSE_SERVICES[name] in WORKER_SUBCOMMANDS | CONTROLLER_SUBCOMMANDS:
            if COMPOSE_SERVICES[name] in WORKER_SUBCOMMANDS:
                assert "healthcheck" in service and "6066" in " ".join(service["healthcheck"]["test"])
            else:
                assert service.get("restart") == "unless-stopped", f"{name} is long-running"
            for one_shot in ("judgeline-migrate", "judgeline-topics"):
                assert deps[one_shot]["condition"] == "service_completed_successfully", name
        else:
            assert service.get("restart") == "no", f"{name} is one-shot"


def test_k8s_structure() -> None:
    for name, docs in k8s_files().items():
        assert docs, f"{name} is empty"
    (namespace,) = k8s_objects("Namespace")
    ns = namespace["metadata"]["name"]
    defined = {(d["kind"], d["metadata"]["name"]) for d in k8s_docs()}
    for doc in k8s_docs():
        kind, meta = doc["kind"], doc["metadata"]
        assert doc["apiVersion"] == API_VERSIONS[kind], f"{kind} {meta['name']}: apiVersion {doc['apiVersion']}"
        if kind != "Namespace":
            assert meta.get("namespace") == ns, f"{kind} {meta['name']} is not in namespace {ns}"
        if kind == "Deployment":
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items(), meta["name"]
        if kind == "Job":
            assert pod_spec(doc)["restartPolicy"] in ("Never", "OnFailure")
        spec = pod_spec(doc)
        for volume in (spec or {}).get("volumes") or []:
            if "secret" in volume:
                assert ("Secret", volume["secret"]["secretName"]) in defined
            if "persistentVolumeClaim" in volume:
                assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in defined
        for c in containers(doc):
            assert c["resources"].get("requests") and c["resources"].get("limits"), f"{meta['name']}/{c['name']}"
            mounts = {m["name"] for m in c.get("volumeMounts") or []}
            assert mounts <= {v["name"] for v in spec.get("volumes") or []}, f"{meta['name']}/{c['name']}"
            for src in c.get("envFrom") or []:
                for kind_ref, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    if key in src:
                        assert (kind_ref, src[key]["name"]) in defined


def test_k8s_worker_probes_use_the_faust_web_port() -> None:
    data = k8s_object("ConfigMap", "judgeline-config")["data"]
    assert int(data.get("JUDGELINE_STREAM__WORKER_WEB_PORT", WORKER_WEB_PORT)) == WORKER_WEB_PORT
    ca_path = data.get("JUDGELINE_KAFKA__SSL_CA_LOCATION")
    for name in ("judgeline-inline", "judgeline-frontier"):
        (container,) = pod_spec(k8s_object("Deployment", name))["containers"]
        assert "livenessProbe" in container and "readinessProbe" in container, name
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            if probe not in container:
                continue
            assert container[probe]["httpGet"]["path"] == "/", f"{name} {probe}"
            assert probe_port(container, container[probe]) == WORKER_WEB_PORT, f"{name} {probe}"
        if ca_path:
            mounts = [m["mountPath"] for m in container.get("volumeMounts") or []]
            assert any(ca_path.startswith(m.rstrip("/") + "/") for m in mounts), f"{name}: {ca_path} not mounted"


def test_one_routing_controller_runs_at_a_time() -> None:
    """Two controllers would race on policy versions: one replica, replaced by Recreate (never two at once)."""
    deployment = k8s_object("Deployment", "judgeline-route-policy")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    service = compose()["services"]["judgeline-route-policy"]
    assert "deploy" not in service or service["deploy"].get("replicas", 1) == 1
