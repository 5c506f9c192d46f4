"""Real servers and helpers the tests run against (never mocks of them)."""
