"""Faults, crashes and slow processors: nothing lost, nothing repeated, everything proven."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from gdpr_erasure.store import RequestStatus

APIS = ("stripe", "twilio", "segment")


def _expected_effects(pipeline, keys):
    """What erasing ``keys`` must do at the providers, counted from the sandbox before the run."""
    people = {p["key"]: p for p in pipeline.sandbox.people()}
    before = {key: pipeline.sandbox.state(key) for key in keys}
    return {
        ("DELETE", "/v1/customers/{customer}"): sum(len(before[k]["stripe"]["customers"]) for k in keys),
        ("POST", "/v1/customers/{customer}"): sum(len(before[k]["stripe"]["customers"]) for k in keys),
        ("POST", "/regulations"): sum(1 for k in keys if before[k]["segment"]["profile_present"]),
        ("DELETE", "/v1/Stores/{storeId}/Profiles/{profileId}"): sum(
            1 for k in keys if before[k]["memory"]["profile_present"]
        ),
        ("DELETE", "/2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json"): sum(
            before[k]["twilio"]["messages"] for k in keys
        ),
        ("DELETE", "/2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json"): sum(
            before[k]["twilio"]["calls"] for k in keys
        ),
        "_people": people,
    }


def _assert_each_effect_once(pipeline, expected):
    effects = pipeline.side_effects()
    for key, count in expected.items():
        if key != "_people":
            assert effects[key] == count, (key, effects[key], count)


def _assert_all_completed(pipeline, ids):
    assert pipeline.store.counts_by_status() == {"completed": len(ids)}
    assert sorted(pipeline.audit()) == sorted(ids)
    assert pipeline.store.verify_audit_chain().ok


def test_under_rate_limits_server_errors_and_latency_everything_completes_once(pipeline):
    keys = [f"person-{n:03d}" for n in range(1, 11)] + ["multi_stripe", "in_flight"]
    expected = _expected_effects(pipeline, keys)
    ids = pipeline.submit(*keys)
    knobs = {"rate_429": 0.2, "retry_after": 0, "rate_5xx": 0.05, "latency_ms": 2, "latency_jitter_ms": 40}
    pipeline.sandbox.set_faults(dict.fromkeys(APIS, knobs))

    # One batch, a backlog's shape: each task works on eight requests at a time, so retries
    # and backoffs under the faults run concurrently, as they do at scale.
    assert pipeline.run(batch_size=50).state == "success"

    _assert_all_completed(pipeline, ids)
    _assert_each_effect_once(pipeline, expected)
    statuses = [r["status"] for r in pipeline.sandbox.requests_log()]
    assert statuses.count(429) > 10  # the faults really were injected
    assert {500, 503} & set(statuses)


@pytest.mark.parametrize("pipeline", [{"GDPR_ERASURE_LEASE_SECONDS": "3"}], indirect=True)
def test_a_run_killed_mid_erasure_is_finished_by_the_next_run_without_repeats(pipeline, tmp_path):
    keys = ["many_messages", "person-002"]
    expected = _expected_effects(pipeline, keys)
    ids = pipeline.submit(*keys)

    # The whole `airflow dags test` process (scheduler loop and task) dies with SIGKILL while
    # it is deleting messages: no cleanup code runs, exactly like a lost worker. Its task log
    # goes to a file, unbuffered, as a worker's task process sends each line to its supervisor.
    task_log = tmp_path / "killed-run.log"
    with task_log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "airflow", "dags", "test", "gdpr_erasure"],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    message_route = ("DELETE", "/2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json")
    try:
        deadline = time.monotonic() + 120
        while pipeline.side_effects()[message_route] < 20:
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run never started deleting messages"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert pipeline.store.counts_by_status() == {"in_progress": 2}
    assert pipeline.side_effects()[message_route] < expected[message_route]
    # What the request being erased logged before the kill is in the log: its lines are written
    # as they happen, marked with its id; its group, written when a request is done, never came.
    logged = task_log.read_text(errors="replace")
    assert "[req-many_messages] found {'messages': " in logged
    assert "::group::erase_batch.erase_twilio_history: req-many_messages" not in logged
    assert "::group::erase_batch.resolve_identity: req-many_messages (ok)" in logged  # done before

    time.sleep(3)  # the dead run's lease expires
    assert pipeline.run().state == "success"

    _assert_all_completed(pipeline, ids)
    _assert_each_effect_once(pipeline, expected)
    audit = pipeline.audit()
    recorded = sum(audit[rid]["twilio"]["history_deleted"]["messages"] for rid in ids)
    assert recorded == expected[message_route]  # counts from before the crash were kept


@pytest.mark.parametrize("pipeline", [{"GDPR_ERASURE_SEGMENT_PATIENCE_SECONDS": "1"}], indirect=True)
def test_a_regulation_still_running_after_the_sensor_gives_up_completes_in_a_later_run(pipeline):
    pipeline.sandbox.reset(regulation_seconds=6)
    ids = pipeline.submit("person-003")

    assert pipeline.run().state == "success"  # slow is not failed
    request = pipeline.store.get(ids[0])
    assert request.status is RequestStatus.VERIFYING
    assert pipeline.audit() == {}
    assert pipeline.store.steps(ids[0])["verify_segment"].status.value == "pending"

    deadline = time.monotonic() + 30
    while any(
        r["overallStatus"] != "FINISHED"
        for r in pipeline.sandbox.state("person-003")["segment"]["regulations"]
    ):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    pipeline.sandbox.clear_requests_log()
    assert pipeline.run().state == "success"

    assert pipeline.store.get(ids[0]).status is RequestStatus.COMPLETED
    assert pipeline.audit()[ids[0]]["segment"]["proof"]["status"] == "FINISHED"
    assert not pipeline.side_effects()  # the second run only re-checked the pending proof


def test_a_permanently_failing_request_ends_needs_attention_and_the_others_complete(pipeline):
    pipeline.submit("segment_failed", "person-006")
    outcomes = []
    for _ in range(3):
        run = pipeline.run()
        outcomes.append((run.state, pipeline.store.get("req-segment_failed").status))
    assert outcomes == [
        ("failed", RequestStatus.FAILED),
        ("failed", RequestStatus.FAILED),
        ("failed", RequestStatus.NEEDS_ATTENTION),
    ]
    assert pipeline.store.get("req-person-006").status is RequestStatus.COMPLETED
    stuck = pipeline.store.get("req-segment_failed")
    assert stuck.failures == 3
    assert "FAILED" in stuck.last_error
    assert pipeline.side_effects()[("POST", "/regulations")] == 1 + 3  # a new regulation per retry

    assert pipeline.run().state == "success"  # needs_attention waits for a person, not the next run
    assert sorted(pipeline.audit()) == ["req-person-006"]
