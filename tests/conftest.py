"""Fixtures shared by every test module."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from hypothesis import settings

# No per-example deadline: the machine is shared and a loaded moment is not a bug (the properties still run).
settings.register_profile("tether", deadline=None)
settings.load_profile("tether")

pytest_plugins = ["sandbox_fixtures", "upstream_fixtures", "oauth_fixtures", "store_fixtures", "webhook_fixtures"]


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Undo the handlers and levels the CLI's logging set-up installs."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in ("tether", "httpx2")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, saved in levels.items():
        logging.getLogger(name).setLevel(saved)


@pytest.fixture(autouse=True)
def _own_folder(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run each test in a folder of its own: a hub made without a base folder keeps its store (and the call
    records it writes by default) in ``./tether.db``, which must not land in the checkout."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
