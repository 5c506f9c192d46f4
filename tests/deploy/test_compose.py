"""deploy/compose starts what its README says: scopegate built from the repository's Dockerfile
and locked down as in Kubernetes, an echo upstream it can reach, the Redis its rate limits count
in, Prometheus scraping it with the promtool-tested rules, Grafana with the shipped dashboard;
every mounted file exists and every configuration is one its program accepts."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from scopegate.app import SHUTDOWN_GRACE
from scopegate.cli import main as scopegate_main
from tests.deploy.dockerfile import ROOT, env, instructions, stages
from tests.support.tools import require_tool

COMPOSE_DIR = ROOT / "deploy" / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
RULES = ROOT / "deploy" / "prometheus" / "scopegate.rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "scopegate-dashboard.json"


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def _service(name: str) -> dict[str, Any]:
    service: dict[str, Any] = _compose()["services"][name]
    return service


def _interpolate(value: str) -> str:
    """Compose's `${VAR:-default}` with the defaults (the file must work with no variable set)."""

    def default(match: re.Match[str]) -> str:
        assert match.group(2) is not None, f"${{{match.group(1)}}} has no default"
        return match.group(2)

    return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", default, value)


def _environment(name: str) -> dict[str, str]:
    raw = _service(name).get("environment", {})
    assert isinstance(raw, dict), "environment as a mapping"
    return {key: _interpolate(str(value)) for key, value in raw.items()}


def _mounts(name: str) -> dict[str, Path]:
    """Container path -> host path of each bind mount, checked read-only."""
    mounts = {}
    for volume in _service(name).get("volumes", []):
        source, target, mode = volume.split(":")
        assert source.startswith("."), f"{volume}: a bind mount relative to the compose file"
        assert mode == "ro", f"{volume}: configuration is mounted read-only"
        mounts[target] = (COMPOSE_DIR / source).resolve()
    return mounts


def _container_file(name: str, path: str) -> Path:
    """The host file a container sees at `path`, through a file or a directory mount."""
    for target, source in _mounts(name).items():
        if path == target:
            return source
        if path.startswith(target + "/"):
            return source / path[len(target) + 1 :]
    raise AssertionError(f"{name}: nothing is mounted at {path}")


def _published(name: str) -> dict[int, str]:
    """Container port -> host address it is published on ("" for every interface)."""
    published = {}
    for entry in _service(name).get("ports", []):
        *host, container = str(entry).split(":")
        address = host[0] if len(host) == 2 else ""
        published[int(container)] = address
    return published


def _scopegate_config() -> Path:
    dockerfile_env = env(stages(instructions())[-1])
    return _container_file("scopegate", dockerfile_env["SCOPEGATE_CONFIG"])


def test_services_and_pinned_images() -> None:
    """Five services; scopegate built from the repository's Dockerfile; every other image pinned
    to a version tag, never `latest`."""
    services = _compose()["services"]
    assert set(services) == {"scopegate", "upstream", "redis", "prometheus", "grafana"}
    build = services["scopegate"]["build"]
    context = (COMPOSE_DIR / build["context"]).resolve()
    assert context == ROOT.resolve()
    assert (context / build["dockerfile"]).is_file()
    for name, service in services.items():
        if name == "scopegate":
            continue
        image, _, tag = service["image"].rpartition(":")
        assert image and tag and tag != "latest", service["image"]


@pytest.mark.parametrize("service", ["scopegate", "prometheus", "grafana"])
def test_every_mounted_file_exists(service: str) -> None:
    """Each bind mount's source exists beside the compose file (a missing one would be created
    by Docker as an empty directory)."""
    mounts = _mounts(service)
    assert mounts
    for target, source in mounts.items():
        assert source.exists(), f"{service}: {source} for {target}"


def test_scopegate_runs_locked_down_with_the_image_config_path() -> None:
    """Read-only root with a /tmp tmpfs, no capabilities, no privilege gain, time to drain on
    stop, and the configuration at the path the image's SCOPEGATE_CONFIG names."""
    service = _service("scopegate")
    assert service["read_only"] is True
    assert "/tmp" in service["tmpfs"]
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    grace = re.fullmatch(r"(\d+)s", service["stop_grace_period"])
    assert grace and int(grace.group(1)) > SHUTDOWN_GRACE
    assert _scopegate_config().is_file()
    assert service["command"][0] == "serve"


def test_ports_match_the_configuration() -> None:
    """The published container ports are the configuration's listen and admin_listen ports; the
    admin port is published on loopback only."""
    config = yaml.safe_load(_scopegate_config().read_text())
    public = int(config["listen"].rpartition(":")[2])
    admin = int(config["admin_listen"].rpartition(":")[2])
    published = _published("scopegate")
    assert set(published) == {public, admin}
    assert published[public] == ""
    assert published[admin] == "127.0.0.1"
    assert config["admin_listen"].startswith("0.0.0.0:"), (
        "Prometheus scrapes from another container"
    )


def test_configuration_passes_scopegate_check(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the environment compose gives the container, `scopegate check` accepts the file
    without warnings."""
    for key, value in _environment("scopegate").items():
        monkeypatch.setenv(key, value)
    assert scopegate_main(["check", "-c", str(_scopegate_config())]) == 0
    out, err = capsys.readouterr()
    assert "valid" in out
    assert "warning" not in out + err


def test_upstreams_are_compose_services() -> None:
    """Every upstream URL names a compose service and the port that service listens on."""
    config = yaml.safe_load(_scopegate_config().read_text())
    services = _compose()["services"]
    for name, upstream in config["upstreams"].items():
        url = urlsplit(upstream["url"] if isinstance(upstream, dict) else upstream)
        host = url.hostname
        assert host is not None and host in services, f"upstream {name}: {host} is no service"
        listening = _environment(host).get("HTTP_PORT")
        assert listening is not None and url.port == int(listening), upstream


def test_rate_limits_count_in_the_redis_service() -> None:
    """The configuration's rate-limit store is the `redis` service, on the port Redis listens on
    (the image's default, 6379), and scopegate starts once that Redis answers."""
    config = yaml.safe_load(_scopegate_config().read_text())
    store = urlsplit(config["rate_limits"]["store"])
    assert store.scheme == "redis"
    assert store.hostname == "redis" and store.port == 6379
    image, _, _ = _service("redis")["image"].rpartition(":")
    assert image == "redis", "the official image"
    assert "--port" not in _service("redis")["command"]
    depends = _service("scopegate")["depends_on"]
    assert depends["redis"] == {"condition": "service_healthy"}
    healthcheck = _service("redis")["healthcheck"]["test"]
    assert healthcheck == ["CMD", "redis-cli", "ping"]


def test_redis_runs_locked_down_without_persistence() -> None:
    """Redis runs as its image's non-root user with a read-only root file system, no
    capabilities and no privilege gain; it persists nothing (its working directory is a tmpfs)
    and is published on no host port: only the compose network reaches it."""
    service = _service("redis")
    uid, _, gid = str(service["user"]).partition(":")
    assert int(uid) > 0 and int(gid) > 0
    assert service["read_only"] is True
    assert service["tmpfs"] == ["/data"]
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert "ports" not in service
    assert "volumes" not in service
    command = service["command"]
    assert command[0] == "redis-server"
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--save"] == "" and options["--appendonly"] == "no"


def test_prometheus_scrapes_scopegate_with_the_tested_rules() -> None:
    """Prometheus scrapes scopegate's admin port under the job the ScopegateDown alert watches,
    and loads deploy/prometheus/scopegate.rules.yml, the file promtool unit-tests."""
    config_path = _container_file("prometheus", "/etc/prometheus/prometheus.yml")
    config = yaml.safe_load(config_path.read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "scopegate"
    assert 'up{job="scopegate"}' in RULES.read_text()
    scopegate = yaml.safe_load(_scopegate_config().read_text())
    admin = scopegate["admin_listen"].rpartition(":")[2]
    assert job["static_configs"] == [{"targets": [f"scopegate:{admin}"]}]
    for rule_file in config["rule_files"]:
        assert _container_file("prometheus", f"/etc/prometheus/{rule_file}") == RULES.resolve()


def test_prometheus_configuration_is_valid(tmp_path: Path) -> None:
    """`promtool check config` accepts the configuration with its rule file laid out as in the
    container."""
    promtool = require_tool("promtool", "Debian package prometheus")
    for target, source in _mounts("prometheus").items():
        shutil.copy(source, tmp_path / Path(target).name)
    result = subprocess.run(
        [promtool, "check", "config", "prometheus.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisions_the_dashboard_on_prometheus() -> None:
    """Grafana's provider reads the directory where deploy/grafana/scopegate-dashboard.json is
    mounted, and its default datasource is the compose Prometheus."""
    mounts = _mounts("grafana")
    providers = yaml.safe_load(
        _container_file("grafana", "/etc/grafana/provisioning/dashboards/scopegate.yml").read_text()
    )["providers"]
    (provider,) = providers
    dashboards = [t for t, s in mounts.items() if s == DASHBOARD.resolve()]
    assert [str(Path(d).parent) for d in dashboards] == [provider["options"]["path"]]
    datasources = yaml.safe_load(
        _container_file(
            "grafana", "/etc/grafana/provisioning/datasources/scopegate.yml"
        ).read_text()
    )["datasources"]
    (datasource,) = datasources
    assert datasource["type"] == "prometheus" and datasource["isDefault"] is True
    url = urlsplit(datasource["url"])
    assert url.hostname == "prometheus"
    assert url.port in _published("prometheus")
