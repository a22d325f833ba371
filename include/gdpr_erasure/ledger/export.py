"""The ledger's export: its audit records in the forms auditors ask for, JSON (complete) and CSV
(one row per request), and the figures of a period (``gdpr-erasure audit export``, the auditor page).

Legal holds placed and released are entries of the ledger too, exported as their own kind: each
JSON item and CSV row says its ``kind`` (``erasure``, ``hold`` or ``review``); a hold's row fills
the ``hold_*`` columns instead of the erasure's, and its ``request_id`` is the held request (empty
for a hold on a person). A JSON item keeps the ledger's columns as stored, so the Merkle leaves
can be recomputed from the export: a hold entry's ``request_id`` there is its ledger key,
``<hold id>/<action>``, and a review's ``<request id>/review/<attempt>``.

What the erasure policy kept (docs/policy.md) is in each JSON item's record (``outcome``, ``kept``);
in CSV the ``kept`` column summarises it, one object after the other, joined by ``"; "``:
``cus#0f58afa1ab99 withhold open_dispute review 2026-03-02`` (the tag, the action, its cases or the
rule's kind, then ``review`` and the review date, or ``until`` and the end of its retention).
A review of what was kept (kind ``review``) is a row of the request it reviewed: its
``request_id`` is that request's, ``review`` the attempt, ``follows_seq`` the ``seq`` of the
request's erasure record, ``reviewed_at`` its time, ``outcome`` and ``kept`` what holds after it,
and ``stripe_customer_ids`` the customers it checked again."""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import IO, Any

from gdpr_erasure.policy import HOLD_FOR_REVIEW, REDACT, RETAIN, WITHHOLD
from gdpr_erasure.store import AuditEntry, ComplianceStore, RequestStatus
from gdpr_erasure.store.chain import HOLD, REVIEW
from gdpr_erasure.store.types import utcnow

GDPR_DEADLINE = timedelta(days=30)
COMPLETED_WITH_EXEMPTIONS = RequestStatus.COMPLETED_WITH_EXEMPTIONS.value

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
    # Since legal holds (store schema 6): every entry's kind, and a hold entry's fields.
    "kind",
    "hold_id",
    "hold_action",
    "hold_target_type",
    "hold_target",  # the request id, or the identifier's keyed hash: never the identifier
    "hold_reason",
    "hold_until",
    # Since the erasure policy (store schema 7): what each entry keeps, and a review's fields.
    "kept",
    "review",
    "follows_seq",
    "reviewed_at",
]


def export_row(entry: AuditEntry) -> dict[str, object]:
    record = entry.record
    if entry.kind == HOLD:
        return hold_row(entry)
    if entry.kind == REVIEW:
        return review_row(entry)
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
        "kind": entry.kind,
        **dict.fromkeys(CSV_COLUMNS[CSV_COLUMNS.index("hold_id") :], ""),
        "kept": kept_summary(record.get("kept")),
    }


def review_row(entry: AuditEntry) -> dict[str, object]:
    """The CSV row of a review entry: a row of the request it reviewed (its ``request_id``), the
    review's fields, the erasure columns it has no part in empty."""
    record = entry.record
    stripe = record.get("stripe") or {}
    return {
        **dict.fromkeys(CSV_COLUMNS, ""),
        "seq": entry.seq,
        "request_id": record.get("request_id") or "",
        "recorded_at": entry.recorded_at.isoformat(),
        "received_at": record.get("received_at") or "",
        "outcome": record.get("outcome") or "",
        "stripe_customer_ids": " ".join(stripe.get("customer_ids") or []),
        "stripe_method": stripe.get("method") or "",
        "record_hash": entry.record_hash,
        "prev_hash": entry.prev_hash,
        "kind": entry.kind,
        "kept": kept_summary(record.get("kept")),
        "review": record.get("review") if record.get("review") is not None else "",
        "follows_seq": (record.get("follows") or {}).get("seq") or "",
        "reviewed_at": record.get("reviewed_at") or "",
    }


def kept_summary(kept: list[dict[str, Any]] | None) -> str:
    """What an entry's ``kept`` lists, compact for one CSV cell: per object its id, action, cases
    (or, kept by an object rule, the kind) and ``review DATE`` or ``until DATE``, joined by "; "."""
    items = []
    for item in kept or []:
        words = [
            str(item.get("id")),
            str(item.get("action")),
            "+".join(item.get("cases") or []) or str(item.get("kind")),
        ]
        if item.get("review_date"):
            words.append(f"review {str(item['review_date'])[:10]}")
        elif item.get("retained_until"):
            words.append(f"until {str(item['retained_until'])[:10]}")
        items.append(" ".join(words))
    return "; ".join(items)


def hold_row(entry: AuditEntry) -> dict[str, object]:
    """The CSV row of a hold entry: the ``hold_*`` columns, the erasure columns empty."""
    record = entry.record
    target_type = record.get("target_type")
    return {
        **dict.fromkeys(CSV_COLUMNS, ""),
        "seq": entry.seq,
        "request_id": record.get("target") if target_type == "request" else "",
        "recorded_at": entry.recorded_at.isoformat(),
        "record_hash": entry.record_hash,
        "prev_hash": entry.prev_hash,
        "kind": entry.kind,
        "hold_id": record.get("hold_id") or "",
        "hold_action": record.get("action") or "",
        "hold_target_type": target_type or "",
        "hold_target": record.get("target") or "",
        "hold_reason": record.get("reason") or "",
        "hold_until": record.get("until") or "",
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
        out.write(("," if count else "") + "\n  " + json.dumps(export_item(entry), sort_keys=True))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count


def period_summary(
    store: ComplianceStore, since: datetime | None = None, until: datetime | None = None
) -> dict[str, Any]:
    """What an auditor asks first about a period: how many requests came in and how they ended
    (``completed``, or ``completed_with_exemptions`` with what the erasure policy kept, by action,
    and when it is reviewed), how long completion took, what was or is late against the 30-day
    limit, which requests wait for a provider's quota (``deferred``) or a legal hold
    (``on_hold``), and until when; and whether the audit chain is intact."""
    summary = period_figures(store, since, until)
    chain = store.verify_audit_chain()
    summary["audit_chain"] = {"intact": chain.ok, "records": chain.checked, "head": chain.head_hash}
    return summary


def period_figures(
    store: ComplianceStore,
    since: datetime | None = None,
    until: datetime | None = None,
    completions: Sequence[Completion] | None = None,
) -> dict[str, Any]:
    """:func:`period_summary` without the audit chain, whose check reads every record of the
    ledger whatever the period (the auditor page runs it apart, in the background).

    :param completions: the period's :func:`completions_between`, if already read.
    """
    if completions is None:
        completions = completions_between(store, since, until)
    durations = [c.duration for c in completions if c.duration is not None]
    received = store.received_between(since, until)
    now = utcnow()
    open_overdue = [r.id for r in store.open_requests_received_before(now - GDPR_DEADLINE)]
    deferred = store.deferred_requests(received_since=since, received_until=until)
    exemptions = exemptions_between(store, since, until)
    held = [
        r
        for r in store.list_requests([RequestStatus.ON_HOLD])
        if (since is None or r.received_at >= since) and (until is None or r.received_at < until)
    ]
    return {
        "period": {
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
        },
        "received": sum(received.values()),
        "received_by_current_status": dict(sorted(received.items())),
        # Answered in the period, as their erasure records say: everything erased and proven
        # (completed), or all but what the erasure policy kept (completed_with_exemptions). The
        # times to complete and the deadline figures below measure both: each was answered.
        "answered": len(completions),
        "completed": len(completions) - exemptions.requests,
        "completed_with_exemptions": exemptions.requests,
        # What the policy keeps now of those requests (their latest ledger entry: a review may
        # have erased what its record kept), per action, and when the withheld ones come back.
        "kept_objects": sum(exemptions.kept_by_action.values()),
        "kept_by_action": exemptions.kept_by_action,
        "exemptions_settled_by_review": exemptions.settled,
        "next_reviews": exemptions.next_reviews,
        "failed": received.get("failed", 0),
        "needs_attention": received.get("needs_attention", 0),
        # Not failures: a provider's quota is spent (Segment's monthly regulations); the first run
        # after not_before takes each of them again.
        "deferred": received.get("deferred", 0),
        # Not failures either, nor overdue: a legal hold suspends their erasure (docs/holds.md).
        "on_hold": received.get("on_hold", 0),
        "on_hold_requests": [{"request_id": r.id, "reason": r.last_error} for r in held],
        "deferred_requests": [
            {"request_id": r.id, "not_before": r.not_before.isoformat(), "reason": r.last_error}
            for r in deferred
        ],
        "median_time_to_complete_hours": _hours(statistics.median(durations)) if durations else None,
        "max_time_to_complete_hours": _hours(max(durations)) if durations else None,
        "completed_late": sum(d > GDPR_DEADLINE for d in durations),
        "open_and_overdue": len(open_overdue),
        "open_and_overdue_ids": open_overdue,
    }


@dataclass(frozen=True)
class Completion:
    """When one request was received and completed, as its audit record states (``None`` when a
    record lacks the time)."""

    seq: int
    request_id: str
    received_at: datetime | None
    completed_at: datetime | None

    @property
    def duration(self) -> timedelta | None:
        if self.received_at is None or self.completed_at is None:
            return None
        return self.completed_at - self.received_at


#: What the reports count kept objects by: the actions that keep a Stripe customer (``redact``
#: counts one whose amounts are kept for a period, ``kept`` lists no other).
KEPT_ACTIONS = (WITHHOLD, REDACT, RETAIN, HOLD_FOR_REVIEW)


@dataclass(frozen=True)
class Exemptions:
    """What the erasure policy kept of the requests a period's records closed with exemptions.

    :param requests: erasure records of the period with ``outcome`` ``completed_with_exemptions``.
    :param kept_by_action: objects kept now (each request's latest entry, the record or its last
        review), per action of :data:`KEPT_ACTIONS`.
    :param settled: of those requests, how many a review since closed ``completed`` (nothing
        kept any more).
    :param next_reviews: ``{"request_id", "review_date"}`` of each request still withholding
        something, its earliest review date (ISO 8601), soonest first; kept objects without a
        review date (``retain``, ``hold_for_review``) come back only by hand.
    """

    requests: int
    kept_by_action: dict[str, int]
    settled: int
    next_reviews: list[dict[str, str]]


def exemptions_between(
    store: ComplianceStore, since: datetime | None = None, until: datetime | None = None
) -> Exemptions:
    """:class:`Exemptions` of the erasure records written in ``[since, until)``: only those
    records and the reviews since are read (:meth:`ComplianceStore.audit_exemption_entries`)."""
    latest: dict[str, AuditEntry] = {}
    for entry in store.audit_exemption_entries(since, until):  # chain order: later entries win
        if entry.kind == REVIEW:
            rid = str(entry.record.get("request_id") or "")
            if rid in latest:  # a review of a record of the period
                latest[rid] = entry
        else:
            latest[entry.request_id] = entry
    kept_by_action = dict.fromkeys(KEPT_ACTIONS, 0)
    reviews = []
    settled = 0
    for rid, entry in latest.items():
        kept = entry.record.get("kept") or []
        settled += entry.record.get("outcome") != COMPLETED_WITH_EXEMPTIONS
        for item in kept:
            action = str(item.get("action"))
            kept_by_action[action] = kept_by_action.get(action, 0) + 1
        dates = [datetime.fromisoformat(item["review_date"]) for item in kept if item.get("review_date")]
        if dates:
            reviews.append((min(dates), rid))
    reviews.sort()
    return Exemptions(
        requests=len(latest),
        kept_by_action=kept_by_action,
        settled=settled,
        next_reviews=[{"request_id": rid, "review_date": when.isoformat()} for when, rid in reviews],
    )


def completions_between(
    store: ComplianceStore, since: datetime | None = None, until: datetime | None = None
) -> list[Completion]:
    """The received and completed times of the audit records written in ``[since, until)``, in
    chain order, read without parsing the records (a fraction of a second for 100,000)."""
    return [
        Completion(seq, request_id, _moment(received), _moment(completed))
        for seq, request_id, received, completed in store.audit_completion_times(since, until)
    ]


def completions_per_week(completions: Iterable[Completion]) -> list[tuple[str, int]]:
    """Requests completed per ISO week (``2026-W45``), every week from the first to the last
    one with a completion, weeks without any included as 0."""
    counts: Counter[date] = Counter()
    for completion in completions:
        if completion.completed_at is not None:
            day = completion.completed_at.date()
            counts[day - timedelta(days=day.weekday())] += 1  # the week's Monday
    if not counts:
        return []
    week, last, weeks = min(counts), max(counts), []
    while week <= last:
        year, number, _ = week.isocalendar()
        weeks.append((f"{year}-W{number:02d}", counts[week]))
        week += timedelta(days=7)
    return weeks


def export_item(entry: AuditEntry) -> dict[str, Any]:
    """One record as the JSON export holds it: the record with its chain fields, and its kind."""
    return {
        "seq": entry.seq,
        "kind": entry.kind,
        "request_id": entry.request_id,
        "recorded_at": entry.recorded_at.isoformat(),
        "prev_hash": entry.prev_hash,
        "record_hash": entry.record_hash,
        "record": entry.record,
    }


def iter_export(entries: Iterable[AuditEntry], fmt: str) -> Iterator[str]:
    """:func:`write_export`'s output in pieces, one per record, for a response streamed while
    ``entries`` is read page by page (an export of 100,000 records never sits in memory)."""
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for entry in entries:
            writer.writerow(export_row(entry))
            yield out.getvalue()
            out.seek(0)
            out.truncate()
        yield out.getvalue()
        return
    count = 0
    yield "["
    for entry in entries:
        yield ("," if count else "") + "\n  " + json.dumps(export_item(entry), sort_keys=True)
        count += 1
    yield "\n]\n" if count else "]\n"


def _moment(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _hours(delta: timedelta) -> float:
    return round(delta.total_seconds() / 3600, 3)
