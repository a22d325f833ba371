"""Legal-hold fixtures: a store on each backend (as tests/store) and the identifier hash key."""

from __future__ import annotations

import pytest
from store_backends import backends, throwaway_database

from gdpr_erasure.hashing import load_hash_key
from gdpr_erasure.store import ComplianceStore
from gdpr_erasure.store.engine import create_store_engine


@pytest.fixture(params=backends())
def store(request, tmp_path):
    with throwaway_database(request.param, tmp_path) as url:
        store = ComplianceStore(create_store_engine(url))
        store.init_db()
        yield store
        store.dispose()


@pytest.fixture
def key():
    """The test session's key (tests/airflow_support.py puts it in AIRFLOW_CONN_GDPR_HASH_KEY)."""
    return load_hash_key()
