"""The erasure DAG, run end to end with ``dag.test()`` against the sandbox and a real store."""

from __future__ import annotations

from gdpr_erasure.store import RequestStatus

EVERY_KIND = ("person-002", "many_messages", "multi_stripe", "no_stripe", "no_segment", "quiet_phone")
ERASURES = ("erase_twilio_profile", "erase_twilio_history", "erase_segment", "erase_stripe")
PROOFS = ("verify_twilio_profile", "verify_segment", "verify_stripe")


def test_every_request_is_erased_proven_and_audited(pipeline):
    ids = pipeline.submit(*EVERY_KIND)
    run = pipeline.run()
    assert run.state == "success"

    assert pipeline.store.counts_by_status() == {"completed": len(ids)}
    audit = pipeline.audit()
    assert sorted(audit) == sorted(ids)
    assert pipeline.store.verify_audit_chain().ok

    for key in EVERY_KIND:
        state = pipeline.sandbox.state(key)
        assert all(c["deleted"] for c in state["stripe"]["customers"]), key
        assert state["twilio"]["messages"] == 0, key
        assert state["twilio"]["calls"] == 0, key
        assert state["memory"]["profile_present"] is False, key
        assert all(r["overallStatus"] == "FINISHED" for r in state["segment"]["regulations"]), key
        request = pipeline.store.get(f"req-{key}")
        assert request.identifiers is None  # the intake row forgot the person
        subject = audit[request.id]["subject"]
        assert request.identifiers_hash == subject["identifiers_hash"]
        # Each identifier's own keyed hash too (the auditor's lookup by any one of them).
        assert sorted(subject["identifier_hashes"]) == sorted(subject["identifier_types"])
        assert all(len(h) == 64 for h in subject["identifier_hashes"].values())


def test_edge_cases_complete_with_the_right_outcomes(pipeline):
    pipeline.submit("no_stripe", "no_segment", "multi_stripe")
    assert pipeline.run().state == "success"
    audit = pipeline.audit()
    assert audit["req-no_stripe"]["stripe"]["purge"] == "skipped"
    assert audit["req-no_stripe"]["stripe"]["customer_ids"] == []
    assert audit["req-no_segment"]["segment"]["purge"] == "skipped"
    assert audit["req-no_segment"]["segment"]["reason"] == "no Segment profile"
    assert audit["req-no_segment"]["segment"]["regulation_id"] is None
    multi = audit["req-multi_stripe"]["stripe"]
    assert len(multi["customer_ids"]) == 2
    assert {c["outcome"] for c in multi["customers"].values()} == {"deleted"}
    assert all(c["tag_confirmed"] for c in multi["customers"].values())
    assert set(multi["proof"]["customers"]) == set(multi["customer_ids"])
    assert audit["req-multi_stripe"]["segment"]["proof"]["status"] == "FINISHED"


def test_dry_run_changes_nothing(pipeline):
    ids = pipeline.submit("person-002", "multi_stripe")
    pipeline.sandbox.clear_requests_log()
    run = pipeline.run(dry_run=True)
    assert run.state == "success"
    assert pipeline.store.counts_by_status() == {"pending": 2}
    assert pipeline.audit() == {}
    assert all(pipeline.store.steps(rid) == {} for rid in ids)
    writes = [r for r in pipeline.sandbox.requests_log() if r["method"] in ("POST", "DELETE")]
    # Lookups only: Memory's lookup is a POST that reads; nothing else may write.
    assert {r["route"] for r in writes} <= {"/v1/Stores/{storeId}/Profiles/Lookup"}
    assert pipeline.sandbox.state("person-002")["stripe"]["customers"][0]["deleted"] is False


def test_a_failing_request_fails_the_run_but_not_the_others(pipeline):
    pipeline.submit("segment_failed", "person-004")
    run = pipeline.run()
    assert run.state == "failed"
    assert pipeline.store.get("req-person-004").status is RequestStatus.COMPLETED
    failed = pipeline.store.get("req-segment_failed")
    assert failed.status is RequestStatus.FAILED
    assert "verify_segment" in failed.last_error
    assert sorted(pipeline.audit()) == ["req-person-004"]


def test_a_second_run_after_completion_does_nothing(pipeline):
    pipeline.submit("person-005")
    assert pipeline.run().state == "success"
    first_audit = pipeline.store.audit_entries()
    pipeline.sandbox.clear_requests_log()
    assert pipeline.run().state == "success"
    assert pipeline.store.audit_entries() == first_audit
    # Only the preflight's reads: nothing about the person, nothing written.
    calls = pipeline.sandbox.requests_log()
    assert {r["method"] for r in calls} == {"GET"}
    assert len(calls) <= 10


#: Step -> the task of the erase_batch group that works on it.
STEP_TASKS = {
    "resolve": "resolve_identity",
    **{name: name for name in ERASURES},
    **{name: name for name in PROOFS},
}


def test_each_step_and_record_says_which_task_instance_ran_it(pipeline):
    ids = pipeline.submit("person-002", "no_stripe", "multi_stripe")
    run = pipeline.run(batch_size=2)
    assert run.state == "success"
    audit = pipeline.audit()
    for position, rid in enumerate(ids):  # oldest first: batches [0, 1] and [2]
        request = pipeline.store.get(rid)
        assert request.claimed_by == f"gdpr_erasure/{run.run_id}"
        assert request.claimed_at is not None
        assert request.claimed_map_index == position // 2
        where = {
            name: (
                s.ran_in.dag_id,
                s.ran_in.task_id,
                s.ran_in.run_id,
                s.ran_in.map_index,
                s.ran_in.try_number,
            )
            for name, s in pipeline.store.steps(rid).items()
        }
        # write_ledger_record's rewrites (tags for cus_ ids) leave resolve and erase_stripe where they ran.
        assert where == {
            name: ("gdpr_erasure", f"erase_batch.{task}", run.run_id, position // 2, 1)
            for name, task in STEP_TASKS.items()
        }
        assert audit[rid]["ran_in"] == {
            "dag_id": "gdpr_erasure",
            "task_id": "erase_batch.write_ledger_record",
            "dag_run_id": run.run_id,
            "map_index": position // 2,
            "try_number": 1,
        }


def test_a_small_run_gives_each_request_its_own_group_named_by_its_id(pipeline):
    ids = pipeline.submit("person-002", "no_stripe", "multi_stripe")
    run = pipeline.run()  # batch_size auto, 3 requests <= per_request_up_to
    assert run.state == "success"
    assert [pipeline.store.get(rid).claimed_map_index for rid in ids] == [0, 1, 2]
    labels = {
        ti.map_index: ti.rendered_map_index
        for ti in run.get_task_instances()
        if ti.task_id == "erase_batch.write_ledger_record"
    }
    assert labels == {0: ids[0], 1: ids[1], 2: ids[2]}
    assert {r["ran_in"]["map_index"] for r in pipeline.audit().values()} == {0, 1, 2}


def test_a_run_above_the_threshold_goes_in_batches(pipeline):
    ids = pipeline.submit("person-002", "no_stripe", "multi_stripe")
    run = pipeline.run(per_request_up_to=2)
    assert run.state == "success"
    assert [pipeline.store.get(rid).claimed_map_index for rid in ids] == [0, 0, 0]
    labels = [
        ti.rendered_map_index
        for ti in run.get_task_instances()
        if ti.task_id == "erase_batch.write_ledger_record"
    ]
    assert labels == [f"{ids[0]} +2"]
