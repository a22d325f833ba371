"""Intake fixtures: the intake app served by uvicorn on 127.0.0.1 in a thread, on a fresh
compliance store per test, on SQLite and (when ``GDPR_TEST_PG_URL`` is set, as in CI) PostgreSQL.

The store-URL fixture repeats the pattern of ``tests/store/conftest.py`` (one throwaway schema
per test on PostgreSQL, selected with ``search_path``).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

# Airflow replaces the root log handlers when first imported; importing it now, at collection,
# keeps that from removing pytest's log capture in the middle of a test.
import airflow.sdk  # noqa: F401
import pytest
from intake_support import ThreadedServer, connection_json, count_rows
from sqlalchemy import create_engine, text

from gdpr_erasure.intake.app import create_app
from gdpr_erasure.intake.settings import IntakeSettings
from gdpr_erasure.store import ComplianceStore

PG_URL = os.environ.get("GDPR_TEST_PG_URL")
CONTROLLER_ID = "acme-test"


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
def intake_db_url(request, tmp_path) -> Iterator[str]:
    """An empty compliance store on the parametrised backend, initialised."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'compliance.db'}"
        admin = schema = None
    else:
        schema = f"gdpr_intake_{uuid.uuid4().hex[:12]}"
        admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in PG_URL else "?"
        url = f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    store = ComplianceStore.from_url(url)
    store.init_db()
    store.dispose()
    yield url
    if admin is not None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def intake_connection(monkeypatch) -> None:
    """The ``gdpr_intake`` connection, through Airflow's environment-variable secrets backend."""
    monkeypatch.setenv("AIRFLOW_CONN_GDPR_INTAKE", connection_json(controller_id=CONTROLLER_ID))


@dataclass
class Intake:
    url: str
    db_url: str
    store: ComplianceStore
    caplog: pytest.LogCaptureFixture

    def rows(self) -> int:
        return count_rows(self.db_url)

    def log_text(self) -> str:
        return "\n".join(record.getMessage() for record in self.caplog.records)


@pytest.fixture
def intake(intake_db_url, intake_connection, caplog) -> Iterator[Intake]:
    """The intake app under uvicorn on 127.0.0.1, secrets re-read on every call (so a test can
    rotate them), its log captured."""
    caplog.set_level(logging.INFO)
    app = create_app(IntakeSettings(db_url=intake_db_url, secrets_ttl_seconds=0))
    server = ThreadedServer(app).start()
    store = ComplianceStore.from_url(intake_db_url)
    try:
        yield Intake(server.url, intake_db_url, store, caplog)
    finally:
        server.stop()
        app.state.service.dispose()
        store.dispose()
