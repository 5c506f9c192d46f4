"""The Kubernetes manifests in deploy/kubernetes render, are valid objects for the API server, and
say what the README promises: locked-down pods, probes on the admin port, a drain that fits the
grace period, a configuration that scopegate accepts, the promtool-tested alert rules unchanged.

Rendering uses tests/deploy/kustomize.py (no kustomize binary offline); built-in kinds are
validated strictly against the Kubernetes 1.30 JSON schemas shipped by kubernetes-validate, and
the Prometheus Operator's kinds against a strict subset of their CRD schemas written here.
"""

from __future__ import annotations

import functools
import re
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from scopegate.app import SHUTDOWN_GRACE
from scopegate.cli import main as scopegate_main
from tests.deploy.kustomize import KustomizeError, Resource, config_map_hash, json_patch, render

ROOT = Path(__file__).parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
RULES_FILE = ROOT / "deploy" / "prometheus" / "scopegate.rules.yml"
LAYOUTS = ["base", "overlays/example"]
KUBERNETES_VERSION = "1.30"
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
EXPECTED_KINDS = {
    "Deployment",
    "Service",
    "ConfigMap",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "ServiceMonitor",
    "PrometheusRule",
}
CONFIG_DIR = "/etc/scopegate"


@functools.cache
def _rendered(layout: str) -> tuple[Resource, ...]:
    return tuple(render(KUBERNETES / layout))


def _one(layout: str, kind: str) -> Resource:
    found = [r for r in _rendered(layout) if r["kind"] == kind]
    assert len(found) == 1, f"{layout}: expected one {kind}, found {len(found)}"
    return found[0]


def _pod(layout: str) -> dict[str, Any]:
    spec: dict[str, Any] = _one(layout, "Deployment")["spec"]["template"]["spec"]
    return spec


def _container(layout: str) -> dict[str, Any]:
    containers: list[dict[str, Any]] = _pod(layout)["containers"]
    assert [c["name"] for c in containers] == ["scopegate"]
    return containers[0]


def _container_port(container: dict[str, Any], name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert name in ports, f"no container port named {name}: {ports}"
    return int(ports[name])


def _config_text(layout: str) -> tuple[str, str]:
    """The key and content of the file scopegate reads, found through the Deployment's mount."""
    container = _container(layout)
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    config_path = env["SCOPEGATE_CONFIG"]
    directory, _, key = config_path.rpartition("/")
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in _pod(layout)["volumes"]}
    config_map_name = volumes[mounts[directory]]["configMap"]["name"]
    config_maps = [
        r
        for r in _rendered(layout)
        if r["kind"] == "ConfigMap" and r["metadata"]["name"] == config_map_name
    ]
    assert len(config_maps) == 1, f"the mounted ConfigMap {config_map_name} is not rendered"
    data: dict[str, str] = config_maps[0]["data"]
    assert key in data, f"ConfigMap {config_map_name} has no key {key}"
    return key, data[key]


def _port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


def _cpu(quantity: str | int) -> float:
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _memory(quantity: str | int) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    text = str(quantity)
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return int(text[: -len(suffix)]) * factor
    return int(text)


def _seconds(duration: str) -> int:
    factors = {"h": 3600, "m": 60, "s": 1}
    return sum(int(n) * factors[unit] for n, unit in re.findall(r"(\d+)([hms])(?!s)", duration))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layout_renders_every_object_once(layout: str) -> None:
    """kustomize semantics give exactly one object of each kind the README lists."""
    kinds = [r["kind"] for r in _rendered(layout)]
    assert sorted(kinds) == sorted(EXPECTED_KINDS)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_builtin_objects_validate_against_kubernetes_schemas(layout: str) -> None:
    """Every built-in object is valid for the Kubernetes 1.30 API, strictly: a misspelt field is
    an error here rather than a field the API server silently drops."""
    errors = []
    for resource in _rendered(layout):
        if resource["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            errors.append(f"{resource['kind']}: {path}: {error.message}")
    assert not errors, "\n".join(errors)


def test_schema_validation_catches_a_misspelt_field() -> None:
    """The strict validation above is not vacuous: one misspelt security field fails it."""
    deployment = yaml.safe_load((KUBERNETES / "base" / "deployment.yaml").read_text())
    context = deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    context["readOnlyRootFS"] = context.pop("readOnlyRootFilesystem")
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFS"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


# The Prometheus Operator's CRDs are not in the Kubernetes schemas. These are strict subsets of
# their OpenAPI schemas: the fields these manifests use, with the operator's types and patterns.
# A structural CRD prunes unknown fields without an error, so strictness here catches typos.
DURATION = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
METADATA = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
    },
}
LABEL_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {"matchLabels": STRING_MAP, "matchExpressions": {"type": "array"}},
}
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": METADATA,
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": LABEL_SELECTOR,
                "jobLabel": {"type": "string"},
                "namespaceSelector": {"type": "object"},
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port"],
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": DURATION,
                            "scrapeTimeout": DURATION,
                        },
                    },
                },
            },
        },
    },
}
RULE = {
    "type": "object",
    "required": ["expr"],
    "additionalProperties": False,
    "oneOf": [{"required": ["record"]}, {"required": ["alert"]}],
    "properties": {
        "record": {"type": "string", "pattern": r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"},
        "alert": {"type": "string", "minLength": 1},
        "expr": {"type": ["string", "integer"], "minLength": 1},
        "for": DURATION,
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
    },
}
PROMETHEUS_RULE_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": METADATA,
        "spec": {
            "type": "object",
            "required": ["groups"],
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": DURATION,
                            "rules": {"type": "array", "minItems": 1, "items": RULE},
                        },
                    },
                },
            },
        },
    },
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_prometheus_operator_objects_are_well_formed(layout: str) -> None:
    """ServiceMonitor and PrometheusRule have the operator's apiVersion, kind, required fields and
    field types; alert names are unique and the scrape timeout fits in the interval."""
    monitor = _one(layout, "ServiceMonitor")
    jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
    for endpoint in monitor["spec"]["endpoints"]:
        assert _seconds(endpoint["scrapeTimeout"]) <= _seconds(endpoint["interval"])
    rule = _one(layout, "PrometheusRule")
    jsonschema.validate(rule, PROMETHEUS_RULE_SCHEMA)
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert len(alerts) == len(set(alerts)), alerts


@pytest.mark.parametrize("layout", LAYOUTS)
def test_prometheus_rule_carries_the_promtool_tested_rules(layout: str) -> None:
    """The PrometheusRule's groups are exactly deploy/prometheus/scopegate.rules.yml's, whose
    alerts promtool unit-tests: the cluster runs the rules that were tested."""
    tested = yaml.safe_load(RULES_FILE.read_text())["groups"]
    assert _one(layout, "PrometheusRule")["spec"]["groups"] == tested


@pytest.mark.parametrize("layout", LAYOUTS)
def test_pods_are_locked_down(layout: str) -> None:
    """Non-root, read-only root file system, no privilege escalation, no capabilities, the
    default seccomp profile, no service account token; /tmp the only writable mount."""
    pod = _pod(layout)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    context = _container(layout)["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "privileged" not in context
    volumes = {v["name"]: v for v in pod["volumes"]}
    writable = {
        m["mountPath"]: volumes[m["name"]]
        for m in _container(layout)["volumeMounts"]
        if not m.get("readOnly")
    }
    assert set(writable) == {"/tmp"}
    assert "emptyDir" in writable["/tmp"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_probes_use_the_admin_port_scopegate_listens_on(layout: str) -> None:
    """Readiness asks /readyz and liveness /healthz on the container port named `admin`, which
    is the port of the configuration's admin_listen; `http` is its listen port."""
    container = _container(layout)
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        assert container[probe]["httpGet"] == {"path": path, "port": "admin"}, probe
    _, text = _config_text(layout)
    config = yaml.safe_load(text)
    assert _container_port(container, "admin") == _port_of(config["admin_listen"]) == 9100
    assert _container_port(container, "http") == _port_of(config["listen"]) == 8080
    # The kubelet and Prometheus come from outside the pod: loopback would fail every probe.
    assert config["admin_listen"].startswith("0.0.0.0:")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_service_exposes_public_80_and_admin_9100(layout: str) -> None:
    """The Service maps 80 to the public port and 9100 (named `admin`) to the admin port, and
    selects the Deployment's pods."""
    service = _one(layout, "Service")
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert ports == {"http": (80, "http"), "admin": (9100, "admin")}
    labels = _one(layout, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_shutdown_fits_in_the_grace_period(layout: str) -> None:
    """preStop sleep plus scopegate's drain (SHUTDOWN_GRACE) end before the kubelet's SIGKILL."""
    pre_stop = _container(layout)["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    grace = _pod(layout)["terminationGracePeriodSeconds"]
    assert int(pre_stop[1]) + SHUTDOWN_GRACE < grace


@pytest.mark.parametrize("layout", LAYOUTS)
def test_resources_are_requested_and_limited(layout: str) -> None:
    """CPU and memory have requests (what the autoscaler measures against) and limits at least as
    large."""
    resources = _container(layout)["resources"]
    assert 0 < _cpu(resources["requests"]["cpu"]) <= _cpu(resources["limits"]["cpu"])
    memory = resources["requests"]["memory"], resources["limits"]["memory"]
    assert 0 < _memory(memory[0]) <= _memory(memory[1])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_configuration_comes_from_the_generated_config_map(layout: str) -> None:
    """SCOPEGATE_CONFIG names a file in the read-only mount of the hash-named ConfigMap."""
    container = _container(layout)
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[CONFIG_DIR]["readOnly"] is True
    key, _ = _config_text(layout)
    assert key == "scopegate.yaml"
    volume = next(v for v in _pod(layout)["volumes"] if v["name"] == mounts[CONFIG_DIR]["name"])
    assert re.fullmatch(r"scopegate-config-[0-9a-z]{10}", volume["configMap"]["name"])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_shipped_configuration_passes_scopegate_check(
    layout: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The ConfigMap's file, with the container's environment, is one `scopegate check` accepts
    without warnings: a pod would load it."""
    key, text = _config_text(layout)
    for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text):
        monkeypatch.delenv(name, raising=False)
    for env in _container(layout).get("env", []):
        monkeypatch.setenv(env["name"], env["value"])
    path = tmp_path / key
    path.write_text(text)
    assert scopegate_main(["check", "-c", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "valid" in out
    assert "warning" not in out + err


def test_a_configuration_change_rolls_the_pods(tmp_path: Path) -> None:
    """Editing the overlay's scopegate.yaml renames its ConfigMap and the Deployment's volume
    follows: `kubectl apply` then rolls the pods. The same file always gives the same name."""
    copy = tmp_path / "kubernetes"
    shutil.copytree(KUBERNETES, copy)

    def mounted(layout: str) -> str:
        resources = render(copy / layout)
        deployment = next(r for r in resources if r["kind"] == "Deployment")
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        names = {r["metadata"]["name"] for r in resources if r["kind"] == "ConfigMap"}
        name = str(next(v["configMap"]["name"] for v in volumes if v["name"] == "config"))
        assert name in names
        return name

    before = mounted("overlays/example")
    assert mounted("overlays/example") == before
    config = copy / "overlays" / "example" / "scopegate.yaml"
    config.write_text(config.read_text().replace("timeout: 30", "timeout: 20"))
    after = mounted("overlays/example")
    assert after != before
    assert after.startswith("scopegate-config-")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, "42745tchd9"),
        ({"one": ""}, "9g67k2htb6"),
        ({"two": "2", "one": "", "three": "3"}, "f5h7t85m9b"),
        (None, "dk855m5d49"),
    ],
)
def test_config_map_hash_is_kustomizes(data: dict[str, str] | None, expected: str) -> None:
    """The name suffix is kustomize's own: these are the vectors of kustomize's hasher tests
    (unnamed ConfigMaps; key order does not matter)."""
    config_map: Resource = {"kind": "ConfigMap", "metadata": {"name": ""}}
    if data is not None:
        config_map["data"] = data
    assert config_map_hash(config_map) == expected


@pytest.mark.parametrize("layout", LAYOUTS)
def test_selectors_and_targets_agree(layout: str) -> None:
    """PDB, NetworkPolicy and autoscaler act on the Deployment's pods; the ServiceMonitor selects
    the Service and scrapes its `admin` port."""
    deployment = _one(layout, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    pdb = _one(layout, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    policy = _one(layout, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    target = _one(layout, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert target == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "scopegate"}
    service = _one(layout, "Service")
    monitor = _one(layout, "ServiceMonitor")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["admin"]
    assert "admin" in service_ports
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_scrape_job_is_the_one_the_down_alert_watches(layout: str) -> None:
    """The operator names the job after the Service (no jobLabel): `scopegate`, the job that
    ScopegateDown selects, so a dead pod does fire it."""
    monitor = _one(layout, "ServiceMonitor")
    assert "jobLabel" not in monitor["spec"]
    job = _one(layout, "Service")["metadata"]["name"]
    rule = _one(layout, "PrometheusRule")
    down = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"] if "up{" in r["expr"]]
    assert down, "no alert watches `up`"
    assert all(f'job="{job}"' in expr for expr in down)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_admin_port_is_open_only_to_monitoring(layout: str) -> None:
    """The NetworkPolicy admits the public port from anywhere and the admin port only from the
    monitoring namespace; no rule opens every port."""
    policy = _one(layout, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    by_port: dict[str, list[Any]] = {}
    for rule in policy["spec"]["ingress"]:
        assert rule.get("ports"), "a rule without ports opens every port"
        for port in rule["ports"]:
            by_port.setdefault(port["port"], []).append(rule.get("from"))
    assert set(by_port) == {"http", "admin"}
    assert by_port["http"] == [None]
    assert by_port["admin"] == [
        [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    ]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_replicas_fit_the_autoscaler_and_disruption_budget(layout: str) -> None:
    """The Deployment starts at the autoscaler's floor, which is at least 2, and the disruption
    budget always leaves a pod serving."""
    replicas = _one(layout, "Deployment")["spec"]["replicas"]
    hpa = _one(layout, "HorizontalPodAutoscaler")["spec"]
    assert 2 <= hpa["minReplicas"] == replicas < hpa["maxReplicas"]
    assert _one(layout, "PodDisruptionBudget")["spec"]["maxUnavailable"] < hpa["minReplicas"]
    metrics = [(m["type"], m["resource"]["name"]) for m in hpa["metrics"]]
    assert metrics == [("Resource", "cpu")]


def test_overlay_sets_namespace_image_replicas_and_workers() -> None:
    """The example overlay's kustomization takes effect: every object in its namespace, the
    image from its registry, 3 replicas, 2 workers per pod, the Prometheus selection label."""
    overlay = "overlays/example"
    assert {r["metadata"].get("namespace") for r in _rendered(overlay)} == {"scopegate"}
    container = _container(overlay)
    assert container["image"] == "registry.example.com/platform/scopegate:0.1.0"
    assert container["args"] == ["serve", "--workers", "2"]
    assert _one(overlay, "Deployment")["spec"]["replicas"] == 3
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert _one(overlay, kind)["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert _config_text(overlay) != _config_text("base")
    assert _container("base")["image"] == "scopegate:0.1.0"


@pytest.mark.parametrize(
    ("kustomization", "message"),
    [
        ("resources: [deployment.yaml]\ncommonLabels: {a: b}\n", "does not implement"),
        ("resources: [missing.yaml]\n", "does not exist"),
        (
            "resources: [deployment.yaml]\npatches:\n  - target: {kind: Deployment}\n"
            "    patch: 'spec: {replicas: 3}'\n",
            "only JSON 6902",
        ),
        (
            "resources: [deployment.yaml]\npatches:\n  - target: {kind: Service}\n"
            "    patch: '[{op: add, path: /x, value: 1}]'\n",
            "matches no resource",
        ),
        ("resources: [deployment.yaml]\nimages: [{name: nginx, newTag: '1'}]\n", "no container"),
    ],
)
def test_renderer_refuses_what_it_cannot_render_exactly(
    tmp_path: Path, kustomization: str, message: str
) -> None:
    """The renderer fails on fields, patches and targets it does not implement or that match
    nothing, so a passing render is never an approximation."""
    shutil.copy(KUBERNETES / "base" / "deployment.yaml", tmp_path / "deployment.yaml")
    (tmp_path / "kustomization.yaml").write_text(kustomization)
    with pytest.raises(KustomizeError, match=message):
        render(tmp_path)


def test_json_patch_operations() -> None:
    """add (to a map and at a list's end), replace and remove behave as RFC 6902 says; replacing
    a missing member is an error."""
    document: Resource = {"a": {"b": [1, 2]}, "c": 1}
    json_patch(document, {"op": "add", "path": "/a/b/-", "value": 3})
    json_patch(document, {"op": "add", "path": "/a/d~1e", "value": "x"})
    json_patch(document, {"op": "replace", "path": "/a/b/0", "value": 0})
    json_patch(document, {"op": "remove", "path": "/c"})
    assert document == {"a": {"b": [0, 2, 3], "d/e": "x"}}
    with pytest.raises(KustomizeError, match="does not exist"):
        json_patch(document, {"op": "replace", "path": "/missing", "value": 1})
