"""Ledger fixtures: a store on each backend (as tests/store), a signing key and a witness folder."""

from __future__ import annotations

import pytest
from store_backends import backends, initialised_store

from gdpr_erasure.ledger.witness import Witness
from gdpr_erasure.receipts import generate_signing_key


@pytest.fixture(params=backends())
def store(request, tmp_path):
    with initialised_store(request.param, tmp_path) as store:
        yield store


@pytest.fixture
def key():
    return generate_signing_key("ledger-test")


@pytest.fixture
def witness(tmp_path):
    return Witness(str(tmp_path / "witness"))
