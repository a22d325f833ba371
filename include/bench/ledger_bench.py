"""How long the ledger's evidence costs: verifying 100,000 records, and signing a head per batch.

    .venv/bin/python include/bench/ledger_bench.py [--records 100000] [--batch 50] [--db-url URL]

Fills a fresh store (SQLite by default) with completed requests and realistic audit records
written straight into the tables (devstack.ledgerfill: the chain hashes computed as append_audit
does), signs a head,
then times: a full ``audit verify`` (hash chain + Merkle tree + request matching), and signing
the next head after one more batch of records (the per-batch cost of write_ledger_record).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from devstack.ledgerfill import fill
from gdpr_erasure.hashing import HashKey
from gdpr_erasure.ledger.log import Ledger
from gdpr_erasure.ledger.witness import Witness
from gdpr_erasure.receipts import generate_signing_key
from gdpr_erasure.store import ComplianceStore


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
    hash_key = HashKey("bench", b"bench-hash-key")
    witness = Witness(str(work / "witness"))
    ledger = Ledger(store)

    started = time.perf_counter()
    prev = fill(store, args.records, hash_key)
    print(f"filled {args.records:,} records in {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    ledger.sign_new_head(key, witness)
    print(
        f"first head over {args.records:,} records (full tree, once): {time.perf_counter() - started:.2f} s"
    )

    fill(store, args.batch, hash_key, first=args.records + 1, prev=prev)
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
