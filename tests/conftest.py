import os
from pathlib import Path

import pytest

from rewards.base import REWARDS, register_reward


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The local data sets: $HARNESS_DATA_DIR, else ../shared/data next to the repository."""
    env = os.environ.get("HARNESS_DATA_DIR")
    candidates = ([Path(env)] if env else []) + [Path(__file__).resolve().parents[1].parent / "shared" / "data"]
    for path in candidates:
        if path.is_dir():
            return path
    pytest.skip(f"no local data: set HARNESS_DATA_DIR (tried {', '.join(map(str, candidates))})")


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    """Tokenised data cached once per test session (or in $HARNESS_CACHE), never in the user's cache."""
    if "HARNESS_CACHE" not in os.environ:
        monkeypatch.setenv("HARNESS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def temporary_reward():
    """Registers test-only strategies and removes them afterwards."""
    added = []

    def add(name, cls):
        register_reward(name)(cls)
        added.append(name)

    yield add
    for name in added:
        REWARDS.pop(name, None)
