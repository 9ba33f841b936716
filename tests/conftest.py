"""Shared pytest fixtures (keep minimal)."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared reference-data directory (``$SCALARJAX_DATA`` or ``../shared/data``); skips if absent."""
    from scalarjax.data.io import data_dir

    path = data_dir()
    if not path.is_dir():
        pytest.skip(f"reference data not found at {path} (set SCALARJAX_DATA)")
    return path
