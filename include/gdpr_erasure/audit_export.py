"""Audit records in the forms auditors ask for: JSON (complete) and CSV (one row per request)."""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import IO, Any

from gdpr_erasure.store import AuditEntry, ComplianceStore
from gdpr_erasure.store.types import utcnow

GDPR_DEADLINE = timedelta(days=30)

CSV_COLUMNS = [
    "seq",
    "request_id",
    "recorded_at",
    "received_at",
    "completed_at",
    "outcome",
    "identifiers_hash",
    "twilio_memory_profile_ids",
    "twilio_messages_deleted",
    "twilio_calls_deleted",
    "segment_regulation_id",
    "segment_final_status",
    "stripe_customer_ids",  # tags (cus# + 12 hex of the keyed hash), never cus_ ids
    "stripe_method",
    "record_hash",
    "prev_hash",
]


def export_row(entry: AuditEntry) -> dict[str, object]:
    record = entry.record
    twilio, segment, stripe = record.get("twilio", {}), record.get("segment", {}), record.get("stripe", {})
    deleted = twilio.get("history_deleted") or {}
    return {
        "seq": entry.seq,
        "request_id": entry.request_id,
        "recorded_at": entry.recorded_at.isoformat(),
        "received_at": record.get("received_at"),
        "completed_at": record.get("completed_at"),
        "outcome": record.get("outcome"),
        "identifiers_hash": (record.get("subject") or {}).get("identifiers_hash"),
        "twilio_memory_profile_ids": " ".join(twilio.get("memory_profile_ids") or []),
        "twilio_messages_deleted": deleted.get("messages", 0),
        "twilio_calls_deleted": deleted.get("calls", 0),
        "segment_regulation_id": segment.get("regulation_id") or "",
        "segment_final_status": (segment.get("proof") or {}).get("status") or segment.get("purge") or "",
        "stripe_customer_ids": " ".join(stripe.get("customer_ids") or []),
        "stripe_method": stripe.get("method") or "",
        "record_hash": entry.record_hash,
        "prev_hash": entry.prev_hash,
    }


def write_export(entries: Iterable[AuditEntry], fmt: str, out: IO[str]) -> int:
    """Write ``entries`` as ``json`` (records with their chain fields) or ``csv``; return the count."""
    count = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for entry in entries:
            writer.writerow(export_row(entry))
            count += 1
        return count
    out.write("[")
    for entry in entries:
        item = {
            "seq": entry.seq,
            "request_id": entry.request_id,
            "recorded_at": entry.recorded_at.isoformat(),
            "prev_hash": entry.prev_hash,
            "record_hash": entry.record_hash,
            "record": entry.record,
        }
        out.write(("," if count else "") + "\n  " + json.dumps(item, sort_keys=True))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count


def period_summary(
    store: ComplianceStore, since: datetime | None = None, until: datetime | None = None
) -> dict[str, Any]:
    """What an auditor asks first about a period: how many requests came in and how they ended,
    how long completion took, what was or is late against the 30-day limit, and which requests
    wait for a provider's quota (``deferred``) and until when."""
    entries = store.audit_entries_between(since, until)
    durations = []
    for entry in entries:
        received = datetime.fromisoformat(entry.record["received_at"])
        completed = datetime.fromisoformat(entry.record["completed_at"])
        durations.append(completed - received)
    received = store.received_between(since, until)
    now = utcnow()
    open_overdue = [r.id for r in store.open_requests_received_before(now - GDPR_DEADLINE)]
    deferred = store.deferred_requests(received_since=since, received_until=until)
    chain = store.verify_audit_chain()
    return {
        "period": {
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
        },
        "received": sum(received.values()),
        "received_by_current_status": dict(sorted(received.items())),
        "completed": len(entries),
        "failed": received.get("failed", 0),
        "needs_attention": received.get("needs_attention", 0),
        # Not failures: a provider's quota is spent (Segment's monthly regulations); the first run
        # after not_before takes each of them again.
        "deferred": received.get("deferred", 0),
        "deferred_requests": [
            {"request_id": r.id, "not_before": r.not_before.isoformat(), "reason": r.last_error}
            for r in deferred
        ],
        "median_time_to_complete_hours": _hours(statistics.median(durations)) if durations else None,
        "max_time_to_complete_hours": _hours(max(durations)) if durations else None,
        "completed_late": sum(d > GDPR_DEADLINE for d in durations),
        "open_and_overdue": len(open_overdue),
        "open_and_overdue_ids": open_overdue,
        "audit_chain": {"intact": chain.ok, "records": chain.checked, "head": chain.head_hash},
    }


def _hours(delta: timedelta) -> float:
    return round(delta.total_seconds() / 3600, 3)
