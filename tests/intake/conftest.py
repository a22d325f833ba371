"""Intake fixtures: the intake app served by uvicorn on 127.0.0.1 in a thread, on SQLite and (when
``GDPR_TEST_PG_URL`` is set, as in CI) PostgreSQL; one server per backend, the intake table
emptied before each test.

The store-URL fixture repeats the pattern of ``tests/store/conftest.py`` (a throwaway schema on
PostgreSQL, selected with ``search_path``).
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
from gdpr_erasure.store import ComplianceStore, schema

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


@pytest.fixture(scope="session", params=list(_backends()))
def intake_db_url(request, tmp_path_factory) -> Iterator[str]:
    """A compliance store on the parametrised backend, initialised, for the whole session."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('intake') / 'compliance.db'}"
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


@pytest.fixture(scope="session")
def intake_server(intake_db_url) -> Iterator[tuple[str, ComplianceStore]]:
    """The intake app under uvicorn on 127.0.0.1, one per backend; secrets are re-read on every
    call (TTL 0) so a test can rotate them through the environment."""
    app = create_app(IntakeSettings(db_url=intake_db_url, secrets_ttl_seconds=0))
    server = ThreadedServer(app).start()
    store = ComplianceStore.from_url(intake_db_url)
    yield server.url, store
    server.stop()
    app.state.service.dispose()
    store.dispose()


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
        return count_rows(self.store)

    def log_text(self) -> str:
        return "\n".join(record.getMessage() for record in self.caplog.records)


@pytest.fixture
def intake(intake_server, intake_db_url, intake_connection, caplog) -> Intake:
    """The running intake with an empty intake table, its log captured for this test."""
    url, store = intake_server
    with store.engine.begin() as conn:
        conn.execute(schema.erasure_steps.delete())
        conn.execute(schema.erasure_requests.delete())
    caplog.set_level(logging.INFO)
    return Intake(url, intake_db_url, store, caplog)
