"""The attack suite runs against the same real gateway, upstream and JWKS as tests/e2e."""

from tests.e2e.conftest import _env  # noqa: F401 - the `env` fixture
