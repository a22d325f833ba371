"""Ledger fixtures: a store on each backend (as tests/store), a signing key and a witness folder."""

from __future__ import annotations

import pytest
from store_backends import backends, throwaway_database

from gdpr_erasure.ledger.witness import Witness
from gdpr_erasure.receipts import generate_signing_key
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
    return generate_signing_key("ledger-test")


@pytest.fixture
def witness(tmp_path):
    return Witness(str(tmp_path / "witness"))
