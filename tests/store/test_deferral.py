"""``deferred``: a request waiting for a provider's quota until ``not_before``, on both backends.

Claiming skips it while ``not_before`` is ahead and takes it once it has passed; deferring is not
a failure; ops can send it back to ``pending``; reports and ``requests list`` show when it is due.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from gdpr_erasure.cli import main as cli
from gdpr_erasure.identifiers import SubjectIdentifiers
from gdpr_erasure.ledger.export import period_summary
from gdpr_erasure.store import ComplianceStore, InvalidTransition, RequestStatus
from gdpr_erasure.store.engine import create_store_engine
from gdpr_erasure.store.schema import erasure_requests

S = RequestStatus
REASON = "erase_segment: segment quota spent; due 2026-12-01T00:00:00+00:00"


def ident(n: int = 0) -> SubjectIdentifiers:
    return SubjectIdentifiers.parse(email=f"person{n}@example.com")


def _deferred(store, rid: str, not_before: datetime, **submit) -> None:
    store.submit(rid, ident(len(rid)), **submit)
    assert store.claim(1, "run-0", request_ids=[rid]) == [rid]
    store.defer(rid, not_before, REASON)


def _move_not_before(store, rid: str, when: datetime) -> None:
    """Time passes: the reset the provider announced is now ``when``."""
    with store.engine.begin() as conn:
        conn.execute(update(erasure_requests).where(erasure_requests.c.id == rid).values(not_before=when))


def test_defer_records_when_and_why_and_is_not_a_failure(store):
    due = datetime(2026, 12, 1, tzinfo=UTC)
    _deferred(store, "req-1", due)
    got = store.get("req-1")
    assert (got.status, got.not_before, got.last_error) == (S.DEFERRED, due, REASON)
    assert (got.failures, got.attempts, got.lease_expires_at) == (0, 1, None)
    assert store.counts_by_status() == {"deferred": 1}


def test_a_deferred_request_is_not_claimed_before_not_before(store):
    now = datetime.now(UTC)
    _deferred(store, "later", now + timedelta(days=12))
    store.submit("fresh", ident(1))
    assert store.claim(10, "run-1") == ["fresh"]
    assert store.claim(10, "run-2", request_ids=["later"]) == []  # not even when named
    got = store.get("later")
    assert (got.status, got.attempts) == (S.DEFERRED, 1)


def test_a_deferred_request_is_claimed_once_not_before_has_passed(store):
    _deferred(store, "req-1", datetime.now(UTC) + timedelta(days=12))
    _move_not_before(store, "req-1", datetime.now(UTC) - timedelta(seconds=1))
    assert store.claim(10, "run-2") == ["req-1"]
    got = store.get("req-1")
    assert (got.status, got.attempts, got.claimed_by, got.not_before) == (S.IN_PROGRESS, 2, "run-2", None)
    assert got.failures == 0


def test_due_and_not_yet_due_requests_are_told_apart_in_one_claim(store):
    now = datetime.now(UTC)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for n in range(6):
        _deferred(store, f"req-{n}", now + timedelta(hours=1), received_at=base + timedelta(minutes=n))
    for n in (1, 3, 5):
        _move_not_before(store, f"req-{n}", now - timedelta(minutes=n))
    assert store.claim(10, "run") == ["req-1", "req-3", "req-5"]  # oldest received first
    assert [r.id for r in store.deferred_requests()] == ["req-0", "req-2", "req-4"]


def test_concurrent_claimers_take_each_due_request_once_and_no_other(store_url):
    setup = ComplianceStore(create_store_engine(store_url))
    setup.init_db()
    now = datetime.now(UTC)
    for n in range(40):
        _deferred(setup, f"req-{n:02d}", now + timedelta(days=1))
        if n % 2:
            _move_not_before(setup, f"req-{n:02d}", now - timedelta(seconds=1))
    claimed: dict[int, list[str]] = {}
    barrier = threading.Barrier(4)

    def worker(index: int) -> None:
        own = ComplianceStore(create_store_engine(store_url))
        barrier.wait()
        mine: list[str] = []
        while batch := own.claim(3, f"worker-{index}"):
            mine.extend(batch)
        claimed[index] = mine
        own.dispose()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    everything = sorted(rid for ids in claimed.values() for rid in ids)
    assert everything == [f"req-{n:02d}" for n in range(1, 40, 2)]
    assert setup.counts_by_status() == {"deferred": 20, "in_progress": 20}
    setup.dispose()


def test_only_a_claimed_request_can_be_deferred_and_only_with_a_time(store):
    store.submit("req-1", ident())
    with pytest.raises(InvalidTransition):
        store.defer("req-1", datetime.now(UTC), REASON)  # pending: no run holds it
    store.claim(1, "run")
    with pytest.raises(ValueError, match="not_before"):
        store.transition("req-1", S.DEFERRED)


def test_requeue_takes_a_deferred_request_now(store):
    _deferred(store, "req-1", datetime.now(UTC) + timedelta(days=12))
    requeued = store.requeue("req-1")
    assert (requeued.status, requeued.not_before, requeued.failures) == (S.PENDING, None, 0)
    assert store.claim(1, "run") == ["req-1"]


def test_period_summary_counts_deferred_requests_and_when_they_are_due(store):
    now = datetime.now(UTC)
    _deferred(store, "b-later", now + timedelta(days=20))
    _deferred(store, "a-sooner", now + timedelta(days=2))
    store.submit("other", ident(3))
    summary = period_summary(store)
    assert summary["deferred"] == 2
    assert summary["deferred_requests"] == [
        {"request_id": "a-sooner", "not_before": (now + timedelta(days=2)).isoformat(), "reason": REASON},
        {"request_id": "b-later", "not_before": (now + timedelta(days=20)).isoformat(), "reason": REASON},
    ]
    assert summary["received_by_current_status"] == {"deferred": 2, "pending": 1}
    # The period filters apply: requests received after the period are not in it.
    assert period_summary(store, until=now - timedelta(days=1))["deferred_requests"] == []


def test_requests_list_and_db_status_show_when_a_deferred_request_is_due(store, store_url, capsys):
    due = datetime(2026, 12, 1, tzinfo=UTC)
    _deferred(store, "req-quota", due)
    store.submit("req-new", ident(2))

    assert cli(["requests", "--db-url", store_url, "list"]) == 0
    out = capsys.readouterr().out
    header, *rows = out.splitlines()
    assert "not before" in header
    line = next(r for r in rows if r.startswith("req-quota"))
    assert "deferred" in line
    assert "2026-12-01 00:00:00" in line
    assert REASON in line
    assert "2026-12-01" not in next(r for r in rows if r.startswith("req-new"))

    assert cli(["db", "--db-url", store_url, "status"]) == 0
    out = capsys.readouterr().out
    assert "deferred" in out
    assert "next due 2026-12-01 00:00:00 UTC" in out
