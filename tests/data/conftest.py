"""Fixtures of the data tests: the bad-data matrix as shards."""

from __future__ import annotations

import pytest

from tests.data.bad_data import Matrix, write_matrix


@pytest.fixture(scope="session")
def bad_data(tmp_path_factory: pytest.TempPathFactory) -> Matrix:
    """One shard per kind of damage (issue 11), with the counts the reader must report."""
    return write_matrix(tmp_path_factory.mktemp("bad-data"))
