"""One request's task logs, found from where the store says it ran, on the compose stack (Celery).

A run over the REST API erases four requests in two batches. For the second request of the second
batch (not the first of its batch, and map index 1, so neither default would find it) the store
names, per step, the task instance and try that worked on it; that task instance's log, read
through Airflow's REST API with the recorded run, map index and try, holds the request's lines as
they happened (marked with its id) and its log group, whose lines are its own. The audit record
names the ``write_ledger_record`` task instance the same way.
"""

from __future__ import annotations

from urllib.parse import quote

from gdpr_erasure.store import TaskTry

# Submitted in this order, claimed oldest first: batches [0, 1] and [2, 3].
PEOPLE = ("person-002", "no_stripe", "person-005", "many_messages")
BATCH_SIZE = 2
RUN_TIMEOUT = 180.0
#: A step, and lines of its group for many_messages (a phone with a long history).
EXPECTED = {
    "resolve": ("resolve_identity", "ok", ["identifiers given: email, phone", "found: "]),
    "erase_twilio_history": ("erase_twilio_history", "ok", ["found {'messages': ", "message: "]),
    "erase_stripe": ("erase_stripe", "ok", ["Stripe customers: cus#"]),
    "verify_stripe": ("verify_stripe", "done", ["proven: {'customers': {'cus#"]),
}


def log_lines(stack, ran: TaskTry) -> list[str]:
    """The messages of a task instance's log, read with the REST API as an operator would."""
    path = (
        f"/dags/{ran.dag_id}/dagRuns/{quote(ran.run_id, safe='')}/taskInstances/{ran.task_id}"
        f"/logs/{ran.try_number}"
    )
    content = stack.api(
        "GET", path, params={"map_index": ran.map_index}, headers={"Accept": "application/json"}, expect=200
    ).json()["content"]
    return [str(line.get("event", "")) for line in content]


def group(lines: list[str], title: str) -> list[str] | None:
    """The lines of the log group ``title`` (None if the log has no such group)."""
    start = f"::group::{title}"
    if start not in lines:
        return None
    inside = lines[lines.index(start) + 1 :]
    ends = [i for i, line in enumerate(inside) if line == "::endgroup::" or line.startswith("::group::")]
    return inside[: ends[0]] if ends else inside


def test_a_request_s_log_group_is_found_through_the_rest_api_from_where_it_ran(celery_stack):
    stack = celery_stack
    stack.sandbox("POST", "/reset", json={})  # the people as seeded, whatever tests ran before
    ids = stack.submit(list(PEOPLE), prefix="logs")
    rid, neighbour = ids[3], ids[2]

    run_id = stack.trigger_dag({"batch_size": BATCH_SIZE, "request_ids": ids})
    run = stack.wait_for_dag_run(run_id, RUN_TIMEOUT)
    assert run["state"] == "success", stack.diagnostics()

    store = stack.store()
    try:
        request = store.get(rid)
        ran = {name: step.ran_in for name, step in store.steps(rid).items()}
        record = store.audit_entry(rid).record
    finally:
        store.dispose()
    assert (request.claimed_by, request.claimed_map_index) == (f"gdpr_erasure/{run_id}", 1)

    for step, (task, outcome, expected) in EXPECTED.items():
        where = ran[step]
        assert where == TaskTry("gdpr_erasure", f"erase_batch.{task}", run_id, 1, where.try_number), step
        assert where.try_number >= 1
        lines = log_lines(stack, where)
        # As it happened, marked with the request's id...
        own = [line for line in lines if line.startswith(f"[{rid}] ")]
        assert own, (step, lines[:40])
        # ...and together in its group once done: lines it wrote as they happened, nobody else's
        # (a sensor resumed after its deferral groups only what it wrote then).
        found = group(lines, f"erase_batch.{task}: {rid} ({outcome})")
        assert found, (step, [line for line in lines if line.startswith("::group::")])
        assert {f"[{rid}] {line}" for line in found} <= set(own), (step, found, own)
        for start in expected:
            assert any(line.startswith(start) for line in found), (step, start, found)
        # The batch's other request has its own group in the same log, not in this one.
        assert group(lines, f"erase_batch.{task}: {neighbour} ({outcome})") is not None
        assert not any(neighbour in line for line in found)

    # The request is in the log of its own map index only.
    first_batch = log_lines(stack, TaskTry("gdpr_erasure", "erase_batch.resolve_identity", run_id, 0, 1))
    assert not any(rid in line for line in first_batch)

    # The audit record names the write_ledger_record task instance that wrote it.
    wrote = record["ran_in"]
    assert (wrote["dag_run_id"], wrote["map_index"], wrote["task_id"]) == (
        run_id,
        1,
        "erase_batch.write_ledger_record",
    )
    lines = log_lines(
        stack, TaskTry("gdpr_erasure", wrote["task_id"], run_id, wrote["map_index"], wrote["try_number"])
    )
    closing = group(lines, f"erase_batch.write_ledger_record: {rid} (completed)")
    assert closing is not None and any(line.startswith("audit record seq ") for line in closing)
