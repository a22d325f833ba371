"""Auditor exports: period filters and the summary, on both backends."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

from gdpr_erasure.identifiers import SubjectIdentifiers
from gdpr_erasure.ledger.export import period_summary, write_export
from gdpr_erasure.store import RequestStatus

NOW = datetime.now(UTC)


def _complete(store, rid, received_days_ago, took_hours):
    received = NOW - timedelta(days=received_days_ago)
    store.submit(rid, SubjectIdentifiers.parse(stripe_customer_id="cus_abcdef1"), received_at=received)
    store.claim(1, "run", request_ids=[rid])
    store.transition(rid, RequestStatus.COMPLETED)
    record = {
        "outcome": "completed",
        "received_at": received.isoformat(),
        "completed_at": (received + timedelta(hours=took_hours)).isoformat(),
        "subject": {"identifiers_hash": "ab" * 32},
        "stripe": {"customer_ids": ["cus_abcdef1"], "method": "delete"},
    }
    return store.append_audit(rid, record)


def test_summary_counts_durations_and_lateness(store):
    _complete(store, "fast", 2, took_hours=1)
    _complete(store, "slow", 40, took_hours=24 * 31)  # completed after the 30-day limit
    _complete(store, "mid", 3, took_hours=5)
    store.submit(
        "open-old",
        SubjectIdentifiers.parse(stripe_customer_id="cus_abcdef2"),
        received_at=NOW - timedelta(days=35),
    )
    store.submit("open-new", SubjectIdentifiers.parse(stripe_customer_id="cus_abcdef3"))

    summary = period_summary(store)
    assert summary["received"] == 5
    assert summary["completed"] == 3
    assert summary["median_time_to_complete_hours"] == 5.0
    assert summary["max_time_to_complete_hours"] == 744.0
    assert summary["completed_late"] == 1
    assert summary["open_and_overdue_ids"] == ["open-old"]
    assert summary["audit_chain"]["intact"] is True


def test_period_filters_select_records_by_when_they_were_written(store):
    _complete(store, "a", 1, 1)
    _complete(store, "b", 1, 1)
    assert [e.request_id for e in store.audit_entries_between(since=NOW - timedelta(minutes=5))] == ["a", "b"]
    assert store.audit_entries_between(until=NOW - timedelta(days=1)) == []
    assert period_summary(store, since=NOW + timedelta(days=1))["completed"] == 0


def test_csv_and_json_exports_carry_the_chain(store):
    entries = [_complete(store, "a", 1, 2), _complete(store, "b", 1, 3)]
    out = io.StringIO()
    assert write_export(entries, "csv", out) == 2
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["request_id"] for r in rows] == ["a", "b"]
    assert rows[1]["prev_hash"] == rows[0]["record_hash"]
    assert rows[0]["stripe_customer_ids"] == "cus_abcdef1"
    out = io.StringIO()
    write_export(entries, "json", out)
    parsed = json.loads(out.getvalue())
    assert [p["seq"] for p in parsed] == [1, 2]
    assert parsed[0]["record"]["subject"]["identifiers_hash"] == "ab" * 32


def test_hold_entries_are_exported_as_their_own_kind_and_are_no_completion(store):
    from gdpr_erasure.holds import place_hold, release_hold

    _complete(store, "a", 1, 2)
    store.submit(
        "held-old", SubjectIdentifiers.parse(email="held@example.com"), received_at=NOW - timedelta(days=40)
    )
    hold = place_hold(store, reason="LEGAL-5 dispute", placed_by="ops", request_id="held-old").hold
    _complete(store, "b", 1, 3)

    summary = period_summary(store)
    assert summary["completed"] == 2  # the hold entry is no completion
    assert summary["on_hold"] == 1
    assert summary["open_and_overdue_ids"] == []  # held: the erasure is suspended, not late
    assert summary["audit_chain"] == {"intact": True, "records": 3, "head": summary["audit_chain"]["head"]}

    release_hold(store, hold.hold_id, reason="LEGAL-5 closed", released_by="ops")
    entries = store.audit_entries_between()
    out = io.StringIO()
    assert write_export(entries, "csv", out) == 4
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [(r["kind"], r["request_id"], r["hold_action"]) for r in rows] == [
        ("erasure", "a", ""),
        ("hold", "held-old", "placed"),
        ("erasure", "b", ""),
        ("hold", "held-old", "released"),
    ]
    placed = rows[1]
    assert (placed["hold_id"], placed["hold_target_type"], placed["hold_target"]) == (
        hold.hold_id,
        "request",
        "held-old",
    )
    assert (placed["hold_reason"], placed["hold_until"], placed["outcome"]) == ("LEGAL-5 dispute", "", "")
    assert rows[3]["hold_reason"] == "LEGAL-5 closed" and rows[2]["prev_hash"] == rows[1]["record_hash"]
    out = io.StringIO()
    write_export(entries, "json", out)
    items = json.loads(out.getvalue())
    assert [(i["kind"], i["request_id"]) for i in items] == [
        ("erasure", "a"),
        ("hold", f"{hold.hold_id}/placed"),  # the ledger's key, as hashed into the leaf
        ("erasure", "b"),
        ("hold", f"{hold.hold_id}/released"),
    ]
    assert items[1]["record"]["target"] == "held-old"


def test_what_the_policy_kept_is_in_each_row_and_reviews_are_rows_of_their_request(store):
    """Records and the review entry as ``write_ledger_record`` builds them (tests/auditor's
    seeding): the CSV summarises ``kept`` per entry, a review is a row of the request it reviewed
    (kind ``review``, never a request named ``<id>/review/<n>``); JSON keeps every entry whole,
    filed under its ledger key, so its leaf can be recomputed."""
    from auditor.auditor_support import november, seed_review, seed_with_exemptions

    from gdpr_erasure.hashing import load_hash_key, stripe_tag

    key = load_hash_key()
    review_date = NOW + timedelta(days=30)  # the review keeps it to now + 60 days
    _complete(store, "plain", 1, 2)
    _, withheld = seed_with_exemptions(
        store,
        key,
        "kept",
        SubjectIdentifiers.parse(email="k@example.com"),
        received_at=november(1),
        review_date=review_date,
    )
    seed_review(store, key, "kept", withheld, erase=False)  # the dispute is still open: kept again
    _, erased = seed_with_exemptions(
        store,
        key,
        "reviewed",
        SubjectIdentifiers.parse(email="r@example.com"),
        received_at=november(2),
        review_date=review_date,
    )
    seed_review(store, key, "reviewed", erased, erase=True)
    entries = store.audit_entries()
    out = io.StringIO()
    assert write_export(entries, "csv", out) == 5
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [(r["kind"], r["request_id"], r["outcome"], r["review"]) for r in rows] == [
        ("erasure", "plain", "completed", ""),
        ("erasure", "kept", "completed_with_exemptions", ""),
        ("review", "kept", "completed_with_exemptions", "2"),
        ("erasure", "reviewed", "completed_with_exemptions", ""),
        ("review", "reviewed", "completed", "2"),
    ]
    kept, kept_again = (
        store.audit_entry("kept").record["kept"],
        store.audit_entry("kept/review/2").record["kept"],
    )
    assert rows[0]["kept"] == ""
    assert rows[1]["kept"] == f"{stripe_tag(key, withheld)} withhold open_dispute review {review_date.date()}"
    again = kept_again[0]["review_date"][:10]
    assert again != kept[0]["review_date"][:10]  # the review set the next review date
    assert rows[2]["kept"] == f"{stripe_tag(key, withheld)} withhold open_dispute review {again}"
    assert rows[4]["kept"] == ""  # erased at its review: nothing kept any more
    review = rows[4]
    assert (review["follows_seq"], review["stripe_customer_ids"]) == (rows[3]["seq"], stripe_tag(key, erased))
    assert (
        review["reviewed_at"]
        and review["completed_at"] == ""
        and review["prev_hash"] == rows[3]["record_hash"]
    )

    out = io.StringIO()
    write_export(entries, "json", out)
    items = json.loads(out.getvalue())
    assert [(i["kind"], i["request_id"]) for i in items] == [
        ("erasure", "plain"),
        ("erasure", "kept"),
        ("review", "kept/review/2"),  # the ledger's key, as hashed into the leaf
        ("erasure", "reviewed"),
        ("review", "reviewed/review/2"),
    ]
    assert items[1]["record"]["kept"] == kept and items[2]["record"]["kept"] == kept_again
    assert items[4]["record"]["follows"] == {"seq": items[3]["seq"], "record_hash": items[3]["record_hash"]}


def test_a_kept_summary_names_the_action_the_cases_or_the_rule_and_the_date():
    from gdpr_erasure.ledger.export import kept_summary

    assert kept_summary(None) == kept_summary([]) == ""
    kept = [
        {
            "id": "cus#aaa",
            "action": "withhold",
            "cases": ["open_dispute", "customer_balance"],
            "kind": "stripe.customer",
            "review_date": "2027-01-28T09:30:00+00:00",
            "retained_until": None,
        },
        {
            "id": "cus#bbb",
            "action": "redact",
            "cases": ["open_invoice"],
            "kind": "stripe.customer",
            "review_date": None,
            "retained_until": "2036-11-29T09:30:00+00:00",
        },
        {
            "id": "cus#ccc",
            "action": "hold_for_review",
            "cases": [],
            "kind": "stripe.customer",
            "review_date": None,
            "retained_until": None,
        },
    ]
    assert kept_summary(kept) == (
        "cus#aaa withhold open_dispute+customer_balance review 2027-01-28; "
        "cus#bbb redact open_invoice until 2036-11-29; cus#ccc hold_for_review stripe.customer"
    )
