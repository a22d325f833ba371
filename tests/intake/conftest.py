"""Intake fixtures: the intake app served by uvicorn on 127.0.0.1 in a thread, on SQLite and (when
``GDPR_TEST_PG_URL`` is set, as in CI) PostgreSQL; one server per backend, the intake table
emptied before each test.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

# Airflow replaces the root log handlers when first imported; importing it now, at collection,
# keeps that from removing pytest's log capture in the middle of a test.
import airflow.sdk  # noqa: F401
import pytest
from intake_support import ThreadedServer, connection_json, count_rows
from store_backends import backends, throwaway_database
from support.intake import CONTROLLER_ID

from gdpr_erasure.intake.app import create_app
from gdpr_erasure.intake.settings import IntakeSettings
from gdpr_erasure.store import ComplianceStore, schema


@pytest.fixture(scope="session", params=backends())
def intake_db_url(request, tmp_path_factory) -> Iterator[str]:
    """A compliance store on the parametrised backend, initialised, for the whole session."""
    with throwaway_database(request.param, tmp_path_factory.mktemp("intake"), "gdpr_intake") as url:
        store = ComplianceStore.from_url(url)
        store.init_db()
        store.dispose()
        yield url


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
