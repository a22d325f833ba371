"""The auditor page over real HTTP (uvicorn on loopback), on a real store.

Authentication is Airflow's: inside the API server the page checks the UI's JWT (tested with the
running stack). Here the app is built with an allow-all user so the content can be checked.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests
import uvicorn
from sqlalchemy import text

from gdpr_erasure.auditor.app import create_app
from gdpr_erasure.store import ComplianceStore


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def auditor(tmp_path):
    store = ComplianceStore.from_url(f"sqlite:///{tmp_path / 'compliance.db'}")
    store.init_db()
    for n in range(3):
        store.append_audit(
            f"req-{n}",
            {
                "outcome": "completed",
                "received_at": "2026-11-01T10:00:00+00:00",
                "completed_at": f"2026-11-0{n + 2}T10:00:00+00:00",
                "subject": {"identifiers_hash": "cd" * 32},
                "stripe": {"customer_ids": [f"cus_auditor{n}"], "method": "delete"},
                "segment": {"regulation_id": f"reg{n}", "proof": {"status": "FINISHED"}},
                "twilio": {"memory_profile_ids": [], "history_deleted": {"messages": n, "calls": 0}},
            },
        )
    port = _free_port()
    app = create_app(store_factory=lambda: store, user_dependency=lambda: "auditor")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", store
    server.should_exit = True
    thread.join(5)


def test_page_lists_records_and_the_chain_status(auditor):
    url, _ = auditor
    page = requests.get(f"{url}/", timeout=10)
    assert page.status_code == 200
    assert "Audit chain intact: 3 record(s)" in page.text
    for n in range(3):
        assert f"cus_auditor{n}" in page.text
        assert f"reg{n}" in page.text


def test_api_returns_records_and_the_summary(auditor):
    url, _ = auditor
    body = requests.get(f"{url}/api/records", timeout=10).json()
    assert [r["request_id"] for r in body["records"]] == ["req-0", "req-1", "req-2"]
    assert body["summary"]["completed"] == 3
    assert body["summary"]["max_time_to_complete_hours"] == 72.0
    later = requests.get(f"{url}/api/records", params={"since": "2100-01-01"}, timeout=10).json()
    assert later["records"] == []


def test_a_broken_chain_is_shown_as_broken(auditor):
    url, store = auditor
    with store.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER audit_log_no_update"))
        conn.execute(text("UPDATE audit_log SET record = replace(record, 'reg1', 'regX') WHERE seq = 2"))
    page = requests.get(f"{url}/", timeout=10)
    assert "Audit chain BROKEN" in page.text


def test_without_an_airflow_session_the_page_is_refused(tmp_path):
    """The real dependency: no token, no page (inside the API server it checks the UI's JWT)."""
    from fastapi.testclient import TestClient

    app = create_app(store_factory=lambda: pytest.fail("the store must not be touched"))
    response = TestClient(app).get("/")
    assert response.status_code == 401
