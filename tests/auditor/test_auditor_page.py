"""The auditor page over real HTTP (uvicorn on loopback), on a real store.

Access is Airflow's: the page checks the UI's JWT and asks Airflow's auth manager whether the user
may read the audit. The content tests build the app with an allow-all user; the access tests serve
it next to Airflow's simple auth manager (its real login route, real JWTs, real revocation check
in Airflow's metadata DB), the way the API server mounts both.
"""

from __future__ import annotations

import csv
import io

import pytest
import requests
from auditor import auditor_support
from auditor.auditor_support import serve
from sqlalchemy import text

from gdpr_erasure.auditor.app import create_app
from gdpr_erasure.store import ComplianceStore


def _seeded_store(tmp_path) -> ComplianceStore:
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
    return store


@pytest.fixture
def auditor(tmp_path):
    store = _seeded_store(tmp_path)
    with serve(create_app(store_factory=lambda: store, user_dependency=lambda: "auditor")) as url:
        yield url, store


@pytest.fixture
def airflow_site(tmp_path, monkeypatch, airflow_db):
    """The auditor app next to Airflow's simple auth manager (auditor_support.airflow_site)."""
    store = _seeded_store(tmp_path)
    with auditor_support.airflow_site(tmp_path, monkeypatch, create_app(store_factory=lambda: store)) as site:
        yield site


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


def _get(url: str, path: str, token: str, *, cookie: bool = False, **params) -> requests.Response:
    if cookie:  # how the UI sends it: the _token cookie
        return requests.get(f"{url}{path}", cookies={"_token": token}, params=params, timeout=10)
    return requests.get(
        f"{url}{path}", headers={"Authorization": f"Bearer {token}"}, params=params, timeout=10
    )


@pytest.mark.parametrize("username", ["vera", "uma", "otto"])
def test_signed_in_users_without_the_audit_permission_are_refused(airflow_site, username):
    """A viewer (and a user or op) is signed in but not an auditor: 403 on the page, data and exports."""
    url, login, _ = airflow_site
    token = login(username)
    for path in ("/gdpr-audit/", "/gdpr-audit/api/records", "/gdpr-audit/export"):
        for cookie in (False, True):
            response = _get(url, path, token, cookie=cookie)
            assert response.status_code == 403, (path, response.text)
            detail = response.json()["detail"]
            assert f"{username} may not read the GDPR audit ledger" in detail
            assert "GDPR Audit" in detail
            assert "req-" not in response.text and "cus_auditor" not in response.text


@pytest.mark.parametrize("username", ["ada", "audrey"])
def test_the_admin_and_a_configured_auditor_get_the_page_data_and_exports(airflow_site, username):
    """The admin role passes; so does a viewer named in $GDPR_AUDITOR_USERS (an auditor who may
    read the ledger but, being a viewer in Airflow, may change nothing)."""
    url, login, _ = airflow_site
    token = login(username)
    page = _get(url, "/gdpr-audit/", token, cookie=True)
    assert page.status_code == 200
    assert "Audit chain intact: 3 record(s)" in page.text
    body = _get(url, "/gdpr-audit/api/records", token).json()
    assert [r["request_id"] for r in body["records"]] == ["req-0", "req-1", "req-2"]
    exported = _get(url, "/gdpr-audit/export", token, format="csv")
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    assert [row["request_id"] for row in csv.DictReader(io.StringIO(exported.text))] == [
        "req-0",
        "req-1",
        "req-2",
    ]
    as_json = _get(url, "/gdpr-audit/export", token, format="json", since="2100-01-01")
    assert as_json.json() == []


def test_a_role_can_be_named_an_auditor_role(airflow_site, monkeypatch):
    url, login, _ = airflow_site
    token = login("otto")
    assert _get(url, "/gdpr-audit/api/records", token).status_code == 403
    monkeypatch.setenv("GDPR_AUDITOR_ROLES", "op")
    assert _get(url, "/gdpr-audit/api/records", token).status_code == 200
    assert _get(url, "/gdpr-audit/api/records", login("vera")).status_code == 403


def test_a_revoked_or_forged_token_is_refused(airflow_site):
    url, login, auth_manager = airflow_site
    token = login("ada")
    assert _get(url, "/gdpr-audit/api/records", token).status_code == 200
    header, claims, signature = token.split(".")
    assert _get(url, "/gdpr-audit/api/records", f"{header}.{claims}.{signature[::-1]}").status_code == 401
    auth_manager.revoke_token(token)  # what signing out does
    assert _get(url, "/gdpr-audit/api/records", token).status_code == 401


def test_the_page_links_the_exports_of_the_shown_period(auditor):
    url, _ = auditor
    page = requests.get(f"{url}/", params={"since": "2026-11-01"}, timeout=10).text
    assert 'href="export?format=csv&amp;since=2026-11-01T00%3A00%3A00%2B00%3A00"' in page
    link = "export?format=csv&since=2026-11-01T00%3A00%3A00%2B00%3A00"
    rows = list(csv.DictReader(io.StringIO(requests.get(f"{url}/{link}", timeout=10).text)))
    assert len(rows) == 3
    assert requests.get(f"{url}/export", params={"format": "xml"}, timeout=10).status_code == 422
