"""The standalone intake as deployed: ``gdpr-erasure intake serve`` (two uvicorn workers) in a
subprocess, fed by ``gdpr-erasure submit``; its log must hold no identifiers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from intake_support import (
    EMAIL,
    OTHER_SECRET,
    PHONE,
    SECRET,
    USER_ID,
    assert_no_identifiers,
    connection_json,
    count_rows,
    opendsr,
    read_first_line,
    signed_headers,
    stop_process,
)

from gdpr_erasure.intake.client import IntakeClient, IntakeClientError
from gdpr_erasure.intake.server import READY_PREFIX, standalone_intake
from gdpr_erasure.store import ComplianceStore

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0


@dataclass
class Standalone:
    url: str
    db_url: str
    env: dict[str, str]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gdpr_erasure.cli", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            cwd=REPO_ROOT,
            timeout=60,
            check=False,
        )


@pytest.fixture(scope="module")
def standalone(tmp_path_factory) -> Iterator[Standalone]:
    home = tmp_path_factory.mktemp("standalone")
    db_url = f"sqlite:///{home / 'compliance.db'}"
    env = {**os.environ, "AIRFLOW_CONN_GDPR_INTAKE": connection_json(SECRET, controller_id="acme-cli")}
    log_path = home / "intake.log"
    command = [sys.executable, "-m", "gdpr_erasure.cli", "intake", "serve", "--port", "0", "--workers", "2"]
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [*command, "--db-url", db_url],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
            cwd=REPO_ROOT,
        )
    try:
        line = read_first_line(process.stdout, START_TIMEOUT) or ""
        if not line.startswith(READY_PREFIX):
            stop_process(process)
            pytest.fail(f"intake serve did not start (stdout {line!r}); log:\n{log_path.read_text()}")
        url = line.strip().removeprefix(READY_PREFIX)
        # The client commands find the URL in the connection, like an operator's setup would.
        env["AIRFLOW_CONN_GDPR_INTAKE"] = connection_json(SECRET, url=url)
        yield Standalone(url, db_url, env, log_path)
    finally:
        stop_process(process)


def test_submit_command_signs_and_sends_through_the_webhook(standalone):
    done = standalone.cli(
        "submit", "--request-id", "cli-1", "--email", EMAIL, "--phone", PHONE, "--user-id", USER_ID
    )

    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["request_id"] == "cli-1"
    assert answer["status"] == "pending"
    store = ComplianceStore.from_url(standalone.db_url)
    stored = store.get("cli-1")
    store.dispose()
    assert stored.source == "webhook"
    assert stored.identifiers.user_id == USER_ID

    status = standalone.cli("intake", "status", "cli-1")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout) == answer


def test_submit_command_reads_opendsr_from_stdin_and_reports_refusals(standalone):
    accepted = standalone.cli("submit", "--json", "-", stdin=json.dumps(opendsr("cli-dsr")))
    refused = standalone.cli(
        "submit", "--json", "-", stdin=json.dumps({"request_id": "cli-2", "phone": "0" + PHONE[1:]})
    )

    assert accepted.returncode == 0, accepted.stderr
    assert json.loads(accepted.stdout)["controller_id"] == "acme-cli"
    assert refused.returncode == 1
    assert "422 invalid_phone" in refused.stderr
    assert_no_identifiers(refused.stdout + refused.stderr + accepted.stdout, "the CLI output")


def test_standalone_server_log_has_no_identifiers_or_query_strings(standalone):
    before = count_rows(standalone.db_url)
    body = json.dumps({"request_id": "cli-q", "email": EMAIL}).encode()
    with_query = requests.post(
        f"{standalone.url}/v1/requests?email={EMAIL}&phone={PHONE}",
        data=body,
        headers=signed_headers(body),
        timeout=10,
    )
    unsigned = requests.post(
        f"{standalone.url}/v1/requests", json={"request_id": "cli-u", "email": EMAIL}, timeout=10
    )
    requests.get(f"{standalone.url}/v1/requests/{EMAIL}", timeout=10)
    many = [
        requests.post(f"{standalone.url}/v1/requests", data=b, headers=signed_headers(b), timeout=10)
        for b in (json.dumps({"request_id": f"cli-m{i}", "email": EMAIL}).encode() for i in range(6))
    ]

    assert with_query.status_code == 400
    assert unsigned.status_code == 401
    assert {r.status_code for r in many} == {202}
    assert count_rows(standalone.db_url) == before + 6
    log = standalone.log()
    assert "POST /v1/requests -> 202 request_id=cli-m5" in log  # the log is captured...
    assert "query_not_allowed" in log
    assert_no_identifiers(log, "the standalone server's log")  # ...and holds no identifier
    assert "email=" not in log


def test_submit_without_a_secret_is_refused_before_sending(standalone, tmp_path):
    env = {k: v for k, v in standalone.env.items() if k != "AIRFLOW_CONN_GDPR_INTAKE"}
    env["AIRFLOW_HOME"] = tempfile.mkdtemp(dir=tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "gdpr_erasure.cli", "submit", "--url", standalone.url, "--email", EMAIL],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )

    assert done.returncode != 0
    assert "gdpr_intake" in done.stderr
    assert_no_identifiers(done.stderr, "the CLI error")


def test_standalone_intake_helper_for_the_demo(tmp_path):
    """What ``make demo`` uses: start the standalone intake, submit through the webhook, stop."""
    db_url = f"sqlite:///{tmp_path / 'demo.db'}"
    secret = "demo-secret-0123456789abcdef0123456789"
    with standalone_intake(secret=secret, db_url=db_url, log_path=tmp_path / "intake.log") as url:
        answer = IntakeClient(url, secret).submit("demo-person-001", email=EMAIL, phone=PHONE)
        assert answer["status"] == "pending"
        with pytest.raises(IntakeClientError) as refused:
            IntakeClient(url, OTHER_SECRET).submit("demo-person-002", email=EMAIL)
        assert refused.value.code == "invalid_signature"
    with pytest.raises(requests.ConnectionError):  # stopped
        requests.get(url, timeout=2)
    assert count_rows(db_url) == 1
    assert_no_identifiers((tmp_path / "intake.log").read_text(), "the demo intake's log")
