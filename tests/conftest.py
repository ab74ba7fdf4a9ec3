"""Shared fixtures."""

from __future__ import annotations

import pytest

from featurestore import FeatureStore


@pytest.fixture
def store(tmp_path) -> FeatureStore:
    """A fresh single-process store in a temporary folder."""
    return FeatureStore(tmp_path / "store", n_jobs=1, progress=False)
