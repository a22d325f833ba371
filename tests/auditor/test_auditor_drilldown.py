"""A request's drill-down and its signed receipt, over real HTTP on a real SQLite store: the
timeline and the evidence, never an identifier (not even the ones an open request's steps still
hold), and a receipt that ``gdpr-erasure receipt verify`` accepts."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from auditor.auditor_support import RUN_ID, november, seed_request, serve

from gdpr_erasure.auditor.app import create_app
from gdpr_erasure.auditor.drilldown import task_log_path
from gdpr_erasure.hashing import load_hash_key, stripe_tag
from gdpr_erasure.identifiers import SubjectIdentifiers
from gdpr_erasure.ledger.log import Ledger
from gdpr_erasure.receipts import generate_signing_key
from gdpr_erasure.store import ComplianceStore, StepStatus, TaskTry

DONE = {
    "email": "Ada.Lovelace@Example.org",
    "phone": "+44 20 7946 0001",
    "stripe_customer_id": "cus_AdaLovelace01",
}
OPEN = {
    "email": "Grace.Hopper@Example.org",
    "phone": "+1 415-555-0199",
    "stripe_customer_id": "cus_GraceHopper02",
}
#: Completed by a run of store schema 4: no claim time, nothing says where a step ran.
OLD = {"email": "Alan.Turing@Example.org", "stripe_customer_id": "cus_AlanTuring003"}
CLI = Path(sys.executable).parent / "gdpr-erasure"


def spellings(given: dict[str, str]) -> list[str]:
    """Every form an identifier could show up in: as given, normalised, lower and upper case."""
    parsed = SubjectIdentifiers.parse(**given)
    phone = [parsed.phone, parsed.phone.removeprefix("+")] if parsed.phone else []
    values = [*given.values(), parsed.email, *phone]
    return sorted({v for value in values for v in (value, value.lower(), value.upper())})


def assert_no_identifier(text: str) -> None:
    for value in spellings(DONE) + spellings(OPEN) + spellings(OLD):
        assert value not in text, value
        assert value not in html.unescape(text), value


@pytest.fixture
def store(tmp_path):
    store = ComplianceStore.from_url(f"sqlite:///{tmp_path / 'compliance.db'}")
    store.init_db()
    key = load_hash_key()
    seed_request(store, key, "req-done", SubjectIdentifiers.parse(**DONE), received_at=november(2))
    seed_request(
        store, key, "req-open", SubjectIdentifiers.parse(**OPEN), received_at=november(3), complete=False
    )
    # A provider's error that echoed the identifiers, as a careless reason would keep it.
    store.record_step(
        "req-open",
        "erase_twilio_history",
        StepStatus.FAILED,
        {"reason": "Twilio answered 400 for {phone} ({email}, {stripe_customer_id})".format(**OPEN)},
    )
    yield store
    store.dispose()


@pytest.fixture
def site(store):
    with serve(create_app(store_factory=lambda: store, user_dependency=lambda: "auditor")) as url:
        yield url


def timeline(page: str) -> list[tuple[str, str, str, str, str | None]]:
    """(what, outcome, tries, detail, task log link or None) of each timeline row."""
    table = re.search(r'<table id="timeline">.*?</table>', page, re.S).group(0)
    rows = re.findall(r"<tr>" + r"<td[^>]*>(.*?)</td>" * 6 + "</tr>", table)
    return [(*(html.unescape(cell) for cell in row[1:5]), log_href(row[5])) for row in rows]


def log_href(cell: str) -> str | None:
    found = re.search(r'<a class="log"[^>]* href="([^"]*)"', cell)
    return html.unescape(found.group(1)) if found else None


def task_log(task: str, try_number: int = 1) -> str:
    """The UI's route to a task instance of batch 0 in RUN_ID, relative to the drill-down."""
    run = "manual__2026-11-02T09%3A00%3A00%2B00%3A00"
    return f"../../dags/gdpr_erasure/runs/{run}/tasks/erase_batch.{task}/mapped/0?try_number={try_number}"


def test_a_log_link_is_the_ui_route_of_the_task_instance_and_try():
    """Airflow 3.3's UI serves a mapped task instance at .../tasks/TASK/mapped/INDEX (its log
    first), one that is not mapped at .../tasks/TASK, and picks the try from ``try_number``."""
    mapped = TaskTry("gdpr_erasure", "erase_batch.erase_stripe", "manual__2026-11-02T09:00:00+00:00", 3, 2)
    assert task_log_path(mapped) == (
        "dags/gdpr_erasure/runs/manual__2026-11-02T09%3A00%3A00%2B00%3A00/tasks/erase_batch.erase_stripe"
        "/mapped/3?try_number=2"
    )
    assert task_log_path(TaskTry("gdpr_erasure", "claim_requests", "r/1", -1, None)) == (
        "dags/gdpr_erasure/runs/r%2F1/tasks/claim_requests"
    )


def test_the_ledger_links_each_request_to_its_drill_down(site):
    page = requests.get(f"{site}/", timeout=10).text
    assert '<a href="request/req-done">req-done</a>' in page


def test_a_completed_request_shows_its_timeline_evidence_and_runs(site, store):
    response = requests.get(f"{site}/request/req-done", timeout=10)
    assert response.status_code == 200
    page = response.text
    rows = timeline(page)
    what = [row[0] for row in rows]
    assert what[:2] == ["Received", "Claimed"]
    # write_ledger_record appends the record, then completes the request and forgets its identifiers.
    assert what[-3:] == ["Audit record written", "Completed", "Identifiers replaced by their keyed hash"]
    steps = {row[0]: row for row in rows}
    resolve = steps["Resolve identity (resolve_identity)"]
    assert resolve[1:3] == ("done", "1")
    # Each step links to the log of the task instance (batch, try) that worked on it.
    assert resolve[4] == task_log("resolve_identity")
    assert steps["Stripe: tag and erase (erase_stripe)"][4] == task_log("erase_stripe")
    assert steps["Segment regulation: proof (verify_segment)"][4] == task_log("verify_segment", 2)
    assert steps["Audit record written"][4] == task_log("write_ledger_record")
    assert steps["Received"][4] is None
    assert "1 Segment profile(s) with 1 user id(s)" in resolve[3]
    assert "1 Stripe customer(s)" in resolve[3]
    # Pending, then proven: the step's row was written twice.
    assert steps["Segment regulation: proof (verify_segment)"][1:3] == ("done", "2")
    assert (
        "deleted: calls 1, messages 3; left afterwards: calls 0, messages 0"
        in steps["Twilio history: delete (erase_twilio_history)"][3]
    )
    assert steps["Claimed"][1] == f"last by run {RUN_ID}"
    assert steps["Claimed"][3] == "into the batch of map index 0"
    assert f'id="record-log" href="{task_log("write_ledger_record")}"' in page
    # The evidence: what was done and what proves it, customers by tag.
    tag = stripe_tag(load_hash_key(), DONE["stripe_customer_id"])
    assert f"Customer {tag}" in page
    assert "deleted_stub" in page and "regSeed01" in page and "FINISHED" in page
    assert "Stripe keeps the deleted customers&#x27; charges" in page
    assert "email, phone, stripe_customer_id" in page  # the identifier types, never the values
    # Its place in the ledger; no tree head has been signed yet.
    assert "Position (seq)</dt><dd>1</dd>" in page
    assert "No signed tree head yet." in page
    key, _ = generate_signing_key("test-ledger")
    Ledger(store).sign_new_head(key)
    covered = requests.get(f"{site}/request/req-done", timeout=10).text
    assert "Covered by the latest signed tree head: size 1," in covered
    # The runs, linked in the Airflow UI (relative to /gdpr-audit/request/<id>).
    run = "manual__2026-11-02T09%3A00%3A00%2B00%3A00"
    assert f'href="../../dags/gdpr_erasure/runs/{run}"' in page
    assert 'id="receipt-download" href="req-done/receipt"' in page
    assert_no_identifier(page)


def test_an_open_request_shows_its_progress_and_none_of_the_identifiers_it_still_holds(site, store):
    assert store.get("req-open").identifiers is not None  # still held, and its steps hold them too
    assert OPEN["stripe_customer_id"] in json.dumps(store.steps("req-open")["resolve"].result)
    page = requests.get(f"{site}/request/req-open", timeout=10).text
    rows = {row[0]: row for row in timeline(page)}
    assert rows["Segment regulation: proof (verify_segment)"][1] == "pending"
    assert rows["Now"][1] == "in_progress"
    history = rows["Twilio history: delete (erase_twilio_history)"]
    assert history[1] == "failed" and history[3].startswith("reason: Twilio answered 400 for [redacted]")
    assert "No audit record yet" in page
    assert "receipt-download" not in page
    assert "not yet: the request still holds them" in page
    assert_no_identifier(page)


def test_a_request_from_before_store_schema_5_shows_its_runs_without_task_logs(site, store):
    """Its steps say nothing of where they ran, its claim has no time and its record no ran_in:
    the page shows what there is and links the runs."""
    identifiers = SubjectIdentifiers.parse(**OLD)
    seed_request(store, load_hash_key(), "req-old", identifiers, received_at=november(1), where=False)
    page = requests.get(f"{site}/request/req-old", timeout=10).text
    rows = timeline(page)
    assert [row[0] for row in rows[:2]] == ["Received", "Claimed"]
    claimed = rows[1]
    assert (
        claimed[3] == "claimed before store schema 5, which keeps the run of the latest claim, not its time"
    )
    assert [row[4] for row in rows] == [None] * len(rows)
    assert "record-log" not in page
    assert 'href="../../dags/gdpr_erasure/runs/manual__2026-11-02T09%3A00%3A00%2B00%3A00"' in page
    assert "Customer cus#" in page  # the evidence reads as before
    assert_no_identifier(page)


def test_an_unknown_request_is_404_and_its_id_is_escaped(site):
    response = requests.get(f"{site}/request/%3Cb%3Ebold", timeout=10)
    assert response.status_code == 404
    assert "No request &lt;b&gt;bold in the compliance store." in response.text
    assert "<b>bold" not in response.text


@pytest.fixture
def receipt_keys(tmp_path, monkeypatch):
    """A receipt key in the ``gdpr_receipt_key`` connection (as the CLI finds it) and the ledger's
    key; returns the public keys' files."""
    receipts, receipts_pem = generate_signing_key("test-receipts")
    monkeypatch.setenv(
        "AIRFLOW_CONN_GDPR_RECEIPT_KEY",
        json.dumps({"conn_type": "generic", "login": receipts.key_id, "password": receipts_pem}),
    )
    ledger, _ = generate_signing_key("test-ledger")
    (tmp_path / "receipts.pem").write_text(receipts.public_pem())
    (tmp_path / "ledger.pem").write_text(ledger.public_pem())
    return ledger, tmp_path / "receipts.pem", tmp_path / "ledger.pem"


def test_the_signed_receipt_downloads_and_verifies_offline(site, store, receipt_keys, tmp_path):
    ledger_key, receipts_pem, ledger_pem = receipt_keys
    Ledger(store).sign_new_head(ledger_key)  # what write_ledger_record does after each batch
    response = requests.get(f"{site}/request/req-done/receipt", timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-disposition"] == 'attachment; filename="req-done.receipt.json"'
    path = tmp_path / "req-done.receipt.json"
    path.write_bytes(response.content)
    verify = [str(CLI), "receipt", "verify", str(path), "--public-key", str(receipts_pem)]
    verified = subprocess.run(
        [*verify, "--ledger-public-key", str(ledger_pem)], capture_output=True, text=True, timeout=60
    )
    assert verified.returncode == 0, verified.stderr
    assert "valid receipt for req-done" in verified.stdout
    assert "record 1 is in the signed head of size 1" in verified.stdout
    assert_no_identifier(response.text)
    # A changed byte fails.
    path.write_text(response.text.replace("regSeed01", "regSeed02"))
    altered = subprocess.run(
        [*verify, "--ledger-public-key", str(ledger_pem)], capture_output=True, text=True, timeout=60
    )
    assert altered.returncode == 1 and "INVALID" in altered.stderr


def test_without_the_receipt_key_the_download_says_so_in_one_line(site, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_GDPR_RECEIPT_KEY", raising=False)
    response = requests.get(f"{site}/request/req-done/receipt", timeout=30)
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == (
        "receipts are not configured: add the Airflow connection gdpr_receipt_key "
        "(password: an Ed25519 private key in PEM, login: its key id)\n"
    )


def test_a_receipt_needs_a_completed_request_and_a_signed_head(site, receipt_keys):
    assert requests.get(f"{site}/request/req-open/receipt", timeout=30).status_code == 404
    # No head signed yet, and no ledger key here to sign one: one line saying so.
    response = requests.get(f"{site}/request/req-done/receipt", timeout=30)
    assert response.status_code == 503
    assert (
        response.text == "no receipt for req-done: no signed tree head covers record 1 yet: sign one first\n"
    )
