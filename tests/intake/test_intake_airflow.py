"""The intake mounted in a running Airflow API server (``airflow api-server``, plugin from
``plugins/``), with its signing secrets in a connection in Airflow's metadata DB, so a rotation is
done the way an operator would do it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from intake_support import (
    CUSTOMER,
    EMAIL,
    OLD_SECRET,
    PHONE,
    SECRET,
    assert_no_identifiers,
    count_rows,
    encode,
    free_port,
    get,
    native,
    opendsr,
    post,
    signed_headers,
    stop_process,
)
from sqlalchemy import create_engine, text

from gdpr_erasure.intake.signature import SIGNATURE_HEADER
from gdpr_erasure.store import ComplianceStore

START_TIMEOUT = 90.0
SECRETS_TTL = 1.0
PG_URL = os.environ.get("GDPR_TEST_PG_URL")


def set_connection(password: str, previous: list[str] | None = None) -> None:
    """Create or replace ``gdpr_intake`` in Airflow's metadata DB (what the UI or CLI does)."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    extra = {"previous_secrets": previous} if previous else {}
    with create_session() as session:
        session.execute(delete(Connection).where(Connection.conn_id == "gdpr_intake"))
        session.add(
            Connection(conn_id="gdpr_intake", conn_type="generic", password=password, extra=json.dumps(extra))
        )


@dataclass
class AirflowIntake:
    base: str  # the API server
    url: str  # the intake, mounted under /gdpr
    db_url: str
    log_path: Path

    def rows(self) -> int:
        return count_rows(self.db_url)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def _store_url(home: Path) -> tuple[str, str | None]:
    """PostgreSQL when available (as in production), else SQLite."""
    if not PG_URL:
        return f"sqlite:///{home / 'intake-compliance.db'}", None
    schema = f"gdpr_intake_af_{os.getpid()}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}", schema


@pytest.fixture(scope="module")
def airflow_intake(airflow_db, tmp_path_factory) -> Iterator[AirflowIntake]:
    home = tmp_path_factory.mktemp("api-server")
    db_url, schema = _store_url(home)
    store = ComplianceStore.from_url(db_url)
    store.init_db()
    store.dispose()
    set_connection(SECRET)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW_CONN_GDPR_INTAKE"}
    env |= {
        "GDPR_COMPLIANCE_DB_URL": db_url,
        "GDPR_INTAKE_SECRETS_TTL_SECONDS": str(SECRETS_TTL),
    }
    log_path = home / "api-server.log"
    command = [sys.executable, "-m", "airflow", "api-server", "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [*command, "--workers", "1"], stdout=log, stderr=subprocess.STDOUT, env=env
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        ready = False
        while time.monotonic() < deadline and process.poll() is None:
            try:
                # The intake answers itself (405 problem+json) once the plugin is mounted.
                probe = requests.get(f"{base}/gdpr/v1/requests", timeout=2)
                if probe.headers.get("content-type") == "application/problem+json":
                    ready = True
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        if not ready:
            stop_process(process)
            pytest.fail(
                f"the Airflow API server did not serve the intake within {START_TIMEOUT:.0f} s "
                f"(exit code {process.returncode}); its log:\n{log_path.read_text()[-6000:]}"
            )
        yield AirflowIntake(base, f"{base}/gdpr", db_url, log_path)
    finally:
        stop_process(process)
        if schema:
            admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


def test_mounted_intake_accepts_replays_and_reports_status(airflow_intake):
    first = post(airflow_intake.url, native("af-1", email=EMAIL, phone=PHONE, stripe_customer_id=CUSTOMER))
    again = post(airflow_intake.url, native("af-1", email=EMAIL, phone=PHONE, stripe_customer_id=CUSTOMER))
    status = get(airflow_intake.url, "af-1")

    assert first.status_code == 202, first.text
    assert first.headers["Location"] == "/gdpr/v1/requests/af-1"
    assert again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert status.status_code == 200
    assert status.json() == first.json()
    assert_no_identifiers(first.text + status.text, "the answers")
    assert airflow_intake.rows() == 1


def test_mounted_intake_speaks_opendsr(airflow_intake):
    accepted = post(airflow_intake.url, opendsr("af-dsr"))
    status = get(airflow_intake.url, "af-dsr")

    assert accepted.status_code == 202
    assert accepted.json()["subject_request_id"] == "af-dsr"
    assert accepted.json()["controller_id"] == "gdpr-erasure"  # the default: no extra set
    assert status.json()["request_status"] == "pending"


def test_airflow_does_not_authenticate_the_plugin_the_intake_does(airflow_intake):
    body = encode(native("af-unsigned"))
    before = airflow_intake.rows()

    unsigned = requests.post(
        f"{airflow_intake.url}/v1/requests",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    forged = requests.get(
        f"{airflow_intake.url}/v1/requests/af-1",
        headers={SIGNATURE_HEADER: f"t={int(time.time())},v1={'0' * 64}"},
    )
    stale = requests.post(
        f"{airflow_intake.url}/v1/requests",
        data=body,
        headers=signed_headers(body, timestamp=int(time.time()) - 600),
        timeout=10,
    )

    assert (unsigned.status_code, unsigned.json()["code"]) == (401, "missing_signature")
    assert (forged.status_code, forged.json()["code"]) == (401, "invalid_signature")
    assert (stale.status_code, stale.json()["code"]) == (401, "timestamp_outside_tolerance")
    assert airflow_intake.rows() == before


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b'{"request_id": ', "application/json", 400, "malformed_json"),
        (encode({"request_id": "af-x", "email": 5}), "application/json", 422, "invalid_type"),
        (encode({"request_id": "af-x", "email": EMAIL[:-4]}), "application/json", 422, "invalid_email"),
        (encode({"request_id": "af-x", "phone": PHONE[1:]}), "application/json", 422, "invalid_phone"),
        (
            encode({"request_id": "af-x", "stripe_customer_id": "x"}),
            "application/json",
            422,
            "invalid_stripe_customer_id",
        ),
        (encode({"request_id": "af-x"}), "application/json", 422, "no_identifier"),
        (b"{" + b" " * 70_000 + b"}", "application/json", 413, "body_too_large"),
        (encode(native("af-x")), "text/plain", 415, "unsupported_media_type"),
    ],
)
def test_mounted_intake_refuses_bad_input_and_stores_nothing(
    airflow_intake, body, content_type, status, code
):
    before = airflow_intake.rows()
    response = requests.post(
        f"{airflow_intake.url}/v1/requests",
        data=body,
        headers=signed_headers(body, content_type=content_type),
        timeout=10,
    )

    assert response.status_code == status
    assert response.json()["code"] == code
    assert_no_identifiers(response.text, "the error answer")
    assert airflow_intake.rows() == before


def test_query_strings_are_refused_and_kept_out_of_airflows_access_log(airflow_intake):
    body = encode(native("af-q"))
    response = requests.post(
        f"{airflow_intake.url}/v1/requests?email={EMAIL}&phone={PHONE}",
        data=body,
        headers=signed_headers(body),
        timeout=10,
    )

    assert response.status_code == 400
    assert response.json()["code"] == "query_not_allowed"
    time.sleep(0.2)
    access = [
        line
        for line in airflow_intake.log().splitlines()
        if "request finished" in line and "status_code=400" in line
    ]
    assert access, "Airflow's access log line for the refused call is missing"
    assert all("query= " in line or line.rstrip().endswith("query=") for line in access)


def _access_lines(airflow_intake, path: str) -> list[str]:
    return [
        line
        for line in airflow_intake.log().splitlines()
        if "request finished" in line and f"path={path} " in line
    ]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_the_prefix_without_a_slash_is_answered_by_the_intake_not_airflows_ui(airflow_intake, method):
    """``/gdpr`` is not under the mount (``/gdpr/...``): without the guard it reached Airflow's UI
    catch-all (200, HTML) and the access log printed its query string."""
    before = airflow_intake.rows()
    with_query = requests.request(
        method, f"{airflow_intake.base}/gdpr?email={EMAIL}&phone={PHONE}", timeout=10
    )
    bare = requests.request(method, f"{airflow_intake.base}/gdpr", timeout=10)
    other_case = requests.request(
        method, f"{airflow_intake.base}/GDPR/v1/requests/{EMAIL}?phone={PHONE}", timeout=10
    )

    assert (with_query.status_code, with_query.json()["code"]) == (400, "query_not_allowed")
    assert (bare.status_code, bare.json()["code"]) == (404, "not_found")
    assert (other_case.status_code, other_case.json()["code"]) == (400, "query_not_allowed")
    for response in (with_query, bare, other_case):
        assert response.headers["content-type"] == "application/problem+json"  # not the UI's HTML
        assert_no_identifiers(response.text, "the answer")
    assert airflow_intake.rows() == before
    time.sleep(0.2)
    access = _access_lines(airflow_intake, "/gdpr") + _access_lines(airflow_intake, "/gdpr/[redacted]")
    assert len(access) >= 3, "Airflow's access log lines for the calls are missing"
    assert all("query= " in line or line.rstrip().endswith("query=") for line in access)
    assert_no_identifiers(airflow_intake.log(), "the API server's log")


def test_the_mount_with_a_trailing_slash_is_still_the_intakes(airflow_intake):
    response = requests.get(f"{airflow_intake.base}/gdpr/?email={EMAIL}", timeout=10)
    assert (response.status_code, response.json()["code"]) == (400, "query_not_allowed")
    assert requests.get(f"{airflow_intake.base}/gdpr/", timeout=10).json()["code"] == "not_found"


def test_airflows_own_routes_pass_the_guard(airflow_intake):
    """The guard sits in front of every Airflow call: the UI and the API still answer."""
    ui = requests.get(f"{airflow_intake.base}/gdprs-are-not-ours?x=1", timeout=10)
    assert ui.status_code == 200 and ui.headers["content-type"].startswith("text/html")
    health = requests.get(f"{airflow_intake.base}/api/v2/monitor/health", timeout=10)
    assert health.status_code == 200


def test_rotation_through_the_metastore_connection(airflow_intake):
    set_connection(SECRET, previous=[OLD_SECRET])
    time.sleep(SECRETS_TTL + 0.2)
    assert post(airflow_intake.url, native("af-rot-1"), OLD_SECRET).status_code == 202
    assert post(airflow_intake.url, native("af-rot-2"), SECRET).status_code == 202

    set_connection(SECRET)  # rotation finished: the old secret is removed
    time.sleep(SECRETS_TTL + 0.2)
    refused = post(airflow_intake.url, native("af-rot-3"), OLD_SECRET)
    assert (refused.status_code, refused.json()["code"]) == (401, "invalid_signature")
    assert post(airflow_intake.url, native("af-rot-4"), SECRET).status_code == 202


def test_api_server_log_has_no_identifiers(airflow_intake):
    """Runs last in this module: every call above used the same identifiers."""
    post(airflow_intake.url, native("af-log", email=EMAIL, phone=PHONE))
    requests.get(f"{airflow_intake.url}/v1/requests/{EMAIL}", timeout=10)
    time.sleep(0.2)

    log = airflow_intake.log()
    assert "intake POST /v1/requests -> 202 request_id=af-log" in log  # the intake's lines are here
    assert "path=/gdpr/v1/requests" in log  # and Airflow's access log
    assert_no_identifiers(log, "the API server's log")
