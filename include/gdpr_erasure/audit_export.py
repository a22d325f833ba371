"""Audit records in the forms auditors ask for: JSON (complete) and CSV (one row per request)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import IO

from gdpr_erasure.store import AuditEntry

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
    "stripe_customer_ids",
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
