"""Shared by the auditor page's tests: serving the app over real HTTP (alone, or next to Airflow's
simple auth manager), and requests put through the store the way a run does (submitted, claimed,
each step recorded, audited, completed, the identifiers replaced by their keyed hash)."""

from __future__ import annotations

import hashlib
import html
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin

import requests
import uvicorn
from fastapi import FastAPI
from sqlalchemy import update

from gdpr_erasure.hashing import HashKey, identifier_hashes, identifiers_hash, keyed_hash, stripe_tag
from gdpr_erasure.identifiers import SubjectIdentifiers
from gdpr_erasure.store import AuditEntry, ComplianceStore, RequestStatus, StepStatus, TaskTry
from gdpr_erasure.store.schema import erasure_requests

RUN_ID = "manual__2026-11-02T09:00:00+00:00"
#: The task of the erase_batch group that works on each step.
STEP_TASKS = {"resolve": "resolve_identity"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(app, *, log_level: str = "warning", access_log: bool = False) -> Iterator[str]:
    """``app`` served by uvicorn on loopback in a thread; yields its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=free_port(), log_level=log_level, access_log=access_log
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(5)


def link(page_url: str, page_html: str, element_id: str) -> str | None:
    """The absolute URL of the link with this id on the page, or None if it is not a link."""
    tag = re.search(rf'<a [^>]*\bid="{re.escape(element_id)}"[^>]*>', page_html)
    href = re.search(r'\bhref="([^"]*)"', tag.group(0)) if tag else None
    return urljoin(page_url, html.unescape(href.group(1))) if href else None


def seqs(page_html: str) -> list[int]:
    """The ``seq`` of every record row on the page, in order."""
    return [int(s) for s in re.findall(r'<tr data-seq="(\d+)">', page_html)]


def seed_request(
    store: ComplianceStore,
    key: HashKey,
    request_id: str,
    identifiers: SubjectIdentifiers,
    *,
    received_at: datetime,
    complete: bool = True,
    takes: timedelta = timedelta(days=3),
    where: bool = True,
    per_identifier: bool = True,
) -> str:
    """A request taken through the store as a run does; returns its identifiers hash.

    Its steps keep what a run stores while the request is open, raw Stripe ``cus_`` id and
    Segment user id (the email) included, so the pages are shown to hide them; an incomplete
    request (``complete=False``) keeps its identifiers and waits for the Segment proof. A completed
    one took ``takes`` from received to completed, as its record states. With ``where`` (as since
    store schema 5), the claim records its batch (map index 0), each step the task instance that
    ran it (try 1, the Segment proof try 2) and the record the one that wrote it; without, the
    request looks as a run of schema 4 left it. With ``per_identifier`` the record carries each
    identifier's own keyed hash, as records do since they exist; without, it is an older record.
    """
    digest = identifiers_hash(key, identifiers)
    customer = (
        identifiers.stripe_customer_id or "cus_Seed" + hashlib.sha256(request_id.encode()).hexdigest()[:12]
    )
    tag = stripe_tag(key, customer)
    store.submit(request_id, identifiers, received_at=received_at)
    store.claim(1, f"gdpr_erasure/{RUN_ID}", request_ids=[request_id], batch_size=50 if where else None)
    done, checked = received_at + timedelta(hours=2), received_at + takes
    steps = [
        (
            "resolve",
            StepStatus.DONE,
            {
                "segment": {"segment_ids": ["seg_1"], "user_ids": [identifiers.email or "user-1"]},
                "twilio": {"memory_profile_ids": ["mem_profile_01abc"], "has_phone": bool(identifiers.phone)},
                "stripe": {
                    "customer_ids": [customer],
                    "matched_by": {customer: "given"},
                    "absent_at_resolve": {},
                },
            },
        ),
        ("erase_twilio_profile", StepStatus.DONE, {"profile_ids": ["mem_profile_01abc"], "outcomes": {}}),
        (
            "erase_twilio_history",
            StepStatus.DONE,
            {"deleted": {"messages": 3, "calls": 1}, "remaining_after": {"messages": 0, "calls": 0}},
        ),
        (
            "erase_segment",
            StepStatus.DONE,
            {"regulation_id": "regSeed01", "regulation_type": "SUPPRESS_WITH_DELETE"},
        ),
        (
            "erase_stripe",
            StepStatus.DONE,
            {"method": "delete", "customers": {customer: {"outcome": "deleted"}}},
        ),
        ("verify_segment", StepStatus.PENDING, {"status": "RUNNING", "summary": "regulation RUNNING"}),
    ]
    if complete:
        steps += [
            ("verify_segment", StepStatus.DONE, {"status": "FINISHED", "finished_at": checked.isoformat()}),
            (
                "verify_stripe",
                StepStatus.DONE,
                {"customers": {tag: {"state": "deleted", "evidence": "deleted_stub"}}},
            ),
            ("verify_twilio_profile", StepStatus.DONE, {"gone_at": done.isoformat()}),
        ]
    for name, status, result in steps:
        try_number = 2 if (name, status) == ("verify_segment", StepStatus.DONE) else 1  # a re-check
        ran_in = TaskTry("gdpr_erasure", f"erase_batch.{STEP_TASKS.get(name, name)}", RUN_ID, 0, try_number)
        store.record_step(request_id, name, status, result, ran_in=ran_in if where else None)
    if not where:  # schema 4 kept no claim time
        with store.engine.begin() as conn:
            conn.execute(
                update(erasure_requests).where(erasure_requests.c.id == request_id).values(claimed_at=None)
            )
    if not complete:
        return digest

    record = {
        "schema": "gdpr-erasure-audit/1",
        "request_id": request_id,
        "received_at": received_at.isoformat(),
        "completed_at": checked.isoformat(),
        "outcome": "completed",
        "attempts": 1,
        "run_id": RUN_ID,
        **(
            {
                "ran_in": {
                    "dag_id": "gdpr_erasure",
                    "task_id": "erase_batch.write_ledger_record",
                    "dag_run_id": RUN_ID,
                    "map_index": 0,
                    "try_number": 1,
                }
            }
            if where
            else {}
        ),
        "subject": {
            "identifier_types": identifiers.present(),
            "identifiers_hash": digest,
            **({"identifier_hashes": identifier_hashes(key, identifiers)} if per_identifier else {}),
            "hash_algorithm": "HMAC-SHA256",
            "hash_key_id": key.key_id,
        },
        "twilio": {
            "memory_profile_ids": ["mem_profile_01abc"],
            "profile_purge": "done",
            "profile_proof": {"gone_at": done.isoformat()},
            "history_purge": "done",
            "history_deleted": {"messages": 3, "calls": 1},
            "history_remaining_after": {"messages": 0, "calls": 0},
        },
        "segment": {
            "user_ids_hmac": [keyed_hash(key, identifiers.email or "user-1")],
            "segment_ids": ["seg_1"],
            "regulation_id": "regSeed01",
            "regulation_type": "SUPPRESS_WITH_DELETE",
            "purge": "done",
            "proof": {"status": "FINISHED", "finished_at": checked.isoformat()},
        },
        "stripe": {
            "customer_ids": [tag],
            "customer_hmacs": {tag: keyed_hash(key, customer)},
            "method": "delete",
            "customers": {tag: {"outcome": "deleted", "proven_by": "deleted_stub"}},
            "erased_customer_ids": [tag],
            "purge": "done",
            "proof": {"customers": {tag: {"state": "deleted", "evidence": "deleted_stub"}}},
        },
    }
    store.append_audit(request_id, record)
    store.transition(request_id, RequestStatus.COMPLETED)
    store.erase_identifiers(request_id, digest)
    return digest


#: The decision the default policy takes on a customer with an open dispute (docs/policy.md).
LEGAL_BASIS = "Art. 17(3)(e) GDPR: the establishment, exercise or defence of legal claims"
POLICY = {"digest": "sha256:" + "5e" * 32, "source": "default.yaml"}


def _decision(action: str, cases: list[str], attempt: int, review_date: datetime | None) -> dict[str, Any]:
    return {
        "action": action,
        "cases": cases,
        "deciding_case": cases[0] if cases else None,
        "cancel_subscriptions": False,
        "legal_basis": LEGAL_BASIS if action != "erase" else None,
        "review_date": review_date.isoformat() if review_date else None,
        "retained_until": None,
        "decided_at": datetime.now(UTC).isoformat(),
        "attempt": attempt,
        "policy_digest": POLICY["digest"],
    }


def _ran_in(task: str, try_number: int = 1) -> TaskTry:
    return TaskTry("gdpr_erasure", f"erase_batch.{task}", RUN_ID, 0, try_number)


def seed_with_exemptions(
    store: ComplianceStore,
    key: HashKey,
    request_id: str,
    identifiers: SubjectIdentifiers,
    *,
    received_at: datetime,
    review_date: datetime,
) -> tuple[str, str]:
    """A request closed ``completed_with_exemptions`` the way ``write_ledger_record`` closes one:
    its steps recorded as ``erase_stripe`` records them under the erasure policy (one customer
    deleted and proven, one withheld for an open dispute until ``review_date``), its audit record
    built by :func:`build_audit_record` itself, the request closed with its review date, its
    identifiers forgotten and the deleted customer's ``cus_`` id replaced by its tag (the withheld
    one keeps its id: the review needs it). Returns the (deleted, withheld) ``cus_`` ids."""
    from gdpr_erasure.operators.ledger_record import build_audit_record, next_review

    seed_request(store, key, request_id, identifiers, received_at=received_at, complete=False)
    # The customer seed_request resolved, deleted this time; and one the policy withheld.
    deleted = (
        identifiers.stripe_customer_id or "cus_Seed" + hashlib.sha256(request_id.encode()).hexdigest()[:12]
    )
    withheld = "cus_Kept" + hashlib.sha256(request_id.encode()).hexdigest()[:12]
    erased_tag = stripe_tag(key, deleted)
    store.record_step(
        request_id,
        "erase_stripe",
        StepStatus.DONE,
        {
            "method": "delete",
            "policy": POLICY,
            "customers": {
                deleted: {
                    "outcome": "deleted",
                    "evidence": "deleted_stub",
                    "decision": _decision("erase", [], 1, None),
                },
                withheld: {
                    "outcome": "kept",
                    "decision": _decision("withhold", ["open_dispute"], 1, review_date),
                },
            },
        },
        ran_in=_ran_in("erase_stripe"),
    )
    done = received_at + timedelta(hours=2)
    for name, result in (
        ("verify_segment", {"status": "FINISHED", "finished_at": done.isoformat()}),
        ("verify_stripe", {"customers": {erased_tag: {"state": "deleted", "evidence": "deleted_stub"}}}),
        ("verify_twilio_profile", {"gone_at": done.isoformat()}),
    ):
        store.record_step(request_id, name, StepStatus.DONE, result, ran_in=_ran_in(name, 2))
    request = store.get(request_id)
    record = build_audit_record(
        request, store.steps(request_id), key, run_id=RUN_ID, ran_in=_ran_in("write_ledger_record")
    )
    store.append_audit(request_id, record)
    store.transition(
        request_id, RequestStatus.COMPLETED_WITH_EXEMPTIONS, not_before=next_review(record["kept"])
    )
    store.erase_identifiers(request_id, identifiers_hash(key, identifiers))
    stripe_step = store.steps(request_id)["erase_stripe"]
    customers = {
        erased_tag if cid == deleted else cid: c for cid, c in stripe_step.result["customers"].items()
    }
    store.record_step(
        request_id, "erase_stripe", StepStatus.DONE, {**stripe_step.result, "customers": customers}
    )
    return deleted, withheld


def seed_review(
    store: ComplianceStore, key: HashKey, request_id: str, withheld: str, *, erase: bool, run_id: str = RUN_ID
) -> AuditEntry:
    """The review of :func:`seed_with_exemptions`'s request at its review date, as a run does it:
    claimed again (attempt 2), the withheld customer decided again (deleted and proven once its
    dispute is closed, ``erase``; withheld to a new review date otherwise), the review entry built
    by :func:`build_review_record` and appended under ``<request id>/review/2``, the request closed
    again. Returns the review entry."""
    from gdpr_erasure.operators.ledger_record import build_review_record, next_review, review_key

    with store.engine.begin() as conn:
        conn.execute(
            update(erasure_requests)
            .where(erasure_requests.c.id == request_id)
            .values(not_before=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert store.claim(1, f"gdpr_erasure/{run_id}", request_ids=[request_id]) == [request_id]
    stripe_step = store.steps(request_id)["erase_stripe"]
    customers = dict(stripe_step.result["customers"])
    tag = stripe_tag(key, withheld)
    if erase:
        customers[withheld] = {
            "outcome": "deleted",
            "evidence": "deleted_stub",
            "decision": _decision("erase", [], 2, None),
        }
        proof = {"customers": {tag: {"state": "deleted", "evidence": "deleted_stub"}}}
        store.record_step(
            request_id, "verify_stripe", StepStatus.DONE, proof, ran_in=_ran_in("verify_stripe")
        )
    else:
        again = datetime.now(UTC) + timedelta(days=60)
        customers[withheld] = {
            "outcome": "kept",
            "decision": _decision("withhold", ["open_dispute"], 2, again),
        }
    store.record_step(
        request_id,
        "erase_stripe",
        StepStatus.DONE,
        {**stripe_step.result, "customers": customers},
        ran_in=_ran_in("erase_stripe"),
    )
    request = store.get(request_id)
    record = build_review_record(
        request,
        store.steps(request_id),
        key,
        store.audit_entry(request_id),
        run_id,
        _ran_in("write_ledger_record"),
    )
    entry = store.append_audit(review_key(request_id, request.attempts), record)
    if record["kept"]:
        store.transition(
            request_id, RequestStatus.COMPLETED_WITH_EXEMPTIONS, not_before=next_review(record["kept"])
        )
    else:
        store.transition(request_id, RequestStatus.COMPLETED)
    return entry


def november(day: int, hour: int = 10) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


#: One user per simple auth manager role, and an auditor who is only a viewer in Airflow.
USERS = {"ada": "admin", "otto": "op", "uma": "user", "vera": "viewer", "audrey": "viewer"}


@contextmanager
def airflow_site(tmp_path, monkeypatch, app) -> Iterator[tuple[str, Callable[[str], str], Any]]:
    """Airflow's simple auth manager (``/auth``, its login) and ``app`` (at ``/gdpr-audit``) in
    one server, as the API server mounts them; yields the base URL, a login function (user name
    to JWT) and the auth manager. ``audrey`` is named an auditor in ``$GDPR_AUDITOR_USERS``.
    Needs Airflow's metadata DB (the ``airflow_db`` fixture): revocations are checked there."""
    from airflow.api_fastapi.app import init_auth_manager, purge_cached_app
    from airflow.api_fastapi.auth.managers.base_auth_manager import BaseAuthManager

    passwords = {name: f"pw-{name}-{n}" for n, name in enumerate(USERS)}
    (tmp_path / "passwords.json").write_text(json.dumps(passwords))
    monkeypatch.setenv(
        "AIRFLOW__CORE__AUTH_MANAGER",
        "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
    )
    monkeypatch.setenv(
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", ",".join(f"{u}:{r}" for u, r in USERS.items())
    )
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(tmp_path / "passwords.json"))
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "auditor-test-jwt-secret-" + "0123456789abcdef" * 4)
    monkeypatch.setenv("GDPR_AUDITOR_USERS", "audrey")
    monkeypatch.delenv("GDPR_AUDITOR_ROLES", raising=False)
    BaseAuthManager._get_token_signer.cache_clear()
    BaseAuthManager._get_token_validator.cache_clear()
    purge_cached_app()
    site = FastAPI()
    auth_manager = init_auth_manager(site)  # mounts the auth manager's login app at /auth
    site.mount("/gdpr-audit", app)
    try:
        with serve(site) as url:

            def login(username: str) -> str:
                response = requests.post(
                    f"{url}/auth/token",
                    json={"username": username, "password": passwords[username]},
                    timeout=10,
                )
                assert response.status_code == 201, response.text
                return response.json()["access_token"]

            yield url, login, auth_manager
    finally:
        purge_cached_app()
        BaseAuthManager._get_token_signer.cache_clear()
        BaseAuthManager._get_token_validator.cache_clear()
