"""The Kubernetes manifests in deploy/kubernetes render, are valid objects for the API server, and
say what the README promises: locked-down pods, probes on the admin port, a drain that fits the
grace period, a configuration that scopegate accepts, the promtool-tested alert rules unchanged,
a Redis for the rate limits that only scopegate's pods reach, and in the example overlay HTTPS
with the certificate of a read-only Secret mount that no file here holds.

Rendering is `kubectl kustomize`, with the kubectl the dev extra pins; built-in kinds are
validated strictly against the Kubernetes 1.30 JSON schemas shipped by kubernetes-validate, and
the Prometheus Operator's kinds against the operator's published CRD schemas (tests/deploy/crds).
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from copy import deepcopy
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from scopegate.app import SHUTDOWN_GRACE
from scopegate.cli import main as scopegate_main
from tests.deploy.kubectl import DISTRIBUTION, KustomizeError, Resource, kubectl, kustomize
from tests.support.certs import TestAuthority

ROOT = Path(__file__).parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
RULES_FILE = ROOT / "deploy" / "prometheus" / "scopegate.rules.yml"
CRDS = Path(__file__).parent / "crds"
README = KUBERNETES / "README.md"
LAYOUTS = ["base", "overlays/example"]
# The layouts whose public port speaks HTTPS (`tls:` in the configuration).
TLS_LAYOUTS = ["overlays/example"]
KUBERNETES_VERSION = "1.30"
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
# (kind, name) of every object, the ConfigMap's name without its content hash.
EXPECTED_OBJECTS = {
    ("Deployment", "scopegate"),
    ("Service", "scopegate"),
    ("ConfigMap", "scopegate-config"),
    ("HorizontalPodAutoscaler", "scopegate"),
    ("PodDisruptionBudget", "scopegate"),
    ("NetworkPolicy", "scopegate"),
    ("ServiceMonitor", "scopegate"),
    ("PrometheusRule", "scopegate"),
    # The rate limits' shared store.
    ("Deployment", "redis"),
    ("Service", "redis"),
    ("NetworkPolicy", "redis"),
}
CONFIG_DIR = "/etc/scopegate"
GATEWAY = "scopegate"
REDIS = "redis"


@functools.cache
def _rendered(layout: str) -> tuple[Resource, ...]:
    return tuple(kustomize(KUBERNETES / layout))


def _one(layout: str, kind: str, name: str = GATEWAY) -> Resource:
    found = [r for r in _rendered(layout) if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(found) == 1, f"{layout}: expected one {kind} {name}, found {len(found)}"
    return found[0]


def _pod(layout: str, name: str = GATEWAY) -> dict[str, Any]:
    spec: dict[str, Any] = _one(layout, "Deployment", name)["spec"]["template"]["spec"]
    return spec


def _pod_labels(layout: str, name: str = GATEWAY) -> dict[str, str]:
    template = _one(layout, "Deployment", name)["spec"]["template"]
    labels: dict[str, str] = template["metadata"]["labels"]
    return labels


def _container(layout: str, name: str = GATEWAY) -> dict[str, Any]:
    containers: list[dict[str, Any]] = _pod(layout, name)["containers"]
    assert [c["name"] for c in containers] == [name]
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


def _config(layout: str) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(_config_text(layout)[1])
    return config


def _public_port_name(layout: str) -> str:
    """The name the public port goes by in the pod, the Service and the NetworkPolicy."""
    return "https" if "tls" in _config(layout) else "http"


def _tls_mount(layout: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The container's mount of the directory holding the configuration's TLS files, and the
    volume mounted there."""
    tls = _config(layout)["tls"]
    directories = {tls["cert"].rpartition("/")[0], tls["key"].rpartition("/")[0]}
    assert len(directories) == 1, f"certificate and key in one directory: {tls}"
    (directory,) = directories
    mounts = {m["mountPath"]: m for m in _container(layout)["volumeMounts"]}
    assert directory in mounts, f"{directory}, the directory of tls.cert and tls.key, is no mount"
    volumes = {v["name"]: v for v in _pod(layout)["volumes"]}
    return mounts[directory], volumes[mounts[directory]["name"]]


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
    """kustomize semantics give exactly the objects the README lists, each once."""
    unhashed = {"ConfigMap"}  # generated: NAME-<hash of the content>
    objects = [
        (r["kind"], r["metadata"]["name"].rsplit("-", 1)[0])
        if r["kind"] in unhashed
        else (r["kind"], r["metadata"]["name"])
        for r in _rendered(layout)
    ]
    assert sorted(objects) == sorted(EXPECTED_OBJECTS)


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


@functools.cache
def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the `openAPIV3Schema` of each served version of tests/deploy/crds."""
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version["served"]:
                schema = version["schema"]["openAPIV3Schema"]
                schemas[(f"{group}/{version['name']}", kind)] = _closed(schema)
    return schemas


def _closed(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with every object that lists its fields closed to others.

    `kubectl apply` validates strictly by default: the API server rejects a field the CRD's
    structural schema does not declare (unless it says `x-kubernetes-preserve-unknown-fields`),
    where JSON Schema, which ignores the `x-kubernetes-*` keywords, would let it through.
    """
    closed = deepcopy(schema)
    pending = [closed]
    while pending:
        node = pending.pop()
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for value in node.values():
            if isinstance(value, dict):
                pending.append(value)
            elif isinstance(value, list):
                pending.extend(v for v in value if isinstance(v, dict))
    return closed


def _crd_errors(resource: Resource) -> list[str]:
    """What the API server would say about an operator object, as `PATH: message` lines."""
    schema = _crd_schemas().get((resource["apiVersion"], resource["kind"]))
    if schema is None:
        return [f"{resource['apiVersion']} {resource['kind']} is no served CRD version"]
    # The CRD's OpenAPI 3.0 schemas are JSON Schema draft 4 with a few more keywords.
    validator = jsonschema.Draft4Validator(schema)
    return [
        f"{'.'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(resource)
    ]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_prometheus_operator_objects_validate_against_their_crds(layout: str) -> None:
    """ServiceMonitor and PrometheusRule are valid for the operator's published CRD schemas, with
    no field those schemas do not declare."""
    errors = [
        f"{resource['kind']}: {error}"
        for resource in _rendered(layout)
        if resource["kind"] in CRD_KINDS
        for error in _crd_errors(resource)
    ]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_prometheus_operator_objects_make_sense(layout: str) -> None:
    """Alert names are unique and the scrape timeout fits in the interval (Prometheus refuses a
    scrape configuration whose timeout is longer)."""
    monitor = _one(layout, "ServiceMonitor")
    for endpoint in monitor["spec"]["endpoints"]:
        assert _seconds(endpoint["scrapeTimeout"]) <= _seconds(endpoint["interval"])
    rule = _one(layout, "PrometheusRule")
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert len(alerts) == len(set(alerts)), alerts


def _endpoint(monitor: Resource) -> dict[str, Any]:
    endpoint: dict[str, Any] = monitor["spec"]["endpoints"][0]
    return endpoint


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        pytest.param(
            lambda m: _endpoint(m).update(interval=30),
            "spec.endpoints.0.interval: 30 is not of type 'string'",
            id="an interval given as a number",
        ),
        pytest.param(
            lambda m: _endpoint(m).update(interval="30"),
            "spec.endpoints.0.interval: '30' does not match",
            id="an interval without its unit",
        ),
        pytest.param(
            lambda m: _endpoint(m).update(scrapeTimout=_endpoint(m).pop("scrapeTimeout")),
            "spec.endpoints.0: Additional properties are not allowed ('scrapeTimout'",
            id="a misspelt endpoint field",
        ),
        pytest.param(
            lambda m: m["spec"].update(endpionts=m["spec"].pop("endpoints")),
            "spec: 'endpoints' is a required property",
            id="a misspelt required field",
        ),
        pytest.param(
            lambda m: m.update(apiVersion="monitoring.coreos.com/v2"),
            "is no served CRD version",
            id="a version the CRD does not serve",
        ),
    ],
)
def test_crd_validation_rejects_a_broken_service_monitor(
    break_it: Callable[[Resource], None], message: str
) -> None:
    """The CRD validation above can fail: the shipped ServiceMonitor passes it, and each of these
    mistakes in it is reported where it is."""
    monitor = yaml.safe_load((KUBERNETES / "base" / "servicemonitor.yaml").read_text())
    assert _crd_errors(monitor) == []
    break_it(monitor)
    errors = _crd_errors(monitor)
    assert any(message in error for error in errors), errors


def test_crd_validation_rejects_a_rule_without_an_expression() -> None:
    """A PrometheusRule whose alert has no `expr` breaks the CRD's required fields."""
    rule = yaml.safe_load((KUBERNETES / "base" / "prometheusrule.yaml").read_text())
    assert _crd_errors(rule) == []
    rules = rule["spec"]["groups"][0]["rules"]
    del rules[-1]["expr"]
    last = len(rules) - 1
    assert _crd_errors(rule) == [f"spec.groups.0.rules.{last}: 'expr' is a required property"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_prometheus_rule_carries_the_promtool_tested_rules(layout: str) -> None:
    """The PrometheusRule's groups are exactly deploy/prometheus/scopegate.rules.yml's, whose
    alerts promtool unit-tests: the cluster runs the rules that were tested."""
    tested = yaml.safe_load(RULES_FILE.read_text())["groups"]
    assert _one(layout, "PrometheusRule")["spec"]["groups"] == tested


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(("deployment", "writable_path"), [(GATEWAY, "/tmp"), (REDIS, "/data")])
def test_pods_are_locked_down(layout: str, deployment: str, writable_path: str) -> None:
    """Non-root, read-only root file system, no privilege escalation, no capabilities, the
    default seccomp profile, no service account token; one emptyDir the only writable mount
    (scopegate's /tmp, Redis's working directory /data)."""
    pod = _pod(layout, deployment)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    context = _container(layout, deployment)["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "privileged" not in context
    volumes = {v["name"]: v for v in pod["volumes"]}
    writable = {
        m["mountPath"]: volumes[m["name"]]
        for m in _container(layout, deployment)["volumeMounts"]
        if not m.get("readOnly")
    }
    assert set(writable) == {writable_path}
    assert "emptyDir" in writable[writable_path]


def _options(args: list[str]) -> dict[str, str]:
    """redis-server's `--name value` arguments."""
    assert args[0] == "redis-server"
    return dict(zip(args[1::2], args[2::2], strict=True))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_redis_is_the_official_image_and_persists_nothing(layout: str) -> None:
    """The official `redis` image at a pinned version; no snapshots, no append-only file, a
    memory ceiling below the container's limit; probes ask `redis-cli ping`."""
    container = _container(layout, REDIS)
    image, _, tag = container["image"].rpartition(":")
    assert image in {"redis", "docker.io/library/redis"}, container["image"]
    assert re.fullmatch(r"\d+\.\d+\.\d+-alpine", tag), "pinned to a release, never a moving tag"
    options = _options(container["args"])
    assert options["--save"] == "" and options["--appendonly"] == "no"
    assert "--port" not in options, "the image's port, 6379"
    maxmemory = re.fullmatch(r"(\d+)mb", options["--maxmemory"])
    assert maxmemory, options["--maxmemory"]
    assert int(maxmemory.group(1)) * 2**20 < _memory(container["resources"]["limits"]["memory"])
    assert options["--maxmemory-policy"] == "allkeys-lru"
    assert _container_port(container, "redis") == 6379
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["exec"]["command"] == ["redis-cli", "ping"], probe


@pytest.mark.parametrize("layout", LAYOUTS)
def test_rate_limits_count_in_the_redis_service(layout: str) -> None:
    """The configuration's `rate_limits.store` names the Redis Service and its port, and that
    Service selects the Redis pods (not scopegate's) on the port Redis listens on."""
    _, text = _config_text(layout)
    store = urlsplit(yaml.safe_load(text)["rate_limits"]["store"])
    service = _one(layout, "Service", REDIS)
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert store.scheme == "redis"
    assert store.hostname == service["metadata"]["name"]
    assert store.port == ports["redis"]["port"]
    assert ports["redis"]["targetPort"] == "redis"
    assert _container_port(_container(layout, REDIS), "redis") == 6379
    selector = service["spec"]["selector"].items()
    assert selector <= _pod_labels(layout, REDIS).items()
    assert not selector <= _pod_labels(layout, GATEWAY).items()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_only_scopegate_pods_reach_redis(layout: str) -> None:
    """Redis has no password: its NetworkPolicy admits scopegate's pods of the same namespace,
    on the Redis port only, and nothing else."""
    policy = _one(layout, "NetworkPolicy", REDIS)
    assert (
        policy["spec"]["podSelector"]["matchLabels"].items() <= _pod_labels(layout, REDIS).items()
    )
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    assert set(peer) == {"podSelector"}, "no namespaceSelector, no ipBlock: this namespace only"
    admitted = peer["podSelector"]["matchLabels"].items()
    assert admitted <= _pod_labels(layout, GATEWAY).items()
    assert not admitted <= _pod_labels(layout, REDIS).items()
    assert rule["ports"] == [{"port": "redis", "protocol": "TCP"}]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_gateway_and_redis_select_only_their_own_pods(layout: str) -> None:
    """scopegate's Service, disruption budget, NetworkPolicy, spread constraint and
    ServiceMonitor do not take in Redis, and Redis's Deployment does not take in scopegate."""
    redis_labels = _pod_labels(layout, REDIS).items()
    selectors = {
        "Deployment": _one(layout, "Deployment")["spec"]["selector"]["matchLabels"],
        "Service": _one(layout, "Service")["spec"]["selector"],
        "PodDisruptionBudget": _one(layout, "PodDisruptionBudget")["spec"]["selector"][
            "matchLabels"
        ],
        "NetworkPolicy": _one(layout, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"],
    }
    for constraint in _pod(layout)["topologySpreadConstraints"]:
        selectors["topologySpreadConstraints"] = constraint["labelSelector"]["matchLabels"]
    for what, selector in selectors.items():
        assert not selector.items() <= redis_labels, f"scopegate's {what} selects Redis"
    monitor = _one(layout, "ServiceMonitor")["spec"]["selector"]["matchLabels"]
    assert not monitor.items() <= _one(layout, "Service", REDIS)["metadata"]["labels"].items()
    redis_selector = _one(layout, "Deployment", REDIS)["spec"]["selector"]["matchLabels"]
    assert not redis_selector.items() <= _pod_labels(layout, GATEWAY).items()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_probes_use_the_admin_port_scopegate_listens_on(layout: str) -> None:
    """Readiness asks /readyz and liveness /healthz, in plain HTTP (no `scheme`), on the
    container port named `admin`, which is the port of the configuration's admin_listen; `http`,
    or `https` with `tls:`, is its listen port."""
    container = _container(layout)
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        assert container[probe]["httpGet"] == {"path": path, "port": "admin"}, probe
    config = _config(layout)
    assert _container_port(container, "admin") == _port_of(config["admin_listen"]) == 9100
    public = _container_port(container, _public_port_name(layout))
    assert public == _port_of(config["listen"]) == 8080
    assert {p["name"] for p in container["ports"]} == {_public_port_name(layout), "admin"}
    # The kubelet and Prometheus come from outside the pod: loopback would fail every probe.
    assert config["admin_listen"].startswith("0.0.0.0:")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_service_exposes_the_public_and_admin_ports(layout: str) -> None:
    """The Service maps 80 (`http`) or, with TLS, 443 (`https`, `appProtocol: https`) to the
    public port and 9100 (`admin`) to the admin port, and selects the Deployment's pods."""
    service = _one(layout, "Service")
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    public = _public_port_name(layout)
    assert ports == {public: (443 if public == "https" else 80, public), "admin": (9100, "admin")}
    protocols = {p["name"]: p.get("appProtocol") for p in service["spec"]["ports"]}
    assert protocols == {public: "https" if public == "https" else None, "admin": None}
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
@pytest.mark.parametrize("deployment", [GATEWAY, REDIS])
def test_resources_are_requested_and_limited(layout: str, deployment: str) -> None:
    """CPU and memory have requests (what the autoscaler measures against) and limits at least as
    large."""
    resources = _container(layout, deployment)["resources"]
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
    """The ConfigMap's file, with the container's environment (and with `tls:`, a throw-away
    certificate where the Secret is mounted), is one `scopegate check` accepts without warnings:
    a pod would load it."""
    key, text = _config_text(layout)
    if "tls" in _config(layout):
        text = _with_a_throwaway_certificate(layout, text, tmp_path / "tls")
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


def _with_a_throwaway_certificate(layout: str, text: str, directory: Path) -> str:
    """The configuration `text` with the TLS Secret's mount path moved to `directory`, which now
    holds what the kubelet would put in the mount: a certificate and its key, under the keys of a
    kubernetes.io/tls Secret."""
    mount, _ = _tls_mount(layout)
    directory.mkdir()
    files = TestAuthority().issue_server(directory, "scopegate.scopegate.svc")
    files.cert.rename(directory / "tls.crt")
    files.key.rename(directory / "tls.key")
    moved = text.replace(mount["mountPath"] + "/", f"{directory}/")
    tls = yaml.safe_load(moved)["tls"]
    assert (tls["cert"], tls["key"]) == (str(directory / "tls.crt"), str(directory / "tls.key"))
    return moved


@pytest.mark.parametrize("layout", LAYOUTS)
def test_tls_is_on_in_the_tls_layouts_only(layout: str) -> None:
    """The example overlay serves HTTPS; the base, which needs no Secret to apply, plain HTTP."""
    assert ("tls" in _config(layout)) == (layout in TLS_LAYOUTS)


@pytest.mark.parametrize("layout", TLS_LAYOUTS)
def test_tls_files_are_a_read_only_secret_mount(layout: str) -> None:
    """`tls.cert` and `tls.key` are the keys tls.crt and tls.key of a kubernetes.io/tls Secret,
    mounted whole and read-only where the configuration looks for them (no subPath: a renewed
    Secret reaches the files in place, for the next SIGHUP), readable by scopegate's group and
    no one else; the Secret is referenced, never rendered, so no private key is in the
    repository."""
    tls = _config(layout)["tls"]
    mount, volume = _tls_mount(layout)
    assert tls["cert"] == f"{mount['mountPath']}/tls.crt"
    assert tls["key"] == f"{mount['mountPath']}/tls.key"
    assert mount.get("readOnly") is True
    assert "subPath" not in mount and "subPathExpr" not in mount
    assert mount["mountPath"] != CONFIG_DIR
    secret = volume["secret"]
    assert set(volume) == {"name", "secret"}
    assert "items" not in secret, "the Secret's own key names, as the configuration uses them"
    assert secret.get("optional") is not True, "no pod starts without its certificate"
    mode = secret["defaultMode"]
    assert mode & 0o007 == 0 and mode & 0o040, f"{mode:o}: readable by the group, not by others"
    pod = _pod(layout)
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    assert not [r for r in _rendered(layout) if r["kind"] == "Secret"]


def _readme_certificate() -> dict[str, Any]:
    """The cert-manager Certificate of the README's YAML examples."""
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), re.DOTALL)
    found = [
        document
        for block in blocks
        for document in yaml.safe_load_all(block)
        if isinstance(document, dict) and document.get("kind") == "Certificate"
    ]
    assert len(found) == 1, f"the README shows {len(found)} Certificate objects"
    return found[0]


@pytest.mark.parametrize("layout", TLS_LAYOUTS)
def test_readme_certificate_makes_the_mounted_secret(layout: str) -> None:
    """The cert-manager Certificate the README shows writes the Secret that the overlay mounts,
    in the overlay's namespace, for the Service's cluster name among others, with a new key at
    each renewal."""
    certificate = _readme_certificate()
    _, volume = _tls_mount(layout)
    namespace = _one(layout, "Deployment")["metadata"]["namespace"]
    assert certificate["apiVersion"] == "cert-manager.io/v1"
    assert certificate["metadata"]["namespace"] == namespace
    spec = certificate["spec"]
    assert spec["secretName"] == volume["secret"]["secretName"]
    service = _one(layout, "Service")["metadata"]["name"]
    assert f"{service}.{namespace}.svc" in spec["dnsNames"]
    assert spec["privateKey"]["rotationPolicy"] == "Always"
    assert {"name", "kind"} <= set(spec["issuerRef"])


def test_a_configuration_change_rolls_the_pods(tmp_path: Path) -> None:
    """Editing the overlay's scopegate.yaml renames its ConfigMap and the Deployment's volume
    follows: `kubectl apply` then rolls the pods. The same file always gives the same name."""
    copy = tmp_path / "kubernetes"
    shutil.copytree(KUBERNETES, copy)

    def mounted(layout: str) -> str:
        resources = kustomize(copy / layout)
        deployment = next(
            r for r in resources if r["kind"] == "Deployment" and r["metadata"]["name"] == GATEWAY
        )
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
    public = _public_port_name(layout)
    assert set(by_port) == {public, "admin"}
    assert by_port[public] == [None]
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


def test_rendering_is_the_pinned_kubectl() -> None:
    """The kubectl that renders is the one the dev extra pins, whatever else is on PATH."""
    result = subprocess.run(
        [str(kubectl()), "version", "--client", "--output=json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    version = json.loads(result.stdout)["clientVersion"]["gitVersion"]
    assert version == f"v{metadata.version(DISTRIBUTION)}"


def test_a_kustomization_kubectl_refuses_fails_the_render(tmp_path: Path) -> None:
    """kubectl's refusal reaches the test as an error, with its message, not as no objects."""
    (tmp_path / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    with pytest.raises(KustomizeError, match=r"missing\.yaml"):
        kustomize(tmp_path)
