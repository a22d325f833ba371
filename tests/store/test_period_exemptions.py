"""The period's report (``period_summary``, ``audit export --summary``, the auditor page's figures)
on both backends: requests closed with exemptions are answered, never ``completed`` plain nor
failures; what the erasure policy keeps is counted by action as each request's latest ledger entry
says (a review may have erased it since), with the next review dates; held requests are listed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gdpr_erasure.holds import place_hold
from gdpr_erasure.identifiers import SubjectIdentifiers
from gdpr_erasure.ledger.export import exemptions_between, period_figures, period_summary
from gdpr_erasure.store import RequestStatus

NOW = datetime.now(UTC)
S = RequestStatus


def kept(tag: str, action: str, review_in_days: int | None = None) -> dict:
    """One kept object as the audit record lists it (``operators.ledger_record.kept_objects``)."""
    review = (NOW + timedelta(days=review_in_days)).isoformat() if review_in_days is not None else None
    return {
        "system": "stripe",
        "kind": "stripe.customer",
        "id": f"cus#{tag * 12}"[:16],
        "action": action,
        "cases": ["open_dispute"] if action == "withhold" else [],
        "reason": "kept by the policy",
        "legal_basis": "Art. 17(3)(e) GDPR",
        "review_date": review,
        "retained_until": None if review else (NOW + timedelta(days=3650)).isoformat(),
    }


def close(store, rid: str, items: list[dict], *, received_days_ago: int = 2) -> None:
    """Submit, claim and close ``rid`` with its erasure record, as ``write_ledger_record`` does."""
    received = NOW - timedelta(days=received_days_ago)
    store.submit(rid, SubjectIdentifiers.parse(email=f"{rid}@example.com"), received_at=received)
    store.claim(1, "run-1", request_ids=[rid])
    outcome = "completed_with_exemptions" if items else "completed"
    store.append_audit(
        rid,
        {
            "outcome": outcome,
            "kept": items,
            "attempts": 1,
            "received_at": received.isoformat(),
            "completed_at": (received + timedelta(hours=2)).isoformat(),
        },
    )
    review = min((datetime.fromisoformat(i["review_date"]) for i in items if i["review_date"]), default=None)
    store.transition(rid, S(outcome), not_before=review)


def review(store, rid: str, items: list[dict], attempt: int = 2) -> None:
    """A later run's review of what ``rid`` kept: a review entry, never a rewrite of the record."""
    first = store.audit_entry(rid)
    store.append_audit(
        f"{rid}/review/{attempt}",
        {
            "kind": "review",
            "request_id": rid,
            "review": attempt,
            "follows": {"seq": first.seq, "record_hash": first.record_hash},
            "outcome": "completed_with_exemptions" if items else "completed",
            "kept": items,
            "attempts": attempt,
        },
    )


def test_exempted_requests_are_answered_not_completed_plain_and_counted_by_action(store):
    close(store, "plain", [])
    close(store, "dispute", [kept("a", "withhold", review_in_days=60), kept("b", "redact")])
    close(store, "balance", [kept("c", "withhold", review_in_days=30)])
    close(store, "kept-for-good", [kept("d", "retain"), kept("e", "hold_for_review")])

    summary = period_summary(store)
    assert (summary["answered"], summary["completed"], summary["completed_with_exemptions"]) == (4, 1, 3)
    assert (summary["failed"], summary["needs_attention"], summary["open_and_overdue"]) == (0, 0, 0)
    assert summary["received_by_current_status"] == {"completed": 1, "completed_with_exemptions": 3}
    assert summary["kept_objects"] == 5
    assert summary["kept_by_action"] == {"withhold": 2, "redact": 1, "retain": 1, "hold_for_review": 1}
    # The soonest review first; nothing kept for good has a date (it comes back only by hand).
    assert [(r["request_id"], r["review_date"][:10]) for r in summary["next_reviews"]] == [
        ("balance", (NOW + timedelta(days=30)).date().isoformat()),
        ("dispute", (NOW + timedelta(days=60)).date().isoformat()),
    ]
    assert summary["exemptions_settled_by_review"] == 0
    # Every exempted request was answered in time: its time counts like a completed one's.
    assert summary["median_time_to_complete_hours"] == 2.0
    assert summary["audit_chain"]["intact"] is True
    # The auditor page's figures (without the chain check) say the same.
    figures = period_figures(store)
    assert {k: figures[k] for k in ("completed", "completed_with_exemptions", "kept_by_action")} == {
        k: summary[k] for k in ("completed", "completed_with_exemptions", "kept_by_action")
    }


def test_what_is_kept_now_is_the_latest_review_s_word(store):
    close(store, "settled", [kept("a", "withhold", review_in_days=60)])
    close(
        store, "still", [kept("b", "withhold", review_in_days=30), kept("c", "withhold", review_in_days=30)]
    )
    review(store, "settled", [])  # the dispute closed: the review erased the customer
    review(store, "still", [kept("c", "withhold", review_in_days=90)])  # one of two still withheld

    summary = period_summary(store)
    # Records are never rewritten: each request was answered with exemptions in the period.
    assert (summary["completed"], summary["completed_with_exemptions"]) == (0, 2)
    assert summary["exemptions_settled_by_review"] == 1
    assert summary["kept_by_action"] == {"withhold": 1, "redact": 0, "retain": 0, "hold_for_review": 0}
    assert [(r["request_id"], r["review_date"][:10]) for r in summary["next_reviews"]] == [
        ("still", (NOW + timedelta(days=90)).date().isoformat())
    ]
    assert summary["audit_chain"]["records"] == 4  # reviews are entries, not completions
    assert summary["answered"] == 2


def test_a_period_counts_the_records_written_in_it_and_their_later_reviews(store):
    close(store, "old", [kept("a", "withhold", review_in_days=30)])
    later = datetime.now(UTC)
    close(store, "new", [kept("b", "retain")])
    review(store, "old", [])

    # The second half: only the record written in it, and no review of the first half's record.
    after = exemptions_between(store, since=later)
    assert (after.requests, after.settled, after.next_reviews) == (1, 0, [])
    assert after.kept_by_action["retain"] == 1
    # The first half: its record, and the review written after the period that settled it.
    before = exemptions_between(store, until=later)
    assert (before.requests, before.settled, sum(before.kept_by_action.values())) == (1, 1, 0)
    assert period_summary(store, since=NOW + timedelta(days=1))["completed_with_exemptions"] == 0


def test_held_requests_are_listed_with_their_hold_and_are_neither_failed_nor_late(store):
    close(store, "done", [])
    store.submit(
        "held-old", SubjectIdentifiers.parse(email="held@example.com"), received_at=NOW - timedelta(days=40)
    )
    store.submit("held-new", SubjectIdentifiers.parse(email="held2@example.com"))
    first = place_hold(store, reason="LEGAL-7 litigation", placed_by="ops", request_id="held-old").hold
    second = place_hold(store, reason="LEGAL-8 litigation", placed_by="ops", request_id="held-new").hold

    summary = period_summary(store)
    assert (summary["on_hold"], summary["failed"], summary["open_and_overdue"]) == (2, 0, 0)
    assert summary["on_hold_requests"] == [
        {"request_id": "held-old", "reason": f"on hold: {first.hold_id}"},
        {"request_id": "held-new", "reason": f"on hold: {second.hold_id}"},
    ]
    assert (summary["completed"], summary["completed_with_exemptions"]) == (1, 0)
    # Received in the last week: the old one is outside the period.
    recent = period_summary(store, since=NOW - timedelta(days=7))
    assert [r["request_id"] for r in recent["on_hold_requests"]] == ["held-new"]
