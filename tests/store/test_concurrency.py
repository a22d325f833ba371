"""Claiming and audit appends under real concurrency: threads with their own connections."""

from __future__ import annotations

import threading
from collections import Counter

from gdpr_erasure.identifiers import SubjectIdentifiers
from gdpr_erasure.store import ComplianceStore
from gdpr_erasure.store.engine import create_store_engine

WORKERS = 8
REQUESTS = 240


def _run_threads(target, count):
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def wrapped(index):
        try:
            barrier.wait()
            target(index)
        except BaseException as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors


def test_concurrent_claimers_never_share_a_request(store_url):
    setup = ComplianceStore(create_store_engine(store_url))
    setup.init_db()
    for n in range(REQUESTS):
        setup.submit(f"req-{n:04d}", SubjectIdentifiers.parse(stripe_customer_id=f"cus_test{n:06d}"))

    claimed: dict[int, list[str]] = {}

    def worker(index):
        # A separate engine per worker, as separate Airflow task processes would have.
        own = ComplianceStore(create_store_engine(store_url))
        mine: list[str] = []
        while batch := own.claim(5, f"worker-{index}"):
            mine.extend(batch)
        claimed[index] = mine
        own.dispose()

    _run_threads(worker, WORKERS)
    everything = [rid for ids in claimed.values() for rid in ids]
    duplicates = [rid for rid, count in Counter(everything).items() if count > 1]
    assert duplicates == []
    assert len(everything) == REQUESTS
    assert sum(1 for ids in claimed.values() if ids) > 1, "the claim loop never actually ran concurrently"
    assert setup.counts_by_status() == {"in_progress": REQUESTS}
    setup.dispose()


def test_concurrent_audit_appends_form_one_linear_chain(store_url):
    setup = ComplianceStore(create_store_engine(store_url))
    setup.init_db()

    def worker(index):
        own = ComplianceStore(create_store_engine(store_url))
        for n in range(10):
            own.append_audit(f"req-{index}-{n}", {"outcome": "completed", "n": n})
        own.dispose()

    _run_threads(worker, 6)
    entries = setup.audit_entries()
    assert [e.seq for e in entries] == list(range(1, 61))
    report = setup.verify_audit_chain()
    assert report.ok, report.problems
    assert report.checked == 60
    setup.dispose()
