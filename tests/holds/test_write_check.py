"""The check every erasure step makes right before it writes to a provider: a hold placed after
the claim (here, on the person's email) stops the step for that request only, moves it on hold,
logs one line naming the hold and never the person, and is no failure; the batch's other
requests are written as usual. Run on a real store, SQLite and PostgreSQL."""

from __future__ import annotations

from gdpr_erasure.batch import RequestScope
from gdpr_erasure.holds import IdentifierHasher, place_hold
from gdpr_erasure.identifiers import SubjectIdentifiers
from gdpr_erasure.operators.base import ErasureStepOperator
from gdpr_erasure.operators.resolve import IdentityResolutionOperator
from gdpr_erasure.store import RequestStatus, StepStatus

EMAIL = "grace.hopper@example.org"


class RecordingStep(ErasureStepOperator):
    """An erasure step whose provider write is recorded, as the real steps record theirs."""

    step_name = "erase_test"

    def process(self, request: RequestScope, context) -> None:
        request.record(self.step_name, StepStatus.DONE, {"written": True})


def _step(store, operator_class=RecordingStep, **kwargs):
    operator = operator_class(task_id="erase_test", request_ids=["req-held", "req-free"], **kwargs)
    operator.store = store  # the test's store, not the compliance_db connection's
    return operator


def test_a_hold_placed_after_the_claim_stops_the_write_for_its_request_only(store, key, capsys):
    store.submit("req-held", SubjectIdentifiers.parse(email=EMAIL))
    store.submit("req-free", SubjectIdentifiers.parse(email="someone.else@example.org"))
    store.claim(10, "run-1", hashes_of=IdentifierHasher(key))
    store.record_step("req-held", "resolve", StepStatus.DONE, {"found": 1})
    hold = place_hold(store, reason="LEGAL-7 dispute", placed_by="ops", email=EMAIL, key=key).hold

    capsys.readouterr()
    summary = _step(store, max_concurrency=1).execute({})
    log = capsys.readouterr().out  # the task SDK's logger writes there outside a task

    assert summary == {"requests": 2, "held": 1, "ok": 1}  # no error: the task does not retry
    assert "erase_test" not in store.steps("req-held")  # nothing written for the held person
    assert store.steps("req-free")["erase_test"].status is StepStatus.DONE
    assert store.steps("req-held")["resolve"].status is StepStatus.DONE  # what was done stays
    held = store.get("req-held")
    assert (held.status, held.last_error) == (RequestStatus.ON_HOLD, f"on hold: {hold.hold_id}")
    assert store.get("req-free").status is RequestStatus.IN_PROGRESS
    marked = [line for line in log.splitlines() if "[req-held] on hold" in line]
    assert len(marked) == 1, log  # one line as it happens (then again inside the request's group)
    assert (
        f"[req-held] on hold ({hold.hold_id}): nothing written; erasure resumes after its release"
        in marked[0]
    )
    assert "grace" not in log and "example.org" not in log

    # A step that runs later in the same run finds it on hold too, and writes nothing either.
    assert _step(store, max_concurrency=1).execute({}) == {"requests": 2, "held": 1, "ok": 1}
    assert "erase_test" not in store.steps("req-held")


def test_a_step_that_only_reads_does_not_stop_for_a_hold():
    """resolve_identity writes nothing at the providers: a hold does not concern it."""
    assert IdentityResolutionOperator.has_side_effects is False
    assert RecordingStep.has_side_effects is True


def test_the_claim_step_diverts_held_requests_and_warns_of_holds_on_a_rotated_key(store, key, capsys):
    from types import SimpleNamespace

    from gdpr_erasure.hashing import HashKey
    from gdpr_erasure.operators.claim import RequestClaimOperator

    store.submit("req-held", SubjectIdentifiers.parse(email=EMAIL))
    store.submit("req-free", SubjectIdentifiers.parse(email="someone.else@example.org"))
    store.submit("req-old", SubjectIdentifiers.parse(phone="+14155550123"))
    held = place_hold(store, reason="LEGAL-8", placed_by="ops", request_id="req-held").hold
    old_key = HashKey("retired", b"an-earlier-hash-key-0123456789abcdef")
    stale = place_hold(store, reason="LEGAL-9", placed_by="ops", phone="+14155550123", key=old_key).hold
    assert stale.hash_key_id == "retired"
    claim = RequestClaimOperator(task_id="claim_requests")
    claim.store = store
    capsys.readouterr()

    batches = claim.execute(
        {"dag": SimpleNamespace(dag_id="gdpr_erasure"), "run_id": "manual__1", "params": {}}
    )

    # The hold made with the retired key matches nobody any more: said loudly, by hold id only.
    assert batches == [["req-free"], ["req-old"]]
    assert store.get("req-held").last_error == f"on hold: {held.hold_id}"
    log = capsys.readouterr().out
    assert f"legal hold {stale.hold_id} was placed with hash key 'retired', not the current 'test'" in log
    assert "1 request(s) on hold (legal holds)" in log
    assert "+1415" not in log
