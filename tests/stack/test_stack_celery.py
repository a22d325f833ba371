"""The docker-compose stack on Celery, run as local processes (devstack/composestack.py): a run triggered
over the REST API erases every request, each task on the Celery worker, each slow proof awaited
in the triggerer, with the compliance store on PostgreSQL."""

from __future__ import annotations

import re
from collections import Counter
from urllib.parse import quote

import pytest
from sqlalchemy import bindparam, create_engine, text

# Edge cases included: no Stripe customer, two customers with one email, no Segment profile,
# a long message history. person-005 has no Segment profile either (seed 1).
PEOPLE = ("person-002", "person-005", "multi_stripe", "no_stripe", "no_segment", "many_messages")
# Segment regulations take this long in the sandbox, so verify_segment is still waiting when it
# first checks and has to defer (a proof already there would need no triggerer).
REGULATION_SECONDS = 40
RUN_TIMEOUT = 180.0
MAPPED_GROUP = "erase_batch."  # one instance of each of its tasks per batch
BATCH_SIZE = 2  # six requests in three batches: several mapped groups side by side


@pytest.fixture
def stack(celery_stack):
    """The session's stack with a sandbox re-seeded (same people, same accounts) to slow
    regulations; re-seeded to its start settings afterwards for the next test."""
    celery_stack.sandbox("POST", "/reset", json={"regulation_seconds": REGULATION_SECONDS})
    yield celery_stack
    celery_stack.sandbox("POST", "/reset", json={})


def test_a_rest_triggered_run_erases_every_request_on_the_celery_stack(stack):
    ids = stack.submit(list(PEOPLE), prefix="stack")

    run_id = stack.trigger_dag({"batch_size": BATCH_SIZE})
    run = stack.wait_for_dag_run(run_id, RUN_TIMEOUT)
    assert run["state"] == "success", stack.diagnostics()
    assert run["run_type"] == "manual"

    # -- the compliance store (PostgreSQL, through the compose stack's compliance_db) ------------
    store = stack.store()
    try:
        assert store.dialect == "postgresql"
        # Other tests of this session share the stack: check this test's requests, not totals.
        assert {store.get(request_id).status.value for request_id in ids} == {"completed"}
        chain = store.verify_audit_chain()
        assert chain.ok, chain.problems
        assert chain.checked >= len(ids)
        audit = {entry.request_id: entry.record for entry in store.audit_entries()}
        assert all(store.get(request_id).identifiers is None for request_id in ids)
    finally:
        store.dispose()
    assert set(ids) <= set(audit)
    assert audit["stack-no_stripe"]["stripe"]["purge"] == "skipped"
    assert audit["stack-no_segment"]["segment"]["purge"] == "skipped"
    assert len(audit["stack-multi_stripe"]["stripe"]["customer_ids"]) == 2

    # -- the providers: nothing left ----------------------------------------------------------
    for key in PEOPLE:
        state = stack.sandbox("GET", f"/state/person/{key}")
        assert all(customer["deleted"] for customer in state["stripe"]["customers"]), key
        assert state["twilio"]["messages"] == 0, key
        assert state["twilio"]["calls"] == 0, key
        assert state["memory"]["profile_present"] is False, key
        assert all(r["overallStatus"] == "FINISHED" for r in state["segment"]["regulations"]), key

    # -- every task ran on this stack's Celery worker -------------------------------------------
    tis = stack.task_instances(run_id)
    dag_tasks = [
        task["task_id"] for task in stack.api("GET", "/dags/gdpr_erasure/tasks", expect=200).json()["tasks"]
    ]
    claim = f"/dags/gdpr_erasure/dagRuns/{quote(run_id, safe='')}/taskInstances/claim_requests"
    batches = stack.api(
        "GET",
        f"{claim}/xcomEntries/return_value",
        params={"deserialize": True},
        expect=200,
    ).json()["value"]
    assert sorted(rid for batch in batches for rid in batch) == sorted(ids)
    assert [len(batch) for batch in batches] == [BATCH_SIZE] * (len(PEOPLE) // BATCH_SIZE)
    assert Counter(ti["task_id"] for ti in tis) == {
        task: len(batches) if task.startswith(MAPPED_GROUP) else 1 for task in dag_tasks
    }
    assert {ti["state"] for ti in tis} == {"success"}
    assert {ti["queue"] for ti in tis} == {stack.queue}
    # Each task instance's last execution is a Celery task (its external_executor_id) that this
    # worker received and whose result the Celery backend (PostgreSQL) stored as SUCCESS.
    engine = create_engine(stack.airflow_db_url)
    with engine.connect() as conn:
        celery_ids = dict(
            conn.execute(
                text("SELECT id, external_executor_id FROM task_instance WHERE run_id = :run"),
                {"run": run_id},
            ).all()
        )
    assert {str(ti_id) for ti_id in celery_ids} == {ti["id"] for ti in tis}
    assert all(celery_ids.values())
    worker_log = stack.logs["airflow-worker"].read_text(errors="replace")
    received = set(re.findall(r"execute_workload\[([0-9a-f-]{36})\] received", worker_log))
    assert set(celery_ids.values()) <= received

    def celery_results() -> bool:  # the last results may still be on their way
        with engine.connect() as conn:
            done = conn.execute(
                text(
                    "SELECT count(*) FROM celery_taskmeta WHERE status = 'SUCCESS' AND task_id IN :ids"
                ).bindparams(bindparam("ids", expanding=True)),
                {"ids": tuple(celery_ids.values())},
            ).scalar_one()
        return done == len(celery_ids)

    stack.wait_for("the Celery results", celery_results, 30)
    engine.dispose()

    # -- the Segment proofs waited in the triggerer, not on the worker ----------------------------
    slow = {rid for rid, record in audit.items() if rid in ids and record["segment"]["regulation_id"]}
    assert len(slow) >= 3
    slow_batches = {index for index, batch in enumerate(batches) if slow & set(batch)}
    events = stack.api(
        "GET",
        "/eventLogs",
        params={"dag_id": "gdpr_erasure", "run_id": run_id, "event": "deferred", "limit": 100},
        expect=200,
    ).json()["event_logs"]
    deferred = {e["map_index"] for e in events if e["task_id"].endswith("verify_segment")}
    assert deferred == slow_batches
    triggerers = stack.api("GET", "/jobs", params={"job_type": "TriggererJob"}, expect=200).json()["jobs"]
    trigger_logs = {f".trigger.{job['id']}.log" for job in triggerers}
    for ti in tis:
        if ti["task_id"] != f"{MAPPED_GROUP}verify_segment" or ti["map_index"] not in slow_batches:
            continue

        def log_messages(ti=ti) -> list[str] | None:
            log = stack.api(
                "GET",
                f"/dags/gdpr_erasure/dagRuns/{quote(run_id, safe='')}/taskInstances/{ti['task_id']}/logs/1",
                params={"map_index": ti["map_index"]},
                headers={"Accept": "application/json"},
                expect=200,
            ).json()["content"]
            messages = [str(line.get("event", "")) for line in log]
            # The triggerer's lines reach the task's log file a moment after the run ends.
            return messages if "Trigger fired event" in messages else None

        messages = stack.wait_for(f"the trigger's lines in {ti['rendered_map_index']}", log_messages, 30)
        assert any(m.startswith("Pausing task as DEFERRED") for m in messages), ti["rendered_map_index"]
        assert any(m.endswith(suffix) for m in messages for suffix in trigger_logs), "no triggerer log"
