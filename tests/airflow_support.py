"""Pytest plugin (loaded from conftest.py): a private Airflow home for the test session, and
Airflow connections that point the hooks at the running sandbox.

The Airflow settings are environment variables set at import time, before any test module
imports Airflow, so the suite never touches a developer's ``~/airflow``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from sandbox.connections import sandbox_connections

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_HASH_KEY = "test-hash-key-0123456789abcdef0123456789abcdef"

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="gdpr-airflow-home-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "GDPR_COMPLIANCE_DB_URL": f"sqlite:///{_AIRFLOW_HOME / 'compliance.db'}",
        # The hash key lives only in a connection's password (a variable is refused).
        "AIRFLOW_CONN_GDPR_HASH_KEY": json.dumps(
            {"conn_type": "generic", "login": "test", "password": TEST_HASH_KEY}
        ),
    }
)


@pytest.fixture
def api_connections(sandbox, monkeypatch):
    """Point ``stripe_default``, ``twilio_default`` and ``segment_default`` at the sandbox."""
    connections = sandbox_connections(sandbox.base_url, sandbox.accounts())
    for conn_id, conn in connections.items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return connections


@pytest.fixture(scope="session")
def airflow_db():
    """Airflow's metadata DB for this session (SQLite), migrated once."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    return _AIRFLOW_HOME
