"""The compliance-store backends every store-backed test runs on: SQLite always, PostgreSQL when
``GDPR_TEST_PG_URL`` is set. ``.ci/run`` always sets it, so in CI an unreachable server is an
error, not a skip. Each database is a throwaway: a SQLite file, or a PostgreSQL schema of its own
selected with ``search_path``, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

PG_URL = os.environ.get("GDPR_TEST_PG_URL")


def backends() -> list:
    """``params`` for a fixture parametrised over the backends."""
    return [
        pytest.param("sqlite", id="sqlite"),
        pytest.param(
            "postgresql",
            id="postgresql",
            marks=[
                pytest.mark.postgres,
                pytest.mark.skipif(not PG_URL, reason="GDPR_TEST_PG_URL not set (CI sets it)"),
            ],
        ),
    ]


@contextmanager
def throwaway_database(backend: str, directory: Path, prefix: str = "gdpr_test") -> Iterator[str]:
    """The URL of an empty database on ``backend``, removed when the block ends."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'compliance.db'}"
        return
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def initialised_store(backend: str, directory: Path):
    """A compliance store with its tables, on a throwaway database of ``backend``."""
    from gdpr_erasure.store import ComplianceStore
    from gdpr_erasure.store.engine import create_store_engine

    with throwaway_database(backend, directory) as url:
        store = ComplianceStore(create_store_engine(url))
        store.init_db()
        try:
            yield store
        finally:
            store.dispose()
