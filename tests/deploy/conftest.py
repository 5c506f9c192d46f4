"""One real Prometheus for the session, scraping scopegate's metrics (see tests/deploy/prometheus.py),
for the tests that evaluate the dashboard's queries and the alert rules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.deploy.prometheus import Prometheus, exposition, running, scopegate_metrics
from tests.support.tools import require_tool


@pytest.fixture(name="prometheus", scope="session")
def _prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = require_tool("prometheus", "Debian package prometheus")
    directory = tmp_path_factory.mktemp("prometheus")
    with exposition(scopegate_metrics()) as target, running(binary, target, directory) as server:
        yield server
