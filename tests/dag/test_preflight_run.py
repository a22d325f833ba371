"""A misconfigured system fails the run before anything is claimed.

With a wrong Segment phone id type, every phone lookup answers 404 "not found", the same as a
person without a Segment profile: without the preflight the run would complete and report the
person erased from Segment with their phone-keyed profile untouched. A valid Stripe key of another
account does the same for Stripe, and is also refused where the Stripe step reads its answers.
"""

from __future__ import annotations

import json

from gdpr_erasure import steps
from gdpr_erasure.store import RequestStatus, StepStatus


def test_a_wrong_external_id_type_fails_the_run_and_claims_nothing(pipeline, api_connections, monkeypatch):
    conn = dict(api_connections["segment_default"])
    conn["extra"] = dict(conn["extra"], phone_id_type="phone_number")
    monkeypatch.setenv("AIRFLOW_CONN_SEGMENT_DEFAULT", json.dumps(conn))
    ids = pipeline.submit("person-002", "no_segment")
    pipeline.sandbox.clear_requests_log()

    run = pipeline.run()
    assert run.state == "failed"
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["preflight"] == "failed"
    assert states["claim_requests"] == "upstream_failed"
    assert states["summarize_run"] == "failed"  # the run's last task: a green run would hide it
    for rid in ids:
        request = pipeline.store.get(rid)
        assert request.status is RequestStatus.PENDING
        assert request.attempts == 0
        assert pipeline.store.steps(rid) == {}
    writes = [r for r in pipeline.sandbox.requests_log() if r["method"] in ("POST", "DELETE")]
    assert writes == []


def test_a_good_setup_passes_the_preflight(pipeline):
    pipeline.submit("person-003")
    run = pipeline.run()
    assert run.state == "success"
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["preflight"] == "success"


# --- Stripe: a valid key of another account --------------------------------------------------------
# Another project's test key (a sister company's account) reads customers like ours: it finds
# nobody by email and answers every cus_ id with 404 resource_missing, which the pipeline would
# record as "not found at intake" and complete. The sandbox gives such a key to any key starting
# sk_test_other_ (its account, other_account_id, has none of the sandbox's customers).

OTHER_ACCOUNT_KEY = "sk_test_other_project_key"


def _stripe_key_of_another_account(api_connections, monkeypatch) -> None:
    conn = dict(api_connections["stripe_default"], password=OTHER_ACCOUNT_KEY)  # account_id stays ours
    monkeypatch.setenv("AIRFLOW_CONN_STRIPE_DEFAULT", json.dumps(conn))


def _nothing_recorded_as_absent(pipeline, ids) -> None:
    """No audit record (so no stripe.not_found_at_intake), no request completed, no resolved
    Stripe ids, no Stripe step, and nothing written at Stripe."""
    assert pipeline.audit() == {}
    for rid in ids:
        assert pipeline.store.get(rid).status is not RequestStatus.COMPLETED
        recorded = pipeline.store.steps(rid)
        assert "stripe" not in ((recorded.get(steps.RESOLVE) and recorded[steps.RESOLVE].result) or {})
        assert steps.STRIPE not in recorded and steps.VERIFY_STRIPE not in recorded
    writes = [r for r in pipeline.sandbox.requests_log() if r["method"] in ("POST", "DELETE")]
    assert not [r for r in writes if r["api"] == "stripe"]


def test_a_key_of_another_stripe_account_fails_the_run_in_preflight(pipeline, api_connections, monkeypatch):
    _stripe_key_of_another_account(api_connections, monkeypatch)
    ids = pipeline.submit("multi_stripe", "person-002")
    pipeline.sandbox.clear_requests_log()

    run = pipeline.run()
    assert run.state == "failed"
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["preflight"] == "failed"
    assert states["claim_requests"] == "upstream_failed"
    assert states["summarize_run"] == "failed"
    for rid in ids:
        request = pipeline.store.get(rid)
        assert request.status is RequestStatus.PENDING
        assert request.attempts == 0
        assert pipeline.store.steps(rid) == {}
    _nothing_recorded_as_absent(pipeline, ids)
    # The preflight asked whose key it is; nothing about a person reached Stripe.
    stripe_routes = {r["route"] for r in pipeline.sandbox.requests_log() if r["api"] == "stripe"}
    assert stripe_routes == {"/v1/customers", "/v1/account"}


def test_without_the_preflight_the_stripe_step_records_an_error_not_absence(
    pipeline, api_connections, monkeypatch
):
    """A run of the tasks after the preflight (a manual rerun, a cleared preflight): the hook's own
    guard refuses the other account's answers, so the request fails with the reason instead of
    closing with its Stripe customers 'not found'."""
    _stripe_key_of_another_account(api_connections, monkeypatch)
    ids = pipeline.submit("multi_stripe")
    pipeline.sandbox.clear_requests_log()
    after_preflight = pipeline.dag.partial_subset(
        [task_id for task_id in pipeline.dag.task_dict if task_id != "preflight"], include_upstream=False
    )
    assert "preflight" not in after_preflight.task_dict

    run = after_preflight.test()
    assert run.state == "failed"
    [rid] = ids
    request = pipeline.store.get(rid)
    assert request.status is RequestStatus.FAILED  # the next run retries it, with a fixed key
    assert "wrong key" in request.last_error and "acct_" in request.last_error
    resolved = pipeline.store.steps(rid)[steps.RESOLVE]
    assert resolved.status is StepStatus.FAILED and "wrong key" in resolved.result["reason"]
    _nothing_recorded_as_absent(pipeline, ids)
    assert not any(c["deleted"] for c in pipeline.sandbox.state("multi_stripe")["stripe"]["customers"])
    # Stripe was only asked whose key it is: no list, no customer read as missing.
    stripe_routes = {r["route"] for r in pipeline.sandbox.requests_log() if r["api"] == "stripe"}
    assert stripe_routes == {"/v1/account"}
