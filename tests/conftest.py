"""Fixtures shared by every test module."""

pytest_plugins = ["sandbox_fixtures", "upstream_fixtures"]
