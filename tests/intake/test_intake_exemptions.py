"""The status answer of a request the erasure policy kept something of, over real HTTP on SQLite and
PostgreSQL, in both shapes: each object kept in the request's own terms (where, what, its keyed
id, what the policy did, why, on which legal basis, until when) and never an identifier; in
OpenDSR 2.0 the request is ``completed`` and what was kept is this processor's extension. Once a
review erased what was kept the answer is as any completed request's.

The records behind the answers are built by ``write_ledger_record``'s own builders
(tests/auditor's seeding). The ledger is append-only and shared by the session's tests, so each
test uses request ids of its own."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from auditor.auditor_support import LEGAL_BASIS, november, seed_review, seed_with_exemptions
from intake_support import EMAIL, PHONE, assert_no_identifiers, get, native, opendsr, post

from gdpr_erasure.hashing import load_hash_key, stripe_tag
from gdpr_erasure.identifiers import SubjectIdentifiers
from gdpr_erasure.intake.models import ErasureRequestState, OpenDsrRequestState, rfc3339

REVIEW_DATE = datetime.now(UTC) + timedelta(days=30)  # a review that keeps it again: now + 60 days
NATIVE_FIELDS = {"request_id", "status", "received_at", "expected_completion_at", "completed_at"}


def close_with_exemptions(intake, request_id: str) -> tuple[str, str]:
    """The submitted request taken through a run that withheld one of its Stripe customers;
    returns its (deleted, withheld) ``cus_`` ids."""
    identifiers = SubjectIdentifiers.parse(email=EMAIL, phone=PHONE)
    return seed_with_exemptions(
        intake.store,
        load_hash_key(),
        request_id,
        identifiers,
        received_at=november(2),
        review_date=REVIEW_DATE,
    )


def expected_kept(withheld: str) -> list[dict]:
    return [
        {
            "system": "stripe",
            "kind": "stripe.customer",
            "id": stripe_tag(load_hash_key(), withheld),
            "action": "withhold",
            "reason": "a payment of the customer is disputed; withheld: no write to it until its review date",
            "legal_basis": LEGAL_BASIS,
            "review_date": rfc3339(REVIEW_DATE),
            "retained_until": None,
        }
    ]


def test_the_native_answer_lists_what_was_kept_without_an_identifier(intake):
    rid = f"req-kept-{uuid.uuid4().hex[:8]}"
    assert post(intake.url, native(rid)).status_code == 202
    customers = close_with_exemptions(intake, rid)

    response = get(intake.url, rid)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == NATIVE_FIELDS | {"kept"}
    assert body["status"] == "completed_with_exemptions" and body["completed_at"] is not None
    assert body["kept"] == expected_kept(customers[1])
    ErasureRequestState.model_validate(body)  # the OpenAPI document's contract
    assert_no_identifiers(response.text, "the status answer")
    for customer_id in customers:
        assert customer_id not in response.text

    # A repeat of the request answers the same, kept objects included.
    again = post(intake.url, native(rid))
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["kept"] == body["kept"]


def test_opendsr_says_completed_and_lists_what_was_kept_in_its_extension(intake):
    rid = str(uuid.uuid4())
    assert post(intake.url, opendsr(rid)).status_code == 202
    _, withheld = close_with_exemptions(intake, rid)

    response = get(intake.url, rid)
    body = response.json()
    assert body["request_status"] == "completed"  # fulfilled, with the exemptions Art. 17(3) allows
    assert body["extensions"] == {"gdpr-erasure": {"kept": expected_kept(withheld)}}
    assert set(body) == {
        "controller_id",
        "subject_request_id",
        "request_status",
        "received_time",
        "expected_completion_time",
        "api_version",
        "extensions",
    }
    OpenDsrRequestState.model_validate(body)
    assert_no_identifiers(response.text, "the OpenDSR status answer")
    assert withheld not in response.text


def test_once_a_review_erased_what_was_kept_the_answer_is_a_completed_one(intake):
    rid = f"req-reviewed-{uuid.uuid4().hex[:8]}"
    assert post(intake.url, native(rid)).status_code == 202
    _, withheld = close_with_exemptions(intake, rid)
    seed_review(intake.store, load_hash_key(), rid, withheld, erase=True)

    body = get(intake.url, rid).json()
    assert body["status"] == "completed"
    assert set(body) == NATIVE_FIELDS  # nothing kept: the answer of any completed request

    still = f"req-still-{uuid.uuid4().hex[:8]}"
    assert post(intake.url, native(still)).status_code == 202
    _, withheld = close_with_exemptions(intake, still)
    review = seed_review(intake.store, load_hash_key(), still, withheld, erase=False)
    (kept,) = get(intake.url, still).json()["kept"]
    # The latest entry says what is kept now: the review's new review date, not the first one.
    assert kept["review_date"] == rfc3339(datetime.fromisoformat(review.record["kept"][0]["review_date"]))
    assert kept["review_date"] != rfc3339(REVIEW_DATE)
