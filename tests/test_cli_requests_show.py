"""`gdpr-erasure requests show ID`: one request's timeline, evidence, runs and task logs, never an
identifier."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from auditor.auditor_support import RUN_ID, seed_request

from devstack.ledgerfill import fill
from gdpr_erasure.cli import main
from gdpr_erasure.hashing import HashKey
from gdpr_erasure.identifiers import SubjectIdentifiers
from gdpr_erasure.store import ComplianceStore

EMAIL = "Jane.Doe+shown@example.org"
PHONE = "+44 20 7946 0123"


def _store(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'compliance.db'}"
    store = ComplianceStore.from_url(url)
    store.init_db()
    fill(store, 3, HashKey("test-key", b"k" * 32))
    store.submit("req-open", SubjectIdentifiers.parse(email=EMAIL, phone=PHONE), source="test")
    # Worked by a run since store schema 5: each step and the record say which task instance ran them.
    seed_request(
        store,
        HashKey("test-key", b"k" * 32),
        "req-run",
        SubjectIdentifiers.parse(email="ran@example.org", stripe_customer_id="cus_RanIn0001"),
        received_at=datetime(2026, 11, 2, tzinfo=UTC),
    )
    store.dispose()
    return url


def test_a_completed_request_shows_its_timeline_evidence_ledger_and_run_links(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.net/")
    url = _store(tmp_path)
    assert main(["requests", "show", "req-00000002", "--db-url", url]) == 0
    out = capsys.readouterr().out
    assert out.startswith("request req-00000002: completed")
    assert "Received" in out and "Completed" in out and "Audit record written" in out
    assert "ledger  seq 2" in out
    assert "https://airflow.example.net/dags/gdpr_erasure/runs/scheduled__" in out
    assert "person2@example.com" not in out  # the made-up person behind the record

    assert main(["requests", "show", "req-00000002", "--db-url", url, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "completed"
    assert shown["ledger"]["seq"] == 2
    assert shown["timeline"][0]["what"] == "Received"
    assert shown["runs"][-1]["url"].startswith("https://airflow.example.net/dags/gdpr_erasure/runs/")


def test_each_step_links_to_the_task_log_that_tells_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.net/airflow/")
    url = _store(tmp_path)
    run = "manual__2026-11-02T09%3A00%3A00%2B00%3A00"
    tasks = f"https://airflow.example.net/airflow/dags/gdpr_erasure/runs/{run}/tasks/erase_batch."
    assert main(["requests", "show", "req-run", "--db-url", url]) == 0
    out = capsys.readouterr().out
    assert "Resolve identity (resolve_identity): done tries 1" in out
    assert f"log: {tasks}resolve_identity/mapped/0?try_number=1\n" in out
    assert f"log: {tasks}verify_segment/mapped/0?try_number=2\n" in out  # the re-check's try
    assert f"Audit record written, task log: {tasks}write_ledger_record/mapped/0?try_number=1" in out
    assert "ran@example.org" not in out and "cus_RanIn0001" not in out

    assert main(["requests", "show", "req-run", "--db-url", url, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    steps = {event["what"]: event for event in shown["timeline"]}
    assert steps["Stripe: tag and erase (erase_stripe)"]["log"] == {
        "dag_id": "gdpr_erasure",
        "task_id": "erase_batch.erase_stripe",
        "dag_run_id": RUN_ID,
        "map_index": 0,
        "try_number": 1,
        "url": f"{tasks}erase_stripe/mapped/0?try_number=1",
    }
    assert steps["Received"]["log"] is None
    assert shown["record_log"]["task_id"] == "erase_batch.write_ledger_record"
    # A record from before store schema 5 has no ran_in: no task log, the runs as before.
    assert main(["requests", "show", "req-00000002", "--db-url", url, "--json"]) == 0
    old = json.loads(capsys.readouterr().out)
    assert old["record_log"] is None and {e["log"] for e in old["timeline"]} == {None}


def test_an_open_request_never_shows_its_identifiers(tmp_path, capsys):
    url = _store(tmp_path)
    assert main(["requests", "show", "req-open", "--db-url", url]) == 0
    out = capsys.readouterr().out
    assert out.startswith("request req-open: pending")
    assert "identifiers: email, phone" in out
    for spelling in (EMAIL, EMAIL.lower(), PHONE, "+442079460123", "7946"):
        assert spelling not in out
    assert main(["requests", "show", "req-open", "--db-url", url, "--json"]) == 0
    shown = capsys.readouterr().out
    assert "example.org" not in shown and "7946" not in shown


def test_an_unknown_request_is_one_line_and_exit_2(tmp_path, capsys):
    url = _store(tmp_path)
    assert main(["requests", "show", "req-nobody", "--db-url", url]) == 2
    err = capsys.readouterr().err
    assert err == "requests show: no request 'req-nobody' in the store or the ledger\n"
