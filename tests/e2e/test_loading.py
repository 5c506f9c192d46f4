"""Loading a configuration in a child process gives exactly what loading it in-process gives:
the same configuration, the same errors, and the in-process result when no child can run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scopegate.commands import loading
from scopegate.config.errors import ConfigErrors

GOOD = """
issuers:
  - issuer: https://id.example.com/
    audiences: [https://api.example.com]
upstreams:
  api: http://127.0.0.1:9
routes:
  - {path: /items, upstream: api, scopes: [read:items]}
  - {path: "/items/{id}", methods: [DELETE], upstream: api, scopes: [delete:items]}
"""


def test_a_child_loads_the_same_configuration(tmp_path: Path) -> None:
    path = tmp_path / "scopegate.yaml"
    path.write_text(GOOD)
    assert loading.load_compact(path) == loading.load_complete(path)


def test_routes_share_the_values_they_repeat_across_the_child_boundary(tmp_path: Path) -> None:
    """Thousands of routes name a few upstreams and scope rules: one object each, also once the
    configuration has come back from the child."""
    path = tmp_path / "scopegate.yaml"
    path.write_text(
        GOOD + "  - {path: /more, methods: [GET], upstream: api, scopes: [read:items]}\n"
    )
    for config in (loading.load_complete(path), loading.load_compact(path)):
        first, _, more = config.routes
        assert first.scopes is more.scopes
        assert first.upstream is more.upstream


def test_a_child_reports_the_same_errors(tmp_path: Path) -> None:
    path = tmp_path / "scopegate.yaml"
    path.write_text(
        GOOD.replace("upstream: api, scopes: [read", "upstream: nowhere, scopes: [read")
    )
    with pytest.raises(ConfigErrors) as in_process:
        loading.load_complete(path)
    with pytest.raises(ConfigErrors) as in_child:
        loading.load_compact(path)
    assert [str(e) for e in in_child.value.errors] == [str(e) for e in in_process.value.errors]
    assert "nowhere" in str(in_child.value)


async def test_a_reload_loads_the_bytes_it_was_given_not_the_file_now(tmp_path: Path) -> None:
    path = tmp_path / "scopegate.yaml"
    path.write_text("not: [valid")
    config = await loading.load_compact_async(path, GOOD.encode())
    assert [route.path for route in config.routes] == ["/items", "/items/{id}"]


def test_without_a_working_child_the_server_loads_it_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "scopegate.yaml"
    path.write_text(GOOD)
    monkeypatch.setattr(loading, "_CHILD", ["false"])
    assert loading.load_compact(path) == loading.load_complete(path)


def test_a_server_process_never_imports_the_parser_or_its_libraries() -> None:
    """What parses the file lives in the child: the serving process stays without it."""
    probe = (
        "import sys, scopegate.commands.serve, scopegate.commands.supervisor\n"
        "print(sorted(m for m in ('yaml', 'jsonschema', 'scopegate.config.load') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
