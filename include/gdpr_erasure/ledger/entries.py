"""A request's entries in the ledger: its erasure record and the reviews that followed it.

A request closed ``completed_with_exemptions`` may be reviewed later (docs/policy.md): each review
appends an entry of kind ``review`` keyed ``<request id>/review/<attempt>`` and never rewrites the
record. What holds *now* for the request (its outcome, what is still kept) is in its latest
entry; what was erased is in all of them. Receipts, the intake's status answer and the auditor's
drill-down read the request through :func:`request_entries`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gdpr_erasure.store import AuditEntry, ComplianceStore, RequestNotFound
from gdpr_erasure.store.chain import ERASURE, REVIEW

COMPLETED = "completed"
COMPLETED_WITH_EXEMPTIONS = "completed_with_exemptions"
#: The outcomes an erasure record or a review entry closes a request with.
CLOSED_OUTCOMES = (COMPLETED, COMPLETED_WITH_EXEMPTIONS)


def review_ledger_key(request_id: str, attempt: int) -> str:
    """The ledger key of a request's review in one attempt, as ``write_ledger_record`` files it
    (:func:`gdpr_erasure.operators.ledger_record.review_key`; request ids have no ``/``)."""
    return f"{request_id}/review/{attempt}"


@dataclass(frozen=True)
class RequestEntries:
    """The erasure record of a request and its review entries, in ledger order.

    :param record: the erasure record.
    :param reviews: the review entries that followed it (none for most requests).
    """

    record: AuditEntry
    reviews: tuple[AuditEntry, ...] = ()

    @property
    def latest(self) -> AuditEntry:
        """The entry that says what holds now: the last review, else the record."""
        return self.reviews[-1] if self.reviews else self.record

    @property
    def outcome(self) -> str:
        """``completed`` or ``completed_with_exemptions`` as the latest entry says (records written
        before the erasure policy say ``completed``)."""
        return str(self.latest.record.get("outcome") or COMPLETED)

    @property
    def kept(self) -> list[dict[str, Any]]:
        """What the erasure policy keeps now: the latest entry's ``kept`` (empty in older records)."""
        return list(self.latest.record.get("kept") or [])


def request_entries(
    store: ComplianceStore, request_id: str, attempts: int | None = None
) -> RequestEntries | None:
    """The request's erasure record and its reviews; None when it has no record yet.

    A review is filed under the attempt that made it, always a later one than the record's, so
    the reviews are looked up by key for each attempt since (one indexed read each; a request
    seldom has more than a few attempts) rather than by scanning the ledger.

    :param store: the compliance store.
    :param request_id: the request.
    :param attempts: the request's attempts as stored (read from the store when not given).
    """
    record = store.audit_entry(request_id)
    if record is None or record.kind != ERASURE:
        return None
    if attempts is None:
        try:
            attempts = store.get(request_id).attempts
        except RequestNotFound:
            attempts = 0
    first = int(record.record.get("attempts") or 0)
    reviews = []
    for attempt in range(first + 1, attempts + 1):
        review = store.audit_entry(review_ledger_key(request_id, attempt))
        if review is not None and review.kind == REVIEW and review.record.get("request_id") == request_id:
            reviews.append(review)
    return RequestEntries(record, tuple(sorted(reviews, key=lambda e: e.seq)))
