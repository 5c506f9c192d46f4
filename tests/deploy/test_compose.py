"""deploy/compose starts what its README says: scopegate built from the repository's Dockerfile
and locked down as in Kubernetes, an echo upstream it can reach, the Redis its rate limits count
in, Prometheus scraping it with the promtool-tested rules, Grafana with the shipped dashboard;
every mounted file exists and every configuration is one its program accepts. The TLS variant
(docker-compose.tls.yml over docker-compose.yml) is checked the same way, merged as Compose
merges an override, with a throw-away certificate where its certs directory is mounted."""

from __future__ import annotations

import re
import shlex
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from cryptography import x509

from scopegate.app import SHUTDOWN_GRACE
from scopegate.cli import main as scopegate_main
from tests.deploy.dockerfile import ROOT, env, instructions, stages
from tests.support.certs import TestAuthority, load_certificate
from tests.support.tools import require_tool

COMPOSE_DIR = ROOT / "deploy" / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
TLS_OVERRIDE = COMPOSE_DIR / "docker-compose.tls.yml"
CERTS = COMPOSE_DIR / "certs"
README = COMPOSE_DIR / "README.md"
RULES = ROOT / "deploy" / "prometheus" / "scopegate.rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "scopegate-dashboard.json"
# Each variant is the files given to `docker compose -f`, in order.
VARIANTS = {"plain": (COMPOSE_FILE,), "tls": (COMPOSE_FILE, TLS_OVERRIDE)}
# The service keys an override may set: those whose merge _merge does as Compose does.
MERGED_KEYS = {"environment", "volumes"}


def _load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def _target(volume: str) -> str:
    return volume.split(":")[1]


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` over `base` as Compose merges them, for what an override here may say:
    `environment` merged by variable, `volumes` by their path in the container."""
    assert set(override) == {"services"}, f"an override of services only: {sorted(override)}"
    merged = {**base, "services": dict(base["services"])}
    for name, changes in override["services"].items():
        assert name in base["services"], f"the override adds a service, {name}"
        assert set(changes) <= MERGED_KEYS, f"{name}: {sorted(set(changes) - MERGED_KEYS)}"
        service = dict(base["services"][name])
        if "environment" in changes:
            service["environment"] = {**service.get("environment", {}), **changes["environment"]}
        if "volumes" in changes:
            volumes = {_target(v): v for v in service.get("volumes", [])}
            volumes.update({_target(v): v for v in changes["volumes"]})
            service["volumes"] = list(volumes.values())
        merged["services"][name] = service
    return merged


def _compose(variant: str = "plain") -> dict[str, Any]:
    first, *overrides = VARIANTS[variant]
    compose = _load(first)
    for override in overrides:
        compose = _merge(compose, _load(override))
    return compose


def _service(name: str, variant: str = "plain") -> dict[str, Any]:
    service: dict[str, Any] = _compose(variant)["services"][name]
    return service


def _interpolate(value: str) -> str:
    """Compose's `${VAR:-default}` with the defaults (the file must work with no variable set)."""

    def default(match: re.Match[str]) -> str:
        assert match.group(2) is not None, f"${{{match.group(1)}}} has no default"
        return match.group(2)

    return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", default, value)


def _environment(name: str, variant: str = "plain") -> dict[str, str]:
    raw = _service(name, variant).get("environment", {})
    assert isinstance(raw, dict), "environment as a mapping"
    return {key: _interpolate(str(value)) for key, value in raw.items()}


def _mounts(name: str, variant: str = "plain") -> dict[str, Path]:
    """Container path -> host path of each bind mount, checked read-only."""
    mounts = {}
    for volume in _service(name, variant).get("volumes", []):
        source, target, mode = [*volume.split(":"), ""][:3]
        assert source.startswith("."), f"{volume}: a bind mount relative to the compose file"
        assert mode == "ro", f"{volume}: configuration is mounted read-only"
        mounts[target] = (COMPOSE_DIR / source).resolve()
    return mounts


def _container_file(name: str, path: str, variant: str = "plain") -> Path:
    """The host file a container sees at `path`, through a file or a directory mount."""
    for target, source in _mounts(name, variant).items():
        if path == target:
            return source
        if path.startswith(target + "/"):
            return source / path[len(target) + 1 :]
    raise AssertionError(f"{name}: nothing is mounted at {path}")


def _published(name: str, variant: str = "plain") -> dict[int, str]:
    """Container port -> host address it is published on ("" for every interface)."""
    published = {}
    for entry in _service(name, variant).get("ports", []):
        *host, container = str(entry).split(":")
        address = host[0] if len(host) == 2 else ""
        published[int(container)] = address
    return published


def _config_path(variant: str = "plain") -> str:
    """Where scopegate reads its configuration in the container: the image's SCOPEGATE_CONFIG,
    unless the service's environment sets another."""
    dockerfile_env = env(stages(instructions())[-1])
    return _environment("scopegate", variant).get(
        "SCOPEGATE_CONFIG", dockerfile_env["SCOPEGATE_CONFIG"]
    )


def _scopegate_config(variant: str = "plain") -> Path:
    return _container_file("scopegate", _config_path(variant), variant)


def _config(variant: str = "plain") -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(_scopegate_config(variant).read_text())
    return config


@pytest.mark.parametrize("variant", VARIANTS)
def test_services_and_pinned_images(variant: str) -> None:
    """Five services; scopegate built from the repository's Dockerfile; every other image pinned
    to a version tag, never `latest`."""
    services = _compose(variant)["services"]
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


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("service", ["scopegate", "prometheus", "grafana"])
def test_every_mounted_file_exists(service: str, variant: str) -> None:
    """Each bind mount's source exists beside the compose file (a missing one would be created
    by Docker as an empty directory)."""
    mounts = _mounts(service, variant)
    assert mounts
    for target, source in mounts.items():
        assert source.exists(), f"{service}: {source} for {target}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_scopegate_runs_locked_down_with_a_mounted_config(variant: str) -> None:
    """Read-only root with a /tmp tmpfs, no capabilities, no privilege gain, time to drain on
    stop, and a mounted file at the path of SCOPEGATE_CONFIG: the image's in the plain variant,
    a file in the same mounted directory in the TLS variant."""
    service = _service("scopegate", variant)
    assert service["read_only"] is True
    assert "/tmp" in service["tmpfs"]
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    grace = re.fullmatch(r"(\d+)s", service["stop_grace_period"])
    assert grace and int(grace.group(1)) > SHUTDOWN_GRACE
    assert _scopegate_config(variant).is_file()
    assert service["command"][0] == "serve"
    plain = _config_path("plain")
    assert "SCOPEGATE_CONFIG" not in _environment("scopegate"), "the image's own path"
    assert _config_path(variant).rpartition("/")[0] == plain.rpartition("/")[0]


@pytest.mark.parametrize("variant", VARIANTS)
def test_ports_match_the_configuration(variant: str) -> None:
    """The published container ports are the configuration's listen and admin_listen ports; the
    admin port is published on loopback only."""
    config = _config(variant)
    public = int(config["listen"].rpartition(":")[2])
    admin = int(config["admin_listen"].rpartition(":")[2])
    published = _published("scopegate", variant)
    assert set(published) == {public, admin}
    assert published[public] == ""
    assert published[admin] == "127.0.0.1"
    assert config["admin_listen"].startswith("0.0.0.0:"), (
        "Prometheus scrapes from another container"
    )


def _tls_mount(variant: str) -> tuple[str, Path]:
    """The container path and host directory of the mount holding the TLS files."""
    tls = _config(variant)["tls"]
    directories = {tls["cert"].rpartition("/")[0], tls["key"].rpartition("/")[0]}
    assert len(directories) == 1, f"certificate and key in one directory: {tls}"
    (directory,) = directories
    mounts = _mounts("scopegate", variant)
    assert directory in mounts, f"{directory}, the directory of tls.cert and tls.key, is no mount"
    return directory, mounts[directory]


def _with_certificate_files(variant: str, directory: Path) -> Path:
    """A copy of the variant's configuration, in `directory`, whose `tls:` names the files
    `directory` holds rather than those of the certs mount (empty in the repository)."""
    text = _scopegate_config(variant).read_text()
    if "tls" in _config(variant):
        target, _ = _tls_mount(variant)
        text = text.replace(target + "/", f"{directory}/")
        tls = yaml.safe_load(text)["tls"]
        assert Path(tls["cert"]).parent == Path(tls["key"]).parent == directory
    path = directory / "scopegate.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("variant", VARIANTS)
def test_configuration_passes_scopegate_check(
    variant: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With the environment compose gives the container (and in the TLS variant a throw-away
    certificate for localhost where the certs are mounted), `scopegate check` accepts the file
    without warnings."""
    for key, value in _environment("scopegate", variant).items():
        monkeypatch.setenv(key, value)
    files = TestAuthority().issue_server(tmp_path, "localhost", "127.0.0.1")
    files.cert.rename(tmp_path / "tls.crt")
    files.key.rename(tmp_path / "tls.key")
    config = _with_certificate_files(variant, tmp_path)
    assert scopegate_main(["check", "-c", str(config)]) == 0
    out, err = capsys.readouterr()
    assert "valid" in out
    assert "warning" not in out + err


def test_tls_variant_is_the_plain_configuration_with_tls() -> None:
    """scopegate.tls.yaml is scopegate.yaml plus `tls:`, nothing else: the two variants route,
    limit and forward alike."""
    plain, tls = _config("plain"), _config("tls")
    assert _scopegate_config("tls") != _scopegate_config("plain")
    assert "tls" not in plain
    assert set(tls.pop("tls")) >= {"cert", "key"}
    assert tls == plain


def test_tls_files_come_from_the_certs_directory_mounted_read_only() -> None:
    """`tls.cert` and `tls.key` are tls.crt and tls.key of certs/, mounted read-only (checked by
    _mounts) as a directory, so that a pair written over the files is what SIGHUP reads, and
    not below another mount, where Docker cannot make its mount point in a read-only mount.
    Nothing in certs/ but its .gitignore, which keeps every key made there out of git."""
    tls = _config("tls")["tls"]
    target, source = _tls_mount("tls")
    assert (tls["cert"], tls["key"]) == (f"{target}/tls.crt", f"{target}/tls.key")
    assert source == CERTS.resolve() and source.is_dir()
    for other in _mounts("scopegate", "tls"):
        assert other == target or not target.startswith(other + "/"), f"{target} is in {other}"
    assert [p.name for p in CERTS.iterdir()] == [".gitignore"]
    ignored = [line for line in (CERTS / ".gitignore").read_text().splitlines() if line[:1] != "#"]
    assert ignored == ["*", "!.gitignore"]


def _readme_commands(containing: str) -> list[list[str]]:
    """The commands of the README's first `sh` block that has `containing`, split as sh would,
    comments and line continuations removed."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), re.DOTALL)
    block = next(b for b in blocks if containing in b)
    lines = block.replace("\\\n", " ").splitlines()
    return [command for command in (shlex.split(line, comments=True) for line in lines) if command]


def test_readme_makes_a_certificate_scopegate_accepts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's openssl and chmod commands, run from a repository root, leave in certs/ a
    certificate for localhost and 127.0.0.1 and a key the container's user (uid 10001, not the
    files' owner) can read, and the TLS variant's configuration loads them."""
    openssl = require_tool("openssl", "Debian package openssl")
    certs = tmp_path / CERTS.relative_to(ROOT)
    certs.mkdir(parents=True)
    commands = _readme_commands("openssl req")
    assert [c[0] for c in commands] == ["openssl", "chmod"]
    for command in commands:
        program = openssl if command[0] == "openssl" else shutil.which(command[0])
        assert program is not None
        result = subprocess.run(
            [program, *command[1:]],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"{shlex.join(command)}: {result.stderr}"
    assert sorted(p.name for p in certs.iterdir()) == ["tls.crt", "tls.key"]
    assert (certs / "tls.key").stat().st_mode & stat.S_IROTH
    certificate = load_certificate((certs / "tls.crt").read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    for key, value in _environment("scopegate", "tls").items():
        monkeypatch.setenv(key, value)
    assert scopegate_main(["check", "-c", str(_with_certificate_files("tls", certs))]) == 0
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
