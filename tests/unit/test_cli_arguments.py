"""Command-line parsing: defaults from the environment, as containers set them."""

from __future__ import annotations

import pytest

from scopegate.cli import build_parser, default_config_path


def test_workers_default_to_scopegate_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCOPEGATE_WORKERS", "3")
    assert build_parser().parse_args(["serve"]).workers == 3
    assert build_parser().parse_args(["serve", "--workers", "2"]).workers == 2


def test_a_bad_scopegate_workers_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCOPEGATE_WORKERS", "many")
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["serve"])
    assert caught.value.code == 2


def test_the_config_file_defaults_to_scopegate_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCOPEGATE_CONFIG", raising=False)
    assert default_config_path() == "scopegate.yaml"
    monkeypatch.setenv("SCOPEGATE_CONFIG", "/etc/scopegate/scopegate.yaml")
    assert default_config_path() == "/etc/scopegate/scopegate.yaml"
