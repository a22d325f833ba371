"""Fixtures for running the erasure DAG against the sandbox and a real compliance store."""

from __future__ import annotations

import collections
import json
import runpy

import pytest

from devstack.localstack import person_identifiers
from gdpr_erasure.receipts import generate_signing_key
from gdpr_erasure.store import ComplianceStore

DAG_FILE = "dags/gdpr_erasure_dag.py"


@pytest.fixture
def pipeline(request, airflow_db, api_connections, sandbox, tmp_path, monkeypatch):
    """A fresh compliance store, fast sensor polling, and the DAG loaded with those settings."""
    url = f"sqlite:///{tmp_path / 'compliance.db'}"
    monkeypatch.setenv("GDPR_COMPLIANCE_DB_URL", url)
    monkeypatch.setenv("GDPR_ERASURE_POLL_SECONDS", "0.2")
    # The ledger's signing key and witness: every run signs and publishes tree heads.
    _, pem = generate_signing_key("ledger-test")
    monkeypatch.setenv(
        "AIRFLOW_CONN_GDPR_LEDGER_KEY",
        json.dumps({"conn_type": "generic", "login": "ledger-test", "password": pem}),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_GDPR_LEDGER_WITNESS",
        json.dumps({"conn_type": "generic", "extra": {"uri": f"file://{tmp_path / 'witness'}"}}),
    )
    for name, value in getattr(request, "param", {}).items():  # per-test DAG settings
        monkeypatch.setenv(name, value)
    store = ComplianceStore.from_url(url)
    store.init_db()
    dag = runpy.run_path(DAG_FILE)["dag"]
    yield Pipeline(dag, store, sandbox)
    store.dispose()


class Pipeline:
    def __init__(self, dag, store, sandbox):
        self.dag, self.store, self.sandbox = dag, store, sandbox

    def submit(self, *keys: str) -> list[str]:
        return [
            self.store.submit(
                f"req-{key}", person_identifiers(self.sandbox.person(key)), source="test"
            ).request.id
            for key in keys
        ]

    def run(self, **conf):
        return self.dag.test(run_conf=conf or None)

    def audit(self) -> dict[str, dict]:
        return {e.request_id: e.record for e in self.store.audit_entries()}

    def side_effects(self) -> collections.Counter:
        """Successful writes the sandbox served, by (method, route): what happened at the providers."""
        return collections.Counter(
            (r["method"], r["route"])
            for r in self.sandbox.requests_log()
            if r["method"] in ("POST", "DELETE")
            and 200 <= r["status"] < 300
            and not r.get("idempotent_replay")
        )
