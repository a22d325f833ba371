"""The hash chain behind the audit ledger.

Each record is stored as canonical JSON (sorted keys, no whitespace) and hashed together with
its position and its predecessor's hash::

    record_hash = SHA-256( "gdpr-erasure-audit-v1" | seq | prev_hash | recorded_at | record )

Changing, removing or reordering any record changes every later hash, so
:func:`verify_chain` finds the first break. The database triggers stop edits through SQL; the
chain catches the rest (restored backups, edits by a superuser with triggers disabled).

Entries have a kind (:func:`entry_kind`): a request's erasure record, or (store schema 6) the
placing or release of a legal hold (``"kind": "hold"``, :mod:`gdpr_erasure.holds`), or (schema 7)
the review of what the erasure policy kept of a request closed with exemptions (``"kind":
"review"``, keyed ``<request id>/review/<attempt>``). Records are never rewritten, so the erasure
records written before kinds existed carry none: an entry without ``kind`` is an erasure record.
All kinds are chained and hashed alike.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

GENESIS_HASH = "0" * 64
_DOMAIN = "gdpr-erasure-audit-v1"

#: The kinds of ledger entries. Erasure records say none (they predate kinds).
ERASURE = "erasure"
HOLD = "hold"
REVIEW = "review"


def entry_kind(record: dict[str, Any]) -> str:
    """The kind of a ledger entry's record: :data:`HOLD`, :data:`REVIEW`, or :data:`ERASURE` when it
    names none."""
    return str(record.get("kind") or ERASURE)


def canonical_json(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def chain_hash(seq: int, prev_hash: str, recorded_at: datetime, record_json: str) -> str:
    material = "|".join([_DOMAIN, str(seq), prev_hash, recorded_at.isoformat(), record_json])
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    request_id: str
    recorded_at: datetime
    record: dict[str, Any]
    record_json: str
    prev_hash: str
    record_hash: str

    @property
    def kind(self) -> str:
        """:data:`ERASURE` (a request's record; ``request_id`` is the request), :data:`HOLD`
        (a legal hold placed or released; ``request_id`` holds ``<hold id>/<action>``) or
        :data:`REVIEW` (a review of what the erasure policy kept; ``<request id>/review/<n>``)."""
        return entry_kind(self.record)


@dataclass
class ChainReport:
    """Result of :func:`verify_chain`: ``ok`` is False at the first break found."""

    checked: int = 0
    ok: bool = True
    head_hash: str = GENESIS_HASH
    problems: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.ok = False
        self.problems.append(message)


def verify_chain(entries: Iterable[AuditEntry]) -> ChainReport:
    """Walk the ledger in ``seq`` order and check every link and every hash."""
    report = ChainReport()
    expected_prev = GENESIS_HASH
    expected_seq = 1
    for entry in entries:
        report.checked += 1
        if entry.seq != expected_seq:
            report.fail(f"seq {entry.seq}: expected seq {expected_seq} (a record is missing)")
        if entry.prev_hash != expected_prev:
            report.fail(f"seq {entry.seq}: prev_hash does not match the hash of the record before it")
        recomputed = chain_hash(entry.seq, entry.prev_hash, entry.recorded_at, entry.record_json)
        if recomputed != entry.record_hash:
            report.fail(f"seq {entry.seq}: record_hash does not match its content (record altered)")
        try:
            if canonical_json(json.loads(entry.record_json)) != entry.record_json:
                report.fail(f"seq {entry.seq}: record is not in canonical form")
        except ValueError:
            report.fail(f"seq {entry.seq}: record is not valid JSON")
        expected_prev = entry.record_hash
        expected_seq = entry.seq + 1
        if not report.ok:
            break
    report.head_hash = expected_prev
    return report
