"""Legal-hold fixtures: a store on each backend (as tests/store) and the identifier hash key."""

from __future__ import annotations

import pytest
from store_backends import backends, initialised_store

from gdpr_erasure.hashing import load_hash_key


@pytest.fixture(params=backends())
def store(request, tmp_path):
    with initialised_store(request.param, tmp_path) as store:
        yield store


@pytest.fixture
def key():
    """The test session's key (tests/airflow_support.py puts it in AIRFLOW_CONN_GDPR_HASH_KEY)."""
    return load_hash_key()
