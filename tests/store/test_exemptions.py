"""``completed_with_exemptions``, on both backends: a request done except for what the erasure
policy kept. Claimed again only at its review date (``not_before``), never without one; it keeps
its first completion time; its identifiers are forgotten like a completed request's; it is not
open for the 30-day deadline, not even while a review works on it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gdpr_erasure.identifiers import SubjectIdentifiers
from gdpr_erasure.store import InvalidTransition, RequestStatus
from gdpr_erasure.store.schema import erasure_requests as R

S = RequestStatus


def ident(n: int = 0) -> SubjectIdentifiers:
    return SubjectIdentifiers.parse(email=f"person{n}@example.com", phone=f"+1415555{n:04d}")


def _closed_with_exemptions(store, rid: str, review: datetime | None):
    store.submit(rid, ident(len(rid)))
    assert store.claim(1, "run-1", request_ids=[rid]) == [rid]
    return store.transition(rid, S.COMPLETED_WITH_EXEMPTIONS, not_before=review)


def test_closing_with_exemptions_records_the_review_date_and_the_completion(store):
    review = datetime.now(UTC) + timedelta(days=30)
    closed = _closed_with_exemptions(store, "req-1", review)
    assert closed.status is S.COMPLETED_WITH_EXEMPTIONS
    assert closed.not_before == review and closed.completed_at is not None
    assert closed.lease_expires_at is None and closed.last_error is None


def test_it_is_claimed_again_only_once_its_review_date_has_passed(store):
    _closed_with_exemptions(store, "req-later", datetime.now(UTC) + timedelta(days=30))
    _closed_with_exemptions(store, "req-never", None)
    due = _closed_with_exemptions(store, "req-due", datetime.now(UTC) + timedelta(days=60))
    assert store.claim(10, "run-2") == []
    with store.engine.begin() as conn:  # time moves: the review date has passed
        conn.execute(
            R.update().where(R.c.id == "req-due").values(not_before=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert store.claim(10, "run-3") == ["req-due"]
    reviewed = store.get("req-due")
    # The review keeps the first completion time: the request was answered then.
    assert (reviewed.status, reviewed.not_before, reviewed.attempts) == (S.IN_PROGRESS, None, 2)
    assert reviewed.completed_at == due.completed_at
    # Nothing to review (retain, hold_for_review, redact with retention): never claimed again.
    assert store.get("req-never").status is S.COMPLETED_WITH_EXEMPTIONS
    assert store.claim(10, "run-4") == []


def test_a_review_ends_completed_or_with_exemptions_again(store):
    first = _closed_with_exemptions(store, "req-1", datetime.now(UTC) - timedelta(seconds=1))
    assert store.claim(1, "review-1") == ["req-1"]
    again = datetime.now(UTC) + timedelta(days=30)
    kept = store.transition("req-1", S.COMPLETED_WITH_EXEMPTIONS, not_before=again)
    assert (kept.not_before, kept.completed_at) == (again, first.completed_at)
    with pytest.raises(InvalidTransition):  # only a run's claim takes it back
        store.transition("req-1", S.COMPLETED)


def test_requeue_checks_it_again_now(store):
    _closed_with_exemptions(store, "req-1", None)
    requeued = store.requeue("req-1")
    assert (requeued.status, requeued.not_before) == (S.PENDING, None)
    assert store.claim(1, "run") == ["req-1"]


def test_its_identifiers_are_forgotten_like_a_completed_request_s(store):
    closed = _closed_with_exemptions(store, "req-1", datetime.now(UTC) + timedelta(days=30))
    due = store.identifiers_due_for_erasure(
        completed_before=closed.completed_at, unresolved_before=datetime.now(UTC) - timedelta(days=60)
    )
    assert [r.id for r in due] == ["req-1"]
    assert store.erase_identifiers("req-1", "ab" * 32) is True
    assert store.get("req-1").identifiers is None


def test_it_is_not_open_for_the_deadline_even_while_reviewed(store):
    _closed_with_exemptions(store, "req-1", datetime.now(UTC) - timedelta(seconds=1))
    store.submit("req-open", ident(9))
    later = datetime.now(UTC) + timedelta(days=1)
    assert [r.id for r in store.open_requests_received_before(later)] == ["req-open"]
    assert store.claim(10, "review", request_ids=["req-1"]) == ["req-1"]  # in_progress: a review
    assert [r.id for r in store.open_requests_received_before(later)] == ["req-open"]
