"""The erasure policy applied by real runs of the DAG against the sandbox, one test per rule of
the default policy and for the choices a company may make instead, every side effect counted by
the sandbox: a withheld customer gets no write at all (not even the tag), an open invoice is
redacted by a Redaction Job that keeps the amounts, a customer with nothing going on is deleted.
What is kept does not stop the rest: Twilio and Segment are erased and proven, the request ends
``completed_with_exemptions``, its audit record lists what was kept, why, on which legal basis and
until when. At the review date the next run checks only the kept customers again: once the
dispute is closed the customer is erased, a review entry is appended to the ledger, and the
ledger still verifies."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from gdpr_erasure import steps
from gdpr_erasure.batch import RequestScope
from gdpr_erasure.cli import main as cli
from gdpr_erasure.hashing import load_hash_key, stripe_tag
from gdpr_erasure.hooks.stripe import StripeHook
from gdpr_erasure.identifiers import SubjectIdentifiers
from gdpr_erasure.operators.resolve import IdentityResolutionOperator
from gdpr_erasure.operators.stripe import StripeCustomerErasureOperator
from gdpr_erasure.policy import DEFAULT_POLICY_PATH, POLICY_ENV, load_policy
from gdpr_erasure.store import RequestStatus, StepStatus
from gdpr_erasure.store.schema import erasure_requests

S = RequestStatus
DEFAULT = load_policy(DEFAULT_POLICY_PATH)


def tag(customer_id: str) -> str:
    return stripe_tag(load_hash_key(), customer_id)


def customer_of(pipeline, key: str) -> str:
    (customer_id,) = pipeline.sandbox.person(key)["stripe_customer_ids"]
    return customer_id


def stripe_writes(pipeline, key: str) -> int:
    """Successful writes the sandbox served to the person's Stripe customers (and their objects)."""
    return pipeline.sandbox.state(key)["stripe"]["writes"]


def audit_verify(pipeline, capsys) -> str:
    """``gdpr-erasure audit verify`` (hash chain, signed heads against the witness, records against
    requests) must pass; its output."""
    capsys.readouterr()
    code = cli(["audit", "--db-url", os.environ["GDPR_COMPLIANCE_DB_URL"], "verify"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def write_policy(tmp_path: Path, monkeypatch, **live_state: dict) -> Path:
    """The default policy with some live-state rules replaced, made the configured one."""
    policy = yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    policy["live_state"].update(live_state)
    path = tmp_path / "company-policy.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
    monkeypatch.setenv(POLICY_ENV, str(path))
    return path


def days_from_now(value: str | None, days: int) -> bool:
    """``value`` (ISO 8601) is ``days`` days from now, give or take the run's length."""
    moment = datetime.fromisoformat(value)
    return abs(moment - (datetime.now(UTC) + timedelta(days=days))) < timedelta(minutes=10)


@pytest.mark.parametrize(
    ("key", "case", "days", "basis"),
    [
        ("active_subscription", "active_subscription", 30, "Art. 6(1)(b)"),
        ("open_dispute", "open_dispute", 60, "Art. 17(3)(e)"),
        ("customer_balance", "customer_balance", 30, "Art. 17(3)(b) and (e)"),
    ],
)
def test_a_withheld_customer_gets_no_write_and_the_rest_is_erased_and_proven(
    pipeline, capsys, key, case, days, basis
):
    customer_id = customer_of(pipeline, key)
    before = pipeline.sandbox.state(key)
    (rid,) = pipeline.submit(key)
    pipeline.sandbox.clear_requests_log()

    assert pipeline.run().state == "success"  # something kept is no failure

    # Stripe: not one write to the customer, not even the tag; it is exactly as it was.
    after = pipeline.sandbox.state(key)
    assert stripe_writes(pipeline, key) == 0
    assert after["stripe"] == {**before["stripe"], "writes": 0}
    assert not any(r.get("stripe_customers") for r in pipeline.sandbox.requests_log() if r["method"] != "GET")
    # Twilio and Segment: erased and proven all the same (per object, never all or nothing).
    assert after["twilio"]["messages"] == after["twilio"]["calls"] == 0
    assert after["memory"]["profile_present"] is False
    assert [r["overallStatus"] for r in after["segment"]["regulations"]] == ["FINISHED"]

    request = pipeline.store.get(rid)
    record = pipeline.audit()[rid]
    (kept,) = record["kept"]
    assert request.status is S.COMPLETED_WITH_EXEMPTIONS
    assert request.not_before == datetime.fromisoformat(kept["review_date"])  # back at its review date
    assert request.identifiers is None  # forgotten at completion, as ever
    assert record["outcome"] == "completed_with_exemptions"
    assert kept["system"] == "stripe" and kept["kind"] == "stripe.customer"
    assert kept["id"] == tag(customer_id) and customer_id not in str(record)
    assert (kept["action"], kept["cases"], kept["retained_until"]) == ("withhold", [case], None)
    assert kept["legal_basis"].startswith(basis) and "\n" not in kept["reason"]
    assert days_from_now(kept["review_date"], days)
    assert record["policy"] == {"digest": DEFAULT.digest, "source": "default.yaml"}
    assert (
        record["twilio"]["profile_proof"]["profiles"] and record["segment"]["proof"]["status"] == "FINISHED"
    )
    stripe = record["stripe"]
    assert stripe["purge"] == "skipped" and stripe["erased_customer_ids"] == []
    assert stripe["proof"] == {"reason": "nothing deleted"}  # nothing written: nothing to prove
    customer = stripe["customers"][tag(customer_id)]
    assert customer["outcome"] == "kept" and customer["proven_by"] is None
    assert customer["decision"]["deciding_case"] == case and customer["decision"]["attempt"] == 1
    # The review needs the customer's id, and only that: it stays in the stored steps.
    resolved = pipeline.store.steps(rid)[steps.RESOLVE].result["stripe"]
    assert resolved["customer_ids"] == [customer_id] and resolved["customer_tags"] == [tag(customer_id)]
    assert "audit ledger intact" in audit_verify(pipeline, capsys)

    # requests show: the status, and what was kept and why.
    capsys.readouterr()
    assert cli(["requests", "show", rid, "--db-url", os.environ["GDPR_COMPLIANCE_DB_URL"]]) == 0
    shown = capsys.readouterr().out
    assert f"request {rid}: completed_with_exemptions" in shown
    assert f"kept  Stripe {tag(customer_id)}: withhold by the erasure policy ({case}), reviewed from" in shown

    # Not due yet: the next run leaves it alone.
    pipeline.sandbox.clear_requests_log()
    assert pipeline.run().state == "success"
    assert pipeline.store.get(rid).status is S.COMPLETED_WITH_EXEMPTIONS
    assert pipeline.side_effects() == {}


def test_an_open_invoice_is_redacted_its_amounts_kept_and_listed_until_retained(pipeline):
    customer_id = customer_of(pipeline, "unpaid_invoice")
    hook = StripeHook()
    [invoice] = hook.list_invoices(customer_id, {"open"})
    (rid,) = pipeline.submit("unpaid_invoice")

    assert pipeline.run().state == "success"

    state = pipeline.sandbox.state("unpaid_invoice")["stripe"]
    [customer] = state["customers"]
    assert customer["redacted"] is True and customer["deleted"] is False  # redacted, not deleted
    assert [(i["status"], i["redacted"]) for i in state["invoices"]] == [("open", True)]
    assert [job["status"] for job in state["redaction_jobs"]] == ["succeeded"]
    [after] = hook.list_invoices(customer_id, {"open"})
    assert (after["amount_due"], after["currency"]) == (invoice["amount_due"], invoice["currency"])
    assert after["customer_email"] != invoice["customer_email"]  # the person is gone from it
    assert customer["writes"] == 3  # the tag, the job's creation and its run: no delete

    request, record = pipeline.store.get(rid), pipeline.audit()[rid]
    assert (request.status, request.not_before) == (S.COMPLETED_WITH_EXEMPTIONS, None)  # no review
    stripe = record["stripe"]
    assert stripe["method"] == "delete"  # the connection's; the policy redacted this one
    assert stripe["erased_customer_ids"] == [tag(customer_id)]
    assert stripe["customers"][tag(customer_id)]["proven_by"] == "redaction_job_succeeded"
    (kept,) = record["kept"]
    assert (kept["id"], kept["action"], kept["cases"]) == (tag(customer_id), "redact", ["open_invoice"])
    assert kept["review_date"] is None
    assert datetime.fromisoformat(kept["retained_until"]).year == datetime.now(UTC).year + 10
    assert kept["legal_basis"].startswith("Art. 17(3)(b)")
    # Nothing comes back by itself: no run claims it again.
    pipeline.sandbox.clear_requests_log()
    assert pipeline.run().state == "success"
    assert pipeline.store.get(rid).status is S.COMPLETED_WITH_EXEMPTIONS and pipeline.side_effects() == {}


def test_a_customer_whose_live_state_is_closed_is_deleted_as_before(pipeline):
    customer_id = customer_of(pipeline, "closed_states")
    (rid,) = pipeline.submit("closed_states")
    assert pipeline.run().state == "success"

    state = pipeline.sandbox.state("closed_states")["stripe"]
    assert [c["deleted"] for c in state["customers"]] == [True]
    assert state["writes"] == 2  # the tag and the delete
    request, record = pipeline.store.get(rid), pipeline.audit()[rid]
    assert request.status is S.COMPLETED and request.not_before is None
    assert record["outcome"] == "completed" and record["kept"] == []
    customer = record["stripe"]["customers"][tag(customer_id)]
    assert customer["outcome"] == "deleted" and customer["proven_by"] in ("deleted_stub", "not_found")
    assert customer["decision"]["action"] == "erase" and customer["decision"]["cases"] == []
    # Closed, the request keeps no cus_ id.
    assert pipeline.store.steps(rid)[steps.RESOLVE].result["stripe"]["customer_ids"] == []


def test_with_cancel_then_erase_the_subscription_is_cancelled_then_the_customer_deleted(
    pipeline, tmp_path, monkeypatch
):
    write_policy(
        tmp_path,
        monkeypatch,
        active_subscription={"action": "cancel_then_erase", "note": "we end the contract on request"},
    )
    customer_id = customer_of(pipeline, "active_subscription")
    (rid,) = pipeline.submit("active_subscription")
    pipeline.sandbox.clear_requests_log()
    assert pipeline.run().state == "success"

    state = pipeline.sandbox.state("active_subscription")["stripe"]
    assert [s["status"] for s in state["subscriptions"]] == ["canceled"]
    assert [c["deleted"] for c in state["customers"]] == [True]
    assert state["writes"] == 3  # cancel, tag, delete
    writes = [
        (r["method"], r["route"])
        for r in pipeline.sandbox.requests_log()
        if r.get("stripe_customers") and r["method"] in ("POST", "DELETE") and 200 <= r["status"] < 300
    ]
    assert writes == [
        ("DELETE", "/v1/subscriptions/{subscription_exposed_id}"),
        ("POST", "/v1/customers/{customer}"),
        ("DELETE", "/v1/customers/{customer}"),
    ]
    record = pipeline.audit()[rid]
    assert pipeline.store.get(rid).status is S.COMPLETED and record["kept"] == []
    customer = record["stripe"]["customers"][tag(customer_id)]
    assert customer["subscriptions_canceled"] == 1 and customer["outcome"] == "deleted"
    assert customer["decision"]["cancel_subscriptions"] is True
    assert record["policy"]["source"] == "company-policy.yaml"  # the file's name, not where it is
    assert record["policy"]["digest"] == load_policy(tmp_path / "company-policy.yaml").digest


def test_one_request_deletes_one_customer_and_redacts_another_and_proves_both(pipeline):
    closed, unpaid = pipeline.sandbox.person("closed_states"), pipeline.sandbox.person("unpaid_invoice")
    deleted_id, redacted_id = closed["stripe_customer_ids"][0], unpaid["stripe_customer_ids"][0]
    # The person's email finds one customer, the id given at intake is the other.
    identifiers = SubjectIdentifiers.parse(email=closed["email"], stripe_customer_id=redacted_id)
    rid = pipeline.store.submit("req-mixed", identifiers, source="test").request.id
    assert pipeline.run().state == "success"

    assert [c["deleted"] for c in pipeline.sandbox.state("closed_states")["stripe"]["customers"]] == [True]
    [redacted] = pipeline.sandbox.state("unpaid_invoice")["stripe"]["customers"]
    assert redacted["redacted"] is True and redacted["deleted"] is False
    stripe = pipeline.audit()[rid]["stripe"]
    assert stripe["erased_customer_ids"] == sorted([tag(deleted_id), tag(redacted_id)])
    assert stripe["proof"]["status"] == "succeeded" and set(stripe["proof"]["customers"]) == {tag(deleted_id)}
    assert stripe["customers"][tag(redacted_id)]["proven_by"] == "redaction_job_succeeded"
    assert stripe["customers"][tag(deleted_id)]["proven_by"] in ("deleted_stub", "not_found")
    assert [k["id"] for k in pipeline.audit()[rid]["kept"]] == [tag(redacted_id)]
    assert pipeline.store.get(rid).status is S.COMPLETED_WITH_EXEMPTIONS


def test_hold_for_review_keeps_the_customer_and_never_brings_the_request_back(
    pipeline, tmp_path, monkeypatch
):
    write_policy(tmp_path, monkeypatch, open_dispute={"action": "hold_for_review"})
    customer_id = customer_of(pipeline, "open_dispute")
    (rid,) = pipeline.submit("open_dispute")
    pipeline.sandbox.clear_requests_log()
    assert pipeline.run().state == "success"

    assert stripe_writes(pipeline, "open_dispute") == 0
    request, (kept,) = pipeline.store.get(rid), pipeline.audit()[rid]["kept"]
    assert (request.status, request.not_before) == (S.COMPLETED_WITH_EXEMPTIONS, None)
    assert (kept["action"], kept["review_date"], kept["retained_until"]) == ("hold_for_review", None, None)
    # No review date: its cus_ id is forgotten like any other, and no run takes it again.
    assert pipeline.store.steps(rid)[steps.RESOLVE].result["stripe"]["customer_ids"] == []
    assert customer_id not in str(pipeline.store.steps(rid)[steps.STRIPE].result)
    pipeline.sandbox.clear_requests_log()
    assert pipeline.run().state == "success"
    assert pipeline.store.get(rid).status is S.COMPLETED_WITH_EXEMPTIONS and pipeline.side_effects() == {}


def test_at_its_review_date_a_customer_whose_dispute_closed_is_erased_and_a_review_entry_appended(
    pipeline, capsys
):
    customer_id = customer_of(pipeline, "open_dispute")
    (rid,) = pipeline.submit("open_dispute")
    assert pipeline.run().state == "success"
    first = pipeline.store.audit_entry(rid)
    assert pipeline.store.get(rid).status is S.COMPLETED_WITH_EXEMPTIONS

    # The dispute is decided; time passes to the review date.
    [dispute] = pipeline.sandbox.state("open_dispute")["stripe"]["disputes"]
    assert pipeline.sandbox.set_dispute_status(dispute["id"], "won")["status"] == "won"
    with pipeline.store.engine.begin() as conn:
        conn.execute(
            erasure_requests.update()
            .where(erasure_requests.c.id == rid)
            .values(not_before=datetime.now(UTC) - timedelta(seconds=1))
        )
    pipeline.sandbox.clear_requests_log()
    assert pipeline.run().state == "success"

    # Only the kept customer was worked on: tagged and deleted; nothing else was written again.
    assert [c["deleted"] for c in pipeline.sandbox.state("open_dispute")["stripe"]["customers"]] == [True]
    assert pipeline.side_effects() == {
        ("POST", "/v1/customers/{customer}"): 1,
        ("DELETE", "/v1/customers/{customer}"): 1,
    }
    request = pipeline.store.get(rid)
    assert (request.status, request.not_before, request.attempts) == (S.COMPLETED, None, 2)

    entries = pipeline.store.audit_entries()
    assert [e.request_id for e in entries] == [rid, f"{rid}/review/2"]
    assert entries[0] == first  # the erasure record is never rewritten
    review = entries[1].record
    assert review["kind"] == "review" and review["request_id"] == rid and review["review"] == 2
    assert review["follows"] == {"seq": first.seq, "record_hash": first.record_hash}
    assert review["outcome"] == "completed" and review["kept"] == []
    assert review["stripe"]["erased_customer_ids"] == [tag(customer_id)]
    assert set(review["stripe"]["proof"]["customers"]) == {tag(customer_id)}
    decision = review["stripe"]["customers"][tag(customer_id)]["decision"]
    assert (decision["action"], decision["cases"], decision["attempt"]) == ("erase", [], 2)
    assert "audit ledger intact: 2 record(s)" in audit_verify(pipeline, capsys)
    # Settled, the request keeps no cus_ id any more.
    assert pipeline.store.steps(rid)[steps.RESOLVE].result["stripe"]["customer_ids"] == []
    assert customer_id not in str(pipeline.store.steps(rid)[steps.STRIPE].result)
    assert pipeline.store.steps(rid)[steps.VERIFY_STRIPE].status is StepStatus.DONE


def test_a_review_that_finds_the_dispute_still_open_keeps_it_to_the_next_review(pipeline, capsys):
    (rid,) = pipeline.submit("open_dispute")
    assert pipeline.run().state == "success"
    with pipeline.store.engine.begin() as conn:
        conn.execute(
            erasure_requests.update()
            .where(erasure_requests.c.id == rid)
            .values(not_before=datetime.now(UTC) - timedelta(seconds=1))
        )
    pipeline.sandbox.clear_requests_log()
    assert pipeline.run().state == "success"

    assert pipeline.side_effects() == {} and stripe_writes(pipeline, "open_dispute") == 0
    request = pipeline.store.get(rid)
    (kept,) = pipeline.store.audit_entry(f"{rid}/review/2").record["kept"]
    assert request.status is S.COMPLETED_WITH_EXEMPTIONS
    assert request.not_before == datetime.fromisoformat(kept["review_date"])
    assert days_from_now(kept["review_date"], 60)  # a new review date, from this review
    assert "audit ledger intact" in audit_verify(pipeline, capsys)


def test_the_sandbox_moves_a_dispute_only_to_a_status_of_the_spec(pipeline):
    [dispute] = pipeline.sandbox.state("open_dispute")["stripe"]["disputes"]
    with pytest.raises(Exception, match="400"):
        pipeline.sandbox.set_dispute_status(dispute["id"], "settled")
    with pytest.raises(Exception, match="404"):
        pipeline.sandbox.set_dispute_status("dp_nope", "won")
    assert pipeline.sandbox.state("open_dispute")["stripe"]["disputes"] == [dispute]


def test_within_one_attempt_a_decision_stands_and_the_live_state_is_not_read_again(pipeline):
    """A task retry (same claim) keeps each customer's decision: the dispute closing in between
    changes nothing until the next attempt, which reads the live state again."""
    (rid,) = pipeline.submit("open_dispute")
    assert pipeline.store.claim(1, "by-hand", request_ids=[rid]) == [rid]

    def scope() -> RequestScope:
        return RequestScope(pipeline.store, rid, logging.getLogger("test"))

    IdentityResolutionOperator(task_id="resolve", request_ids=[rid]).process(scope(), {"params": {}})
    erase = StripeCustomerErasureOperator(task_id="erase_stripe", request_ids=[rid])

    def live_state_reads() -> int:
        return sum(1 for r in pipeline.sandbox.requests_log() if r["route"] == "/v1/subscriptions")

    pipeline.sandbox.clear_requests_log()
    erase.process(scope(), {"params": {}})
    assert live_state_reads() == 1
    [dispute] = pipeline.sandbox.state("open_dispute")["stripe"]["disputes"]
    pipeline.sandbox.set_dispute_status(dispute["id"], "lost")
    erase.process(scope(), {"params": {}})  # a retry of the task: same attempt
    assert live_state_reads() == 1 and stripe_writes(pipeline, "open_dispute") == 0
    [customer] = pipeline.store.steps(rid)[steps.STRIPE].result["customers"].values()
    assert customer["outcome"] == "kept" and customer["decision"]["attempt"] == 1

    # The next attempt (a new claim) reads it again, and now erases it.
    pipeline.store.transition(rid, S.FAILED, error="elsewhere")
    assert pipeline.store.claim(1, "by-hand-2", request_ids=[rid]) == [rid]
    erase.process(scope(), {"params": {}})
    assert live_state_reads() == 2 and stripe_writes(pipeline, "open_dispute") == 2  # tag, delete
    [customer] = pipeline.store.steps(rid)[steps.STRIPE].result["customers"].values()
    assert customer["outcome"] == "deleted" and customer["decision"]["attempt"] == 2
