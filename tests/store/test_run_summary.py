"""``summarize_run`` (RunSummaryOperator) on a real store, SQLite and PostgreSQL: a request closed
with exemptions counts apart from ``completed``, with what the erasure policy keeps now (the
latest ledger entry: a review's, when the last attempt was a review) by action and its review
date; a held request is listed with its hold; neither fails the run, a failed request does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gdpr_erasure.holds import place_hold
from gdpr_erasure.identifiers import SubjectIdentifiers
from gdpr_erasure.operators.summary import RunFailed, RunSummaryOperator, kept_now
from gdpr_erasure.store import RequestStatus

S = RequestStatus
NOW = datetime.now(UTC)


def item(tag: str, action: str, *, review: datetime | None = None, case: str | None = None) -> dict:
    """One kept object as the audit record lists it."""
    return {
        "system": "stripe",
        "kind": "stripe.customer",
        "id": f"cus#{tag * 12}",
        "action": action,
        "cases": [case] if case else [],
        "reason": "kept by the policy",
        "legal_basis": "Art. 17(3)(e) GDPR",
        "review_date": review.isoformat() if review else None,
        "retained_until": None
        if review or action == "hold_for_review"
        else (NOW + timedelta(days=3650)).isoformat(),
    }


def submit(store, rid: str) -> None:
    store.submit(rid, SubjectIdentifiers.parse(email=f"{rid}@example.com"))


def close(store, rid: str, kept: list[dict]) -> None:
    """Claim and close ``rid`` as ``write_ledger_record`` does: its record, then its status."""
    attempt = store.claim(1, "run", request_ids=[rid]) and store.get(rid).attempts
    outcome = "completed_with_exemptions" if kept else "completed"
    store.append_audit(rid, {"outcome": outcome, "kept": kept, "attempts": attempt})
    reviews = [datetime.fromisoformat(i["review_date"]) for i in kept if i["review_date"]]
    store.transition(rid, S(outcome), not_before=min(reviews, default=None))


def reviewed(store, rid: str, kept: list[dict]) -> None:
    """A later run's review of ``rid``: claimed again, a review entry, the status after it."""
    store.transition(rid, S.PENDING, expected=[S.COMPLETED_WITH_EXEMPTIONS])  # as requeue does
    store.claim(1, "review", request_ids=[rid])
    attempt = store.get(rid).attempts
    store.append_audit(
        f"{rid}/review/{attempt}",
        {
            "kind": "review",
            "request_id": rid,
            "review": attempt,
            "outcome": "completed_with_exemptions",
            "kept": kept,
        },
    )
    reviews = [datetime.fromisoformat(i["review_date"]) for i in kept if i["review_date"]]
    store.transition(rid, S.COMPLETED_WITH_EXEMPTIONS, not_before=min(reviews, default=None))


def summarize(store, ids: list[str]) -> RunSummaryOperator:
    operator = RunSummaryOperator(task_id="summarize_run", request_ids=ids)
    operator.store = store  # the test's store, not the compliance_db connection's
    return operator


@pytest.fixture
def run(store):
    """One run's requests: plain, kept with a review date, reviewed since, kept for good, held."""
    in_30, in_60, in_90 = (NOW + timedelta(days=d) for d in (30, 60, 90))
    for rid in ("req-plain", "req-dispute", "req-reviewed", "req-retained", "req-held"):
        submit(store, rid)
    close(store, "req-plain", [])
    close(
        store, "req-dispute", [item("a", "withhold", review=in_60, case="open_dispute"), item("b", "redact")]
    )
    close(store, "req-reviewed", [item("c", "withhold", review=in_30, case="customer_balance")])
    reviewed(store, "req-reviewed", [item("c", "withhold", review=in_90, case="customer_balance")])
    close(store, "req-retained", [item("d", "retain"), item("e", "hold_for_review")])
    hold = place_hold(store, reason="LEGAL-9 litigation", placed_by="ops", request_id="req-held").hold
    return {"in_60": in_60, "in_90": in_90, "hold": hold}


def test_exempted_and_held_requests_are_counted_apart_and_never_fail_the_run(store, run, capsys):
    ids = ["req-plain", "req-dispute", "req-reviewed", "req-retained", "req-held"]
    capsys.readouterr()
    summary = summarize(store, ids).execute({})
    log = capsys.readouterr().out  # the task SDK's logger writes there outside a task

    assert summary["requests"] == 5
    assert (summary["completed"], summary["completed_with_exemptions"], summary["on_hold"]) == (1, 3, 1)
    assert "failed" not in summary and summary["overdue"] == 0
    assert summary["kept_by_action"] == {"withhold": 2, "redact": 1, "retain": 1, "hold_for_review": 1}
    # When each comes back: the review's new date for the one reviewed; none for what is kept for good.
    assert summary["review_dates"] == {
        "req-dispute": run["in_60"].isoformat(),
        "req-reviewed": run["in_90"].isoformat(),
    }
    assert summary["on_hold_by"] == {"req-held": run["hold"].hold_id}

    assert "completed_with_exemptions  3" in log
    assert "Kept by the erasure policy: 5 object(s) of 3 request(s)" in log
    assert f"req-dispute: cus#{'a' * 12} withhold (open_dispute): review on {run['in_60'].date()}" in log
    assert f"req-reviewed: cus#{'c' * 12} withhold (customer_balance): review on {run['in_90'].date()}" in log
    assert (
        f"req-retained: cus#{'e' * 12} hold_for_review (stripe.customer): kept until a person decides" in log
    )
    assert "req-retained: completed with exemptions; no automatic review" in log
    assert "by action: withhold 2, redact 1, retain 1, hold_for_review 1" in log
    assert "On legal hold: 1 request(s), nothing written" in log
    assert f"req-held: on hold: {run['hold'].hold_id}; the erasure resumes after its release" in log
    assert "did not complete" not in log and "example.com" not in log


def test_what_is_kept_now_is_the_latest_entry_s_list(store, run):
    assert [i["review_date"] for i in kept_now(store, store.get("req-reviewed"))] == [
        run["in_90"].isoformat()
    ]
    assert [i["id"] for i in kept_now(store, store.get("req-dispute"))] == [
        f"cus#{'a' * 12}",
        f"cus#{'b' * 12}",
    ]
    assert kept_now(store, store.get("req-plain")) == []
    assert kept_now(store, store.get("req-held")) == []  # no record: nothing closed yet


def test_only_a_failure_fails_the_run_and_only_it_is_named(store, run):
    submit(store, "req-broken")
    store.claim(1, "run", request_ids=["req-broken"])
    store.record_failure("req-broken", "erase_stripe: error", max_failures=3)
    ids = ["req-dispute", "req-held", "req-broken"]
    with pytest.raises(RunFailed) as failed:
        summarize(store, ids).execute({})
    assert str(failed.value) == "1 of 3 request(s) did not complete: {'req-broken': 'failed'}"
