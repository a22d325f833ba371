"""Legal holds in the compliance store, on SQLite and PostgreSQL: placing one puts the requests it
names on hold, a claim diverts them in its own transaction, a release (or the end of ``until``)
sends them back to pending, a person is matched by the keyed hash of one identifier normalised as
the intake does, and nothing about the person is kept in clear."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from gdpr_erasure.hashing import identifier_hashes
from gdpr_erasure.holds import (
    HOLD_SCHEMA,
    HoldError,
    IdentifierHasher,
    check_reason,
    place_hold,
    release_hold,
)
from gdpr_erasure.identifiers import SubjectIdentifiers
from gdpr_erasure.store import (
    HoldNotActive,
    HoldNotFound,
    InvalidTransition,
    RequestStatus,
    StoreError,
)
from gdpr_erasure.store import schema as tables
from gdpr_erasure.store.types import utcnow

S = RequestStatus
EMAIL = "Ada.Lovelace@Example.org"
PHONE = "+44 20 7946 0958"


def submit(store, rid: str, **identifiers) -> str:
    return store.submit(rid, SubjectIdentifiers.parse(**identifiers)).request.id


def place(store, key, **target):
    return place_hold(store, reason="LEGAL-1234 litigation", placed_by="ops", key=key, **target)


def release(store, key, hold_id: str):
    return release_hold(store, hold_id, reason="LEGAL-1234 settled", released_by="ops", key=key)


def test_a_hold_on_a_request_keeps_it_from_every_claim_until_released(store, key):
    submit(store, "req-held", email=EMAIL)
    submit(store, "req-free", email="someone.else@example.org")

    change = place(store, key, request_id="req-held")

    assert change.requests == ["req-held"]
    held = store.get("req-held")
    assert (held.status, held.last_error) == (S.ON_HOLD, f"on hold: {change.hold.hold_id}")
    assert store.claim(10, "run-1", hashes_of=IdentifierHasher(key)) == ["req-free"]
    assert store.get("req-held").status is S.ON_HOLD

    released = release(store, key, change.hold.hold_id)

    assert released.requests == ["req-held"]
    assert released.hold.state() == "released" and released.hold.released_by == "ops"
    back = store.get("req-held")
    assert (back.status, back.last_error, back.claimed_by) == (S.PENDING, None, None)
    assert store.claim(10, "run-2", hashes_of=IdentifierHasher(key)) == ["req-held"]
    # Both moves are in the ledger, filed under the hold, and the chain holds.
    entries = [e for e in store.audit_entries() if e.kind == "hold"]
    assert [(e.request_id, e.record["action"]) for e in entries] == [
        (f"{change.hold.hold_id}/placed", "placed"),
        (f"{change.hold.hold_id}/released", "released"),
    ]
    assert entries[0].record == {
        "schema": HOLD_SCHEMA,
        "kind": "hold",
        "hold_id": change.hold.hold_id,
        "action": "placed",
        "target_type": "request",
        "target": "req-held",
        "reason": "LEGAL-1234 litigation",
        "until": None,
        "at": change.hold.placed_at.isoformat(),
    }
    assert entries[1].record["reason"] == "LEGAL-1234 settled"
    assert store.verify_audit_chain().ok


def test_a_hold_on_an_email_holds_every_request_that_gave_it_now_and_later(store, key):
    submit(store, "req-1", email=EMAIL)
    submit(store, "req-2", email=EMAIL.lower(), phone=PHONE)  # the same person, another spelling
    submit(store, "req-other", email="someone.else@example.org")
    store.claim(1, "run-0", request_ids=["req-2"])
    store.record_failure("req-2", "erase_stripe: failed", max_failures=3)  # failed: waits for a retry

    change = place(store, key, email=" ada.lovelace@EXAMPLE.org\n")  # trimmed and lower-cased

    assert change.requests == ["req-1", "req-2"]
    assert change.hold.target_type == "email" and change.hold.hash_key_id == key.key_id
    # The stored target is the per-identifier keyed hash the audit records carry, not the email.
    expected = identifier_hashes(key, SubjectIdentifiers.parse(email=EMAIL))["email"]
    assert change.hold.target == expected
    # A request that arrives after the hold was placed is held by the claim itself.
    submit(store, "req-later", email=EMAIL)
    assert store.claim(10, "run-1", hashes_of=IdentifierHasher(key)) == ["req-other"]
    assert store.get("req-later").status is S.ON_HOLD
    assert store.get("req-later").attempts == 0  # diverted, never claimed

    assert sorted(release(store, key, change.hold.hold_id).requests) == ["req-1", "req-2", "req-later"]
    assert {store.get(r).status for r in ("req-1", "req-2", "req-later")} == {S.PENDING}
    assert store.get("req-2").failures == 1  # a release is no requeue: the failure count stays


def test_a_hold_on_a_phone_matches_it_however_it_was_written(store, key):
    submit(store, "req-1", phone="+442079460958")
    change = place(store, key, phone="+44 (20) 7946-0958")
    assert change.requests == ["req-1"]
    assert change.hold.target == identifier_hashes(key, SubjectIdentifiers.parse(phone=PHONE))["phone"]


def test_nothing_about_the_person_is_stored_in_clear(store, key):
    submit(store, "req-1", email=EMAIL, phone=PHONE)
    change = place(store, key, email=EMAIL)
    place(store, key, phone=PHONE)
    with store.engine.connect() as conn:
        rows = [str(tuple(row)) for row in conn.execute(select(tables.legal_holds))]
        rows += [row.record for row in conn.execute(select(tables.audit_log))]
    text = "\n".join(rows).lower()
    for value in ("ada.lovelace", "example.org", "7946", "0958"):
        assert value not in text
    shown = f"target='email #{change.hold.target[:12]}', state=active"
    assert repr(change.hold) == f"LegalHold(hold_id={change.hold.hold_id!r}, {shown})"


def test_a_request_two_holds_name_waits_for_both(store, key):
    submit(store, "req-1", email=EMAIL)
    first = place(store, key, request_id="req-1")
    second = place(store, key, email=EMAIL)
    assert second.requests == []  # on hold already

    assert release(store, key, first.hold.hold_id).requests == []
    still = store.get("req-1")
    assert (still.status, still.last_error) == (S.ON_HOLD, f"on hold: {second.hold.hold_id}")
    assert release(store, key, second.hold.hold_id).requests == ["req-1"]
    assert store.get("req-1").status is S.PENDING


def test_a_hold_ends_on_its_until_day_and_the_next_claim_takes_the_request(store, key):
    submit(store, "req-1", email=EMAIL)
    today = utcnow().date()
    change = place(store, key, email=EMAIL, until=today)
    assert change.hold.is_active() and store.claim(10, "run-1", hashes_of=IdentifierHasher(key)) == []
    # The day passes (the row is aged: the test cannot wait until tomorrow).
    with store.engine.begin() as conn:
        conn.execute(update(tables.legal_holds).values(until=today - timedelta(days=1)))
    assert store.get_hold(change.hold.hold_id).state() == "expired"
    assert store.list_holds() == []
    assert [h.hold_id for h in store.list_holds(include_inactive=True)] == [change.hold.hold_id]
    assert store.hold_before_write("req-1", IdentifierHasher(key)) == change.hold.hold_id  # still on_hold
    assert store.release_unheld_requests(IdentifierHasher(key)) == ["req-1"]
    assert store.claim(10, "run-2", hashes_of=IdentifierHasher(key)) == ["req-1"]
    with pytest.raises(HoldError, match="in the past"):
        place(store, key, email=EMAIL, until=today - timedelta(days=1))


def test_the_check_before_a_write_catches_a_hold_placed_after_the_claim(store, key):
    submit(store, "req-1", email=EMAIL)
    submit(store, "req-2", email="someone.else@example.org")
    assert store.claim(10, "run-1", hashes_of=IdentifierHasher(key)) == ["req-1", "req-2"]

    change = place(store, key, email=EMAIL)

    assert change.requests == []  # in_progress: left to the run working on it
    assert store.get("req-1").status is S.IN_PROGRESS
    assert store.hold_before_write("req-1", IdentifierHasher(key)) == change.hold.hold_id
    assert store.get("req-1").status is S.ON_HOLD
    assert store.get("req-1").lease_expires_at is None
    assert store.hold_before_write("req-2", IdentifierHasher(key)) is None
    assert store.get("req-2").status is S.IN_PROGRESS


def test_a_claim_diverts_a_held_request_whose_run_died(store, key):
    submit(store, "req-1", email=EMAIL)
    assert store.claim(1, "dead-run", lease=timedelta(seconds=-1)) == ["req-1"]
    place(store, key, request_id="req-1")
    assert store.get("req-1").status is S.IN_PROGRESS  # its lease expired, but in_progress
    assert store.claim(1, "next-run", hashes_of=IdentifierHasher(key)) == []
    assert store.get("req-1").status is S.ON_HOLD


def test_a_claim_fails_rather_than_claim_blindly_without_the_hash_key(store, key):
    submit(store, "req-1", email=EMAIL)
    place(store, key, phone=PHONE)
    with pytest.raises(StoreError, match="needs the identifier hash key"):
        store.claim(10, "run-1")
    assert store.get("req-1").status is S.PENDING  # rolled back: nothing claimed
    place(store, key, request_id="req-1")  # a hold on a request needs no key


def test_requeue_never_lifts_a_hold_and_held_requests_are_not_overdue(store, key):
    submit(store, "req-1", email=EMAIL)
    place(store, key, request_id="req-1")
    with pytest.raises(InvalidTransition, match="on_hold"):
        store.requeue("req-1")
    assert store.open_requests_received_before(utcnow() + timedelta(days=1)) == []


def test_holds_refuse_what_they_cannot_hold(store, key):
    submit(store, "req-done", email=EMAIL)
    store.claim(1, "run")
    store.transition("req-done", S.COMPLETED)
    with pytest.raises(HoldError, match="no request req-missing"):
        place(store, key, request_id="req-missing")
    with pytest.raises(HoldError, match="completed"):
        place(store, key, request_id="req-done")
    with pytest.raises(HoldError, match="exactly one"):
        place(store, key, request_id="req-done", email=EMAIL)
    with pytest.raises(HoldError, match="email: not a valid email address") as refused:
        place(store, key, email="ada.lovelace.example.org")
    assert "lovelace" not in str(refused.value)
    with pytest.raises(HoldError, match="say who you are"):
        place_hold(store, reason="LEGAL-1", placed_by=" ", request_id="req-done")
    with pytest.raises(HoldNotFound):
        release(store, key, "hold-0000")
    change = place(store, key, email=EMAIL)
    release(store, key, change.hold.hold_id)
    with pytest.raises(HoldNotActive):
        release(store, key, change.hold.hold_id)
    assert store.list_holds() == []


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("customer ada@example.org sued", "email address"),
        ("see ada%40example.org", "email address"),
        ("called from +44 20 7946 0958", "phone number"),
        ("call 07946095", "phone number"),
        ("customer cus_N3bG5k2LmQ disputes", "Stripe customer id"),
    ],
)
def test_a_reason_that_names_a_person_is_refused(reason, kind):
    with pytest.raises(HoldError, match=kind) as refused:
        check_reason(reason)
    assert str(refused.value).count("\n") == 0 and "ledger keeps it forever" in str(refused.value)


def test_reasons_are_one_trimmed_line_and_may_hold_dates_and_case_numbers():
    assert (
        check_reason("  LEGAL-1234:\n dispute  until 2026-05-01 ") == "LEGAL-1234: dispute until 2026-05-01"
    )
    assert check_reason("Case 12345 (Art. 17(3)(e) GDPR)") == "Case 12345 (Art. 17(3)(e) GDPR)"
    for bad, message in [("", "empty"), ("x" * 501, "longer than 500"), ("a\u200bb", "control character")]:
        with pytest.raises(HoldError, match=message):
            check_reason(bad)
