import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The local data sets: $HARNESS_DATA_DIR, else ../shared/data next to the repository."""
    env = os.environ.get("HARNESS_DATA_DIR")
    candidates = ([Path(env)] if env else []) + [Path(__file__).resolve().parents[1].parent / "shared" / "data"]
    for path in candidates:
        if path.is_dir():
            return path
    pytest.skip(f"no local data: set HARNESS_DATA_DIR (tried {', '.join(map(str, candidates))})")
