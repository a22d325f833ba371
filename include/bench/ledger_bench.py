"""How long the ledger's evidence costs: verifying 100,000 records, and signing a head per batch.

    .venv/bin/python include/bench/ledger_bench.py [--records 100000] [--batch 50] [--db-url URL]

Fills a fresh store (SQLite by default) with completed requests and realistic audit records
written straight into the tables (the chain hashes computed as append_audit does), signs a head,
then times: a full ``audit verify`` (hash chain + Merkle tree + request matching), and signing
the next head after one more batch of records (the per-batch cost of write_ledger_record).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert

from gdpr_erasure.ledger.log import Ledger
from gdpr_erasure.ledger.witness import Witness
from gdpr_erasure.receipts import generate_signing_key
from gdpr_erasure.store import ComplianceStore, RequestStatus
from gdpr_erasure.store.chain import GENESIS_HASH, canonical_json, chain_hash
from gdpr_erasure.store.schema import audit_log, erasure_requests
from gdpr_erasure.store.types import utcnow

RECORD = {
    "schema": "gdpr-erasure-audit/1",
    "outcome": "completed",
    "subject": {"identifiers_hash": "ab" * 32, "hash_algorithm": "HMAC-SHA256", "hash_key_id": "k1"},
    "twilio": {"memory_profile_ids": ["mem_profile_01" + "x" * 24], "history_deleted": {"messages": 12}},
    "segment": {"regulation_id": "2a" * 14, "proof": {"status": "FINISHED"}},
    "stripe": {"customers": {"tag-0123456789ab": {"outcome": "deleted"}}, "method": "delete"},
}


def fill(store: ComplianceStore, start: int, count: int, prev: str) -> str:
    now = utcnow()
    requests, records = [], []
    for seq in range(start, start + count):
        rid = f"req-{seq:08d}"
        record_json = canonical_json({**RECORD, "request_id": rid})
        at = now + timedelta(microseconds=seq)
        digest = chain_hash(seq, prev, at, record_json)
        requests.append(
            {
                "id": rid,
                "status": RequestStatus.COMPLETED.value,
                "source": "bench",
                "attempts": 1,
                "failures": 0,
                "received_at": now,
                "updated_at": now,
                "completed_at": now,
            }
        )
        records.append(
            {
                "seq": seq,
                "request_id": rid,
                "recorded_at": at,
                "record": record_json,
                "prev_hash": prev,
                "record_hash": digest,
            }
        )
        prev = digest
    with store.engine.begin() as conn:
        conn.execute(insert(erasure_requests), requests)
        conn.execute(insert(audit_log), records)
    return prev


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--db-url")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ledger-bench-"))
    store = ComplianceStore.from_url(args.db_url or f"sqlite:///{work / 'compliance.db'}")
    store.init_db()
    key, _ = generate_signing_key("bench")
    witness = Witness(str(work / "witness"))
    ledger = Ledger(store)

    started = time.perf_counter()
    prev = fill(store, 1, args.records, GENESIS_HASH)
    print(f"filled {args.records:,} records in {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    ledger.sign_new_head(key, witness)
    print(
        f"first head over {args.records:,} records (full tree, once): {time.perf_counter() - started:.2f} s"
    )

    fill(store, args.records + 1, args.batch, prev)
    started = time.perf_counter()
    ledger.sign_new_head(key, witness)
    signing = time.perf_counter() - started
    print(f"next head after a batch of {args.batch} (incremental): {signing * 1000:.1f} ms")

    public = {key.key_id: key.private_key.public_key()}
    started = time.perf_counter()
    report = ledger.verify(public, witness.heads())
    elapsed = time.perf_counter() - started
    assert report.ok, report.problems
    print(
        f"audit verify of {report.records:,} records (hash chain, Merkle tree against "
        f"{report.stored_heads} stored and {report.published_heads} published heads, requests): "
        f"{elapsed:.2f} s"
    )
    store.dispose()


if __name__ == "__main__":
    main()
