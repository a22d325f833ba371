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
