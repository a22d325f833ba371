"""A misconfigured system fails the run before anything is claimed.

With a wrong Segment phone id type, every phone lookup answers 404 "not found", the same as a
person without a Segment profile: without the preflight the run would complete and report the
person erased from Segment with their phone-keyed profile untouched.
"""

from __future__ import annotations

import json

from gdpr_erasure.store import RequestStatus


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
