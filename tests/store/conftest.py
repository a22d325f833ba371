"""Store fixtures: every store test runs on SQLite and, when ``GDPR_TEST_PG_URL`` is set, on
PostgreSQL too. ``.ci/run`` always sets it, so in CI an unreachable server is an error, not a skip.
"""

from __future__ import annotations

import pytest
from store_backends import backends, throwaway_database

from gdpr_erasure.store import ComplianceStore
from gdpr_erasure.store.engine import create_store_engine


@pytest.fixture(params=backends())
def store_url(request, tmp_path):
    """A URL to an empty database on the parametrised backend, isolated per test."""
    with throwaway_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def store(store_url):
    store = ComplianceStore(create_store_engine(store_url))
    store.init_db()
    yield store
    store.dispose()
