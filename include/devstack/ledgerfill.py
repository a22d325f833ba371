"""A compliance store full of completed requests and audit records shaped like the pipeline's,
written straight into the tables (chain hashes computed as ``append_audit`` does): for the
benchmarks and tests of a large ledger (``include/bench/auditor_bench.py``,
``tests/auditor/test_auditor_paging.py``). Made-up people only.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from gdpr_erasure.hashing import HashKey, identifiers_hash
from gdpr_erasure.identifiers import SubjectIdentifiers
from gdpr_erasure.store import ComplianceStore, RequestStatus
from gdpr_erasure.store.chain import GENESIS_HASH, canonical_json, chain_hash
from gdpr_erasure.store.schema import audit_log, erasure_requests

START = datetime(2025, 1, 6, tzinfo=UTC)
CHUNK = 10_000


def person(seq: int) -> SubjectIdentifiers:
    """The made-up person of record ``seq``: an email, and a phone for every third."""
    phone = f"+4420794{seq:05d}"[:13] if seq % 3 == 0 else None
    return SubjectIdentifiers(email=f"person{seq}@example.com", phone=phone)


def record_of(seq: int, key: HashKey) -> tuple[dict, datetime, datetime]:
    """A record shaped like ``build_audit_record``'s, one every 7 minutes; time to complete from
    an hour to 40 days (about one in eight over the 30-day limit)."""
    completed = START + timedelta(minutes=7 * seq)
    received = completed - timedelta(hours=1 + (seq * 37) % (24 * 40))
    rid = f"req-{seq:08d}"
    subject = person(seq)
    tag = f"cus#{seq:012x}"
    return (
        {
            "schema": "gdpr-erasure-audit/1",
            "request_id": rid,
            "received_at": received.isoformat(),
            "completed_at": completed.isoformat(),
            "outcome": "completed",
            "attempts": 1,
            "run_id": f"scheduled__{completed.date().isoformat()}T00:00:00+00:00",
            "subject": {
                "identifier_types": subject.present(),
                "identifiers_hash": identifiers_hash(key, subject),
                "hash_algorithm": "HMAC-SHA256",
                "hash_key_id": key.key_id,
            },
            "twilio": {
                "memory_profile_ids": [f"mem_profile_{seq:026d}"],
                "profile_purge": "done",
                "profile_proof": {"gone_at": completed.isoformat(), "summary": "1 profile(s) answer 404"},
                "history_purge": "done",
                "history_deleted": {"messages": seq % 13, "calls": seq % 3},
                "history_remaining_after": {"messages": 0, "calls": 0},
            },
            "segment": {
                "regulation_id": f"reg{seq:024d}",
                "regulation_type": "SUPPRESS_WITH_DELETE",
                "purge": "done",
                "segment_ids": [f"seg{seq}"],
                "user_ids_hmac": [],
                "proof": {"status": "FINISHED", "finished_at": completed.isoformat()},
            },
            "stripe": {
                "customer_ids": [tag],
                "method": "delete",
                "purge": "done",
                "customers": {tag: {"outcome": "deleted", "proven_by": "deleted_stub"}},
                "erased_customer_ids": [tag],
                "proof": {"customers": {tag: {"state": "deleted", "evidence": "deleted_stub"}}},
            },
        },
        received,
        completed,
    )


def fill(
    store: ComplianceStore, count: int, key: HashKey, *, first: int = 1, prev: str = GENESIS_HASH
) -> str:
    """Append ``count`` completed requests and their records from seq ``first`` (the ledger's
    next), chained onto ``prev`` (the last record's hash); returns the new last hash."""
    end = first + count
    for start in range(first, end, CHUNK):
        rows, records = [], []
        for seq in range(start, min(start + CHUNK, end)):
            record, received, completed = record_of(seq, key)
            record_json = canonical_json(record)
            digest = chain_hash(seq, prev, completed, record_json)
            rows.append(
                {
                    "id": record["request_id"],
                    "status": RequestStatus.COMPLETED.value,
                    "source": "bench",
                    "attempts": 1,
                    "failures": 0,
                    "received_at": received,
                    "updated_at": completed,
                    "completed_at": completed,
                    "identifiers_hash": record["subject"]["identifiers_hash"],
                    "pii_erased_at": completed,
                    "claimed_by": f"gdpr_erasure/{record['run_id']}",
                }
            )
            records.append(
                {
                    "seq": seq,
                    "request_id": record["request_id"],
                    "recorded_at": completed,
                    "record": record_json,
                    "prev_hash": prev,
                    "record_hash": digest,
                }
            )
            prev = digest
        with store.engine.begin() as conn:
            conn.execute(insert(erasure_requests), rows)
            conn.execute(insert(audit_log), records)
    return prev
