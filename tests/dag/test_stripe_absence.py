"""Stripe "gone" end to end: what the audit record may call an erasure, and what it may not.

Only an answer that means "not there" counts (the ``deleted: true`` object, or a 404 on the
customer's own path, with or without ``code``), and an id given at intake that Stripe never knew
is listed apart, never as erased.
"""

from __future__ import annotations

import json
import logging

from gdpr_erasure import steps
from gdpr_erasure.batch import RequestScope
from gdpr_erasure.hashing import keyed_hash, load_hash_key, stripe_tag
from gdpr_erasure.hooks.stripe import StripeHook
from gdpr_erasure.identifiers import SubjectIdentifiers
from gdpr_erasure.operators.resolve import IdentityResolutionOperator
from gdpr_erasure.store import RequestStatus

NEVER_EXISTED = "cus_NeverExisted0001"


def tag(customer_id: str) -> str:
    """How the audit record and the closed request's steps name a Stripe customer."""
    return stripe_tag(load_hash_key(), customer_id)


def tags(customer_ids) -> list[str]:
    return sorted(tag(c) for c in customer_ids)


def _submit(pipeline, request_id: str, person: dict, stripe_customer_id: str | None) -> str:
    identifiers = SubjectIdentifiers.parse(
        email=person["email"], phone=person["phone"], stripe_customer_id=stripe_customer_id
    )
    return pipeline.store.submit(request_id, identifiers, source="test").request.id


def _generated_with_one_customer(pipeline, skip: int = 0) -> dict:
    people = [
        p
        for p in pipeline.sandbox.people()
        if p["key"].startswith("person-") and len(p["stripe_customer_ids"]) == 1
    ]
    return people[skip]


def test_an_id_stripe_never_knew_is_listed_apart_and_never_as_erased(pipeline):
    sandbox = pipeline.sandbox
    no_stripe, multi = sandbox.person("no_stripe"), sandbox.person("multi_stripe")
    gone_before = _generated_with_one_customer(pipeline)
    deleted_id = gone_before["stripe_customer_ids"][0]
    assert StripeHook().delete_customer(deleted_id) == "deleted"  # out of band, before the request

    only = _submit(pipeline, "req-never-existed", no_stripe, NEVER_EXISTED)
    mixed = _submit(pipeline, "req-never-existed-and-real", multi, NEVER_EXISTED)
    before = _submit(pipeline, "req-deleted-before", gone_before, deleted_id)
    assert pipeline.run().state == "success"

    assert pipeline.store.counts_by_status() == {"completed": 3}
    audit = pipeline.audit()
    assert pipeline.store.verify_audit_chain().ok

    # Only a cus_ id nobody knew: the request completes (the other systems are erased) and the id
    # is under not_found_at_intake, not among the customers, the erased or the proofs.
    stripe = audit[only]["stripe"]
    assert stripe["not_found_at_intake"] == [tag(NEVER_EXISTED)]
    assert stripe["customer_ids"] == [] and stripe["customers"] == {}
    assert stripe["erased_customer_ids"] == [] and stripe["already_absent_customer_ids"] == []
    assert stripe["purge"] == "skipped" and stripe["proof"]["reason"] == "nothing deleted"
    assert stripe["absent_at_resolve"][tag(NEVER_EXISTED)]["evidence"] == "not_found"
    assert stripe["customer_hmacs"] == {tag(NEVER_EXISTED): keyed_hash(load_hash_key(), NEVER_EXISTED)}
    resolved = pipeline.store.steps(only)[steps.RESOLVE].result["stripe"]
    assert resolved["customer_ids"] == []
    # Closed: the stored resolution names the id by its tag only.
    assert resolved["absent_at_resolve"][tag(NEVER_EXISTED)]["outcome"] == "never_existed"
    for request_id in (only, mixed, before):
        assert "cus_" not in json.dumps(audit[request_id]), request_id
        results = pipeline.store.steps(request_id)
        assert "cus_" not in json.dumps({name: r.result for name, r in results.items()}), request_id
    state = sandbox.state("no_stripe")
    assert state["twilio"]["messages"] == 0 and state["memory"]["profile_present"] is False
    assert all(r["overallStatus"] == "FINISHED" for r in state["segment"]["regulations"])

    # The same unknown id next to real customers found by email: those are erased and proven,
    # the unknown id stays apart.
    stripe = audit[mixed]["stripe"]
    assert stripe["not_found_at_intake"] == [tag(NEVER_EXISTED)]
    assert stripe["erased_customer_ids"] == tags(multi["stripe_customer_ids"])
    assert set(stripe["proof"]["customers"]) == set(stripe["customers"]) == set(stripe["erased_customer_ids"])
    assert tag(NEVER_EXISTED) not in stripe["customers"]
    assert tag(NEVER_EXISTED) not in stripe["proof"]["customers"]
    assert set(stripe["customer_hmacs"]) == {*stripe["customer_ids"], tag(NEVER_EXISTED)}
    assert {c["proven_by"] for c in stripe["customers"].values()} == {"deleted_stub"}

    # A given id that was already the deleted-customer object: not ours, not "never existed".
    stripe = audit[before]["stripe"]
    assert stripe["deleted_before_resolve"] == [tag(deleted_id)]
    assert stripe["not_found_at_intake"] == [] and stripe["erased_customer_ids"] == []
    assert stripe["absent_at_resolve"][tag(deleted_id)]["evidence"] == "deleted_stub"


def test_with_deleted_customers_answering_a_bare_404_the_run_completes_with_proofs(pipeline):
    pipeline.sandbox.set_faults({"stripe": {"deleted_customer_answer": "bare_404"}})
    person = _generated_with_one_customer(pipeline)
    ids = pipeline.submit("multi_stripe", person["key"])
    assert pipeline.run().state == "success"

    assert pipeline.store.counts_by_status() == {"completed": len(ids)}
    audit = pipeline.audit()
    for request_id, key in zip(ids, ("multi_stripe", person["key"]), strict=True):
        stripe = audit[request_id]["stripe"]
        customer_ids = tags(pipeline.sandbox.person(key)["stripe_customer_ids"])
        assert stripe["erased_customer_ids"] == customer_ids
        assert all(c["outcome"] == "deleted" and c["tag_confirmed"] for c in stripe["customers"].values())
        # Our DELETE answered the deleted object; the proof afterwards was a bare 404.
        assert {c["evidence"] for c in stripe["customers"].values()} == {"deleted_stub"}
        assert {p["evidence"] for p in stripe["proof"]["customers"].values()} == {"not_found"}
        assert {c["proven_by"] for c in stripe["customers"].values()} == {"not_found"}
        assert stripe["not_found_at_intake"] == []
        assert all(c["deleted"] for c in pipeline.sandbox.state(key)["stripe"]["customers"])
    bare = [
        r
        for r in pipeline.sandbox.requests_log()
        if r["route"] == "/v1/customers/{customer}" and r["method"] == "GET" and r["status"] == 404
    ]
    assert bare  # the proofs really read bare 404s


def test_a_customer_gone_between_resolve_and_our_tag_is_already_absent_not_erased(pipeline):
    """Resolve saw the customer; by the time we would tag it, it is gone (someone deleted it, or
    our own earlier attempt did): the live-state read that comes before any write (the erasure
    policy's) reads the bare 404 as "already absent", so not even the tag is sent; the run
    completes, and the audit does not call it an erasure."""
    pipeline.sandbox.set_faults({"stripe": {"deleted_customer_answer": "bare_404"}})
    person = _generated_with_one_customer(pipeline, skip=1)
    customer_id = person["stripe_customer_ids"][0]
    [request_id] = pipeline.submit(person["key"])
    resolve = IdentityResolutionOperator(task_id="resolve_by_hand", request_ids=[request_id])
    resolve.process(RequestScope(pipeline.store, request_id, logging.getLogger("test")), {"params": {}})
    assert pipeline.store.steps(request_id)[steps.RESOLVE].result["stripe"]["customer_ids"] == [customer_id]
    assert StripeHook().delete_customer(customer_id) == "deleted"

    assert pipeline.run().state == "success"
    assert pipeline.store.get(request_id).status is RequestStatus.COMPLETED
    stripe = pipeline.audit()[request_id]["stripe"]
    customer = stripe["customers"][tag(customer_id)]
    assert customer["outcome"] == "already_absent"
    assert customer["evidence"] == "not_found"
    assert customer["evidence_from"] == "live_state"
    assert not [
        r for r in pipeline.sandbox.requests_log() if r["method"] == "POST" and r.get("stripe_customers")
    ]
    assert stripe["already_absent_customer_ids"] == [tag(customer_id)]
    assert stripe["erased_customer_ids"] == []
    assert stripe["purge"] == "already_absent"


def test_with_the_redaction_job_method_customers_are_redacted_and_proven_by_the_job(
    pipeline, api_connections, monkeypatch
):
    conn = dict(api_connections["stripe_default"])
    conn["extra"] = {**conn["extra"], "redaction_method": "redaction_job"}
    monkeypatch.setenv("AIRFLOW_CONN_STRIPE_DEFAULT", json.dumps(conn))
    ids = pipeline.submit("multi_stripe")
    assert pipeline.run().state == "success"

    stripe = pipeline.audit()[ids[0]]["stripe"]
    customer_ids = tags(pipeline.sandbox.person("multi_stripe")["stripe_customer_ids"])
    assert stripe["method"] == "redaction_job" and stripe["proof"]["status"] == "succeeded"
    assert stripe["erased_customer_ids"] == customer_ids
    for customer in stripe["customers"].values():
        assert customer["outcome"] == "redacted" and customer["tag_confirmed"]
        assert customer["redaction_job_id"] == stripe["redaction_job_id"]
        assert customer["proven_by"] == "redaction_job_succeeded"
    assert all(c["redacted"] for c in pipeline.sandbox.state("multi_stripe")["stripe"]["customers"])
