"""Store fixtures: every store test runs on SQLite and, when ``GDPR_TEST_PG_URL`` is set, on
PostgreSQL too. ``.ci/run`` always sets it, so in CI an unreachable server is an error, not a skip.
"""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text

from gdpr_erasure.store import ComplianceStore
from gdpr_erasure.store.engine import create_store_engine

PG_URL = os.environ.get("GDPR_TEST_PG_URL")


def _backends():
    yield pytest.param("sqlite", id="sqlite")
    yield pytest.param(
        "postgresql",
        id="postgresql",
        marks=[
            pytest.mark.postgres,
            pytest.mark.skipif(not PG_URL, reason="GDPR_TEST_PG_URL not set (CI sets it)"),
        ],
    )


@pytest.fixture(params=list(_backends()))
def store_url(request, tmp_path):
    """A URL to an empty database on the parametrised backend, isolated per test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'compliance.db'}"
        return
    # One throwaway schema per test, selected with search_path, so tests never see each other.
    schema = f"gdpr_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def store(store_url):
    store = ComplianceStore(create_store_engine(store_url))
    store.init_db()
    yield store
    store.dispose()
