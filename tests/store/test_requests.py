"""Intake table and state machine, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gdpr_erasure.identifiers import SubjectIdentifiers
from gdpr_erasure.store import (
    ComplianceStore,
    InvalidTransition,
    RequestNotFound,
    RequestStatus,
    StepStatus,
    TaskTry,
)
from gdpr_erasure.store.engine import create_store_engine
from gdpr_erasure.store.schema import SCHEMA_VERSION
from gdpr_erasure.store.status import ALLOWED_SOURCES

S = RequestStatus
SOON = datetime.now(UTC) + timedelta(days=3)  # a deferred request's not_before


def ident(n: int = 0) -> SubjectIdentifiers:
    return SubjectIdentifiers.parse(email=f"Person{n}@Example.com", phone=f"+1415555{n:04d}")


def test_init_db_is_idempotent_and_records_schema_version(store_url):
    store = ComplianceStore(create_store_engine(store_url))
    store.init_db()
    store.submit("r1", ident())
    store.init_db()  # a second init keeps data and triggers
    assert store.get("r1").status is S.PENDING
    assert store.schema_version() == SCHEMA_VERSION == 7
    store.dispose()


def test_submit_is_idempotent_on_request_id(store):
    first = store.submit("req-1", ident(1), source="webhook")
    again = store.submit("req-1", ident(2), source="cli")
    assert first.created is True
    assert again.created is False
    assert again.request.identifiers == first.request.identifiers
    assert again.request.source == "webhook"
    assert store.counts_by_status() == {"pending": 1}


def test_identifiers_round_trip_and_email_spelling_is_kept(store):
    store.submit(
        "req-1", SubjectIdentifiers.parse(email=" Jane.Doe@Example.com ", stripe_customer_id="cus_ABC123")
    )
    got = store.get("req-1").identifiers
    assert got.email == "jane.doe@example.com"
    assert got.email_as_given == "Jane.Doe@Example.com"  # Stripe's list(email=) is case-sensitive
    assert got.stripe_customer_id == "cus_ABC123"
    assert got.phone is None


def test_request_repr_hides_identifiers(store):
    store.submit("req-1", ident(7))
    text = repr(store.get("req-1")) + str(store.get("req-1").identifiers)
    assert "example.com" not in text.lower()
    assert "5555" not in text
    assert "email" in text


def test_datetimes_are_timezone_aware_utc(store):
    received = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    store.submit("req-1", ident(), received_at=received)
    got = store.get("req-1")
    assert got.received_at == received
    assert got.received_at.tzinfo is not None


def test_get_unknown_request_raises(store):
    with pytest.raises(RequestNotFound):
        store.get("nope")


def test_claim_takes_oldest_first_up_to_limit_and_counts_attempts(store):
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for n in range(5):
        store.submit(f"req-{n}", ident(n), received_at=base + timedelta(minutes=5 - n))
    claimed = store.claim(3, "run-a")
    assert claimed == ["req-4", "req-3", "req-2"]
    assert store.claim(10, "run-b") == ["req-1", "req-0"]
    assert store.claim(10, "run-c") == []
    got = store.get("req-4")
    assert (got.status, got.attempts, got.claimed_by) == (S.IN_PROGRESS, 1, "run-a")


def test_a_claim_sizes_its_batches_by_how_many_it_took(store):
    # batch_size: auto hands the store a function of the count claimed (RequestClaimOperator).
    for n in range(3):
        store.submit(f"req-{n}", ident(n))
    seen = []

    def size(claimed: int) -> int:
        seen.append(claimed)
        return 1 if claimed <= 3 else 50

    claimed = store.claim(10, "gdpr_erasure/run-a", batch_size=size)
    assert seen == [3]
    assert sorted(store.get(rid).claimed_map_index for rid in claimed) == [0, 1, 2]


def test_a_claim_records_its_time_and_each_request_s_batch(store):
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for n in range(5):
        store.submit(f"req-{n}", ident(n), received_at=base + timedelta(minutes=n))
    before = datetime.now(UTC)
    claimed = store.claim(5, "gdpr_erasure/run-a", batch_size=2)
    # The caller's batches are [0, 1], [2, 3], [4]: map indexes 0, 0, 1, 1, 2.
    assert [(rid, store.get(rid).claimed_map_index) for rid in claimed] == [
        ("req-0", 0),
        ("req-1", 0),
        ("req-2", 1),
        ("req-3", 1),
        ("req-4", 2),
    ]
    got = store.get("req-3")
    assert got.claimed_by == "gdpr_erasure/run-a"
    assert before <= got.claimed_at <= datetime.now(UTC)
    # A claim without batches keeps no map index; the requeue forgets the claim.
    store.record_failure("req-3", "stripe 500", max_failures=3)
    store.claim(1, "run-b", request_ids=["req-3"])
    assert (store.get("req-3").claimed_by, store.get("req-3").claimed_map_index) == ("run-b", None)
    store.record_failure("req-3", "stripe 500", max_failures=3)
    requeued = store.requeue("req-3")
    assert (requeued.claimed_by, requeued.claimed_at, requeued.claimed_map_index) == (None, None, None)


def test_claim_can_target_specific_requests(store):
    for n in range(3):
        store.submit(f"req-{n}", ident(n))
    assert store.claim(10, "run", request_ids=["req-2", "missing"]) == ["req-2"]
    assert store.get("req-0").status is S.PENDING


def test_expired_lease_is_reclaimed_by_a_later_run(store):
    store.submit("req-1", ident())
    assert store.claim(1, "dead-run", lease=timedelta(seconds=-1)) == ["req-1"]
    assert store.claim(1, "next-run") == ["req-1"]
    got = store.get("req-1")
    assert (got.claimed_by, got.attempts) == ("next-run", 2)


def test_live_lease_is_not_reclaimed(store):
    store.submit("req-1", ident())
    store.claim(1, "run-a", lease=timedelta(hours=1))
    assert store.claim(1, "run-b") == []


@pytest.mark.parametrize("target", list(S))
def test_transitions_follow_the_state_machine(store, target):
    """From every status, exactly the allowed moves to ``target`` succeed."""
    for source in S:
        rid = f"{source.value}-to-{target.value}"
        store.submit(rid, ident())
        _force(store, rid, source)
        if source in ALLOWED_SOURCES[target]:
            assert store.transition(rid, target, error="boom", not_before=SOON).status is target
        else:
            with pytest.raises(InvalidTransition):
                store.transition(rid, target, not_before=SOON)
            assert store.get(rid).status is source


def _force(store, rid, status):
    """Walk a fresh request to ``status`` through legal moves only."""
    path = {
        S.PENDING: [],
        S.IN_PROGRESS: [S.IN_PROGRESS],
        S.VERIFYING: [S.IN_PROGRESS, S.VERIFYING],
        S.COMPLETED: [S.IN_PROGRESS, S.COMPLETED],
        S.FAILED: [S.IN_PROGRESS, S.FAILED],
        S.NEEDS_ATTENTION: [S.IN_PROGRESS, S.NEEDS_ATTENTION],
        S.DEFERRED: [S.IN_PROGRESS, S.DEFERRED],
        S.ON_HOLD: [S.ON_HOLD],
        S.COMPLETED_WITH_EXEMPTIONS: [S.IN_PROGRESS, S.COMPLETED_WITH_EXEMPTIONS],
    }[status]
    for step in path:
        if step is S.IN_PROGRESS:
            assert store.claim(1, "setup", request_ids=[rid]) == [rid]
        else:
            store.transition(rid, step, not_before=SOON)


def test_completed_is_final_and_sets_completed_at(store):
    store.submit("req-1", ident())
    store.claim(1, "run")
    done = store.transition("req-1", S.COMPLETED)
    assert done.completed_at is not None
    assert done.lease_expires_at is None
    for target in S:
        with pytest.raises(InvalidTransition):
            store.transition("req-1", target, not_before=SOON)


def test_failure_reason_is_recorded_and_requeue_clears_the_lease(store):
    store.submit("req-1", ident())
    store.claim(1, "run")
    failed = store.transition("req-1", S.FAILED, error="stripe: 402 card_error")
    assert failed.last_error == "stripe: 402 card_error"
    store.transition("req-1", S.NEEDS_ATTENTION, error="3 attempts")
    requeued = store.transition("req-1", S.PENDING)
    assert (requeued.status, requeued.claimed_by) == (S.PENDING, None)


def test_transition_with_expected_source_is_compare_and_set(store):
    store.submit("req-1", ident())
    store.claim(1, "run")
    with pytest.raises(InvalidTransition):
        store.transition("req-1", S.COMPLETED, expected=[S.VERIFYING])
    assert store.transition("req-1", S.COMPLETED, expected=[S.IN_PROGRESS]).status is S.COMPLETED


def test_step_results_are_upserted_per_step(store):
    store.submit("req-1", ident())
    store.record_step("req-1", "resolve", StepStatus.DONE, {"stripe_customer_ids": ["cus_1"]})
    store.record_step("req-1", "erase_stripe", StepStatus.SKIPPED, {"reason": "no customer"})
    store.record_step("req-1", "resolve", StepStatus.DONE, {"stripe_customer_ids": ["cus_1", "cus_2"]})
    steps = store.steps("req-1")
    assert set(steps) == {"resolve", "erase_stripe"}
    assert steps["resolve"].result == {"stripe_customer_ids": ["cus_1", "cus_2"]}
    assert steps["resolve"].attempts == 2
    assert steps["erase_stripe"].status is StepStatus.SKIPPED
    assert steps["resolve"].ran_in is None  # written outside a task


def test_a_step_records_the_task_instance_try_that_worked_on_it(store):
    store.submit("req-1", ident())
    first = TaskTry("gdpr_erasure", "erase_batch.erase_stripe", "manual__1", 3, 1)
    store.record_step("req-1", "erase_stripe", StepStatus.FAILED, {"reason": "stripe 500"}, ran_in=first)
    assert store.steps("req-1")["erase_stripe"].ran_in == first
    retry = TaskTry("gdpr_erasure", "erase_batch.erase_stripe", "manual__1", 3, 2)
    store.record_step("req-1", "erase_stripe", StepStatus.DONE, {"method": "delete"}, ran_in=retry)
    assert store.steps("req-1")["erase_stripe"].ran_in == retry
    # A rewrite that is not the step's work (ids replaced by tags at closing) keeps where it ran.
    store.record_step("req-1", "erase_stripe", StepStatus.DONE, {"method": "delete", "customers": {}})
    got = store.steps("req-1")["erase_stripe"]
    assert (got.ran_in, got.attempts, got.result) == (retry, 3, {"method": "delete", "customers": {}})
    unmapped = TaskTry("gdpr_erasure", "resolve_identity", "manual__2", -1, 1)
    store.record_step("req-1", "resolve", StepStatus.DONE, {}, ran_in=unmapped)
    assert store.steps("req-1")["resolve"].ran_in == unmapped


def test_invalid_status_is_rejected_by_the_database(store):
    from sqlalchemy import update
    from sqlalchemy.exc import IntegrityError

    from gdpr_erasure.store.schema import erasure_requests

    store.submit("req-1", ident())
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(update(erasure_requests).values(status="deleted"))


def test_failed_and_verifying_requests_are_claimed_again_but_not_needs_attention(store):
    for rid in ("failed", "verifying", "attention"):
        store.submit(rid, ident())
        store.claim(1, "run-1", request_ids=[rid])
    store.record_failure("failed", "stripe: HTTP 500", max_failures=3)
    store.transition("verifying", S.VERIFYING)
    store.record_failure("attention", "x", max_failures=1)
    assert sorted(store.claim(10, "run-2")) == ["failed", "verifying"]
    assert store.get("attention").status is S.NEEDS_ATTENTION


def test_record_failure_escalates_to_needs_attention_at_the_limit(store):
    store.submit("req-1", ident())
    statuses = []
    for _ in range(3):
        assert store.claim(1, "run") == ["req-1"]
        statuses.append(store.record_failure("req-1", "segment: regulation FAILED", max_failures=3).status)
    assert statuses == [S.FAILED, S.FAILED, S.NEEDS_ATTENTION]
    got = store.get("req-1")
    assert (got.failures, got.attempts, got.last_error) == (3, 3, "segment: regulation FAILED")
    assert store.claim(1, "run") == []


def test_requeue_sends_a_request_back_with_a_fresh_failure_count(store):
    store.submit("req-1", ident())
    store.claim(1, "run")
    store.record_failure("req-1", "boom", max_failures=1)
    requeued = store.requeue("req-1")
    assert (requeued.status, requeued.failures) == (S.PENDING, 0)
    with pytest.raises(InvalidTransition):
        store.requeue("req-1")  # already pending


def test_record_failure_of_a_completed_request_is_refused(store):
    store.submit("req-1", ident())
    store.claim(1, "run")
    store.transition("req-1", S.COMPLETED)
    with pytest.raises(InvalidTransition):
        store.record_failure("req-1", "late", max_failures=3)


def test_an_email_stored_decomposed_reads_back_in_nfc(store):
    """Rows written before intake NFC-normalised emails may hold ``e`` + combining accent: read
    back, they give the same comparison form (and so the same keyed hash) as the composed one."""
    import unicodedata

    from sqlalchemy import update

    from gdpr_erasure.identifiers import SubjectIdentifiers
    from gdpr_erasure.store.schema import erasure_requests

    composed = "Jos\u00e9.Nu\u00f1ez@example.com"
    store.submit("req-nfc", SubjectIdentifiers.parse(email=composed))
    with store.engine.begin() as conn:
        conn.execute(
            update(erasure_requests)
            .where(erasure_requests.c.id == "req-nfc")
            .values(email=unicodedata.normalize("NFD", composed))
        )
    identifiers = store.get("req-nfc").identifiers
    assert identifiers.email_as_given == composed
    assert identifiers == SubjectIdentifiers.parse(email=composed)
