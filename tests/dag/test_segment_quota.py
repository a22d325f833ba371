"""Segment's monthly regulation quota: the request waits (``deferred``), it does not fail-loop.

Segment regulates at most 110,000 users a calendar month per workspace; past that, ``POST
/regulations`` answers 429 with a reset far in the future. The retry policy turns a wait longer
than it retries into :class:`ProviderQuotaExhausted`, the Segment step records that it waits,
``write_ledger_record`` defers the request until the reset, and the first run after it creates the
regulation, with everything else already erased in the first run.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import pytest
import requests

from gdpr_erasure import steps
from gdpr_erasure.hooks.errors import ProviderQuotaExhausted, TransientApiError
from gdpr_erasure.hooks.retry import RetryPolicy, call_with_retries
from gdpr_erasure.hooks.segment import SegmentHook
from gdpr_erasure.ledger.export import period_summary
from gdpr_erasure.store import RequestStatus, StepStatus

FAST = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05)
QUOTA_WINDOW_SECONDS = 20  # the sandbox's quota "month" in the end-to-end test


# -- the retry policy ------------------------------------------------------------------------------


def _raising(*errors):
    calls = {"n": 0}

    def call():
        calls["n"] += 1
        if errors[calls["n"] - 1 :]:
            raise errors[calls["n"] - 1]
        return "ok"

    return call, calls


def test_a_wait_longer_than_the_retry_cap_is_a_spent_quota_with_its_reset_time():
    week = 7 * 24 * 3600.0
    call, calls = _raising(
        TransientApiError("segment", "create regulation", status=429, code="x", retry_after=week)
    )
    before = datetime.now(UTC)
    with pytest.raises(ProviderQuotaExhausted) as caught:
        call_with_retries(call, policy=FAST, sleep=lambda s: pytest.fail("slept"))
    exc = caught.value
    assert calls["n"] == 1  # asking again cannot help
    assert isinstance(exc, TransientApiError)  # callers that handle transient errors still do
    assert (exc.api, exc.operation, exc.status, exc.code, exc.retry_after) == (
        "segment",
        "create regulation",
        429,
        "x",
        week,
    )
    assert before + timedelta(seconds=week) <= exc.not_before <= datetime.now(UTC) + timedelta(seconds=week)
    assert exc.not_before.isoformat() in str(exc)


def test_short_waits_are_still_retried_in_the_task():
    call, calls = _raising(TransientApiError("segment", "x", status=429, retry_after=0.01))
    assert call_with_retries(call, policy=FAST, sleep=lambda s: None) == "ok"
    assert calls["n"] == 2


def test_the_retry_cap_comes_from_the_environment_unless_the_policy_sets_it(monkeypatch):
    monkeypatch.setenv("GDPR_ERASURE_MAX_RETRY_AFTER", "5")
    assert RetryPolicy().retry_after_cap == 5.0
    assert RetryPolicy(max_retry_after=60).retry_after_cap == 60.0
    call, _ = _raising(TransientApiError("stripe", "x", status=429, retry_after=6))
    with pytest.raises(ProviderQuotaExhausted):
        call_with_retries(call, policy=RetryPolicy(), sleep=lambda s: pytest.fail("slept"))
    monkeypatch.delenv("GDPR_ERASURE_MAX_RETRY_AFTER")
    assert RetryPolicy().retry_after_cap == 120.0


# -- the sandbox's quota ---------------------------------------------------------------------------


def _regulate(sandbox, user_ids: list[str]) -> requests.Response:
    body = {"regulationType": "SUPPRESS_WITH_DELETE", "subjectType": "USER_ID", "subjectIds": user_ids}
    return requests.post(
        f"{sandbox.base_url}/segment/api/regulations",
        json=body,
        headers={"Authorization": "Bearer sandbox-token"},
        timeout=10,
    )


def _user_id(sandbox, key: str) -> str:
    return sandbox.person(key)["segment_user_id"]


def test_the_sandbox_refuses_regulations_past_the_monthly_quota_until_next_month(sandbox):
    sandbox.reset(regulation_quota=2)
    assert _regulate(sandbox, [_user_id(sandbox, "person-002")]).status_code == 200
    assert _regulate(sandbox, [_user_id(sandbox, "person-003")]).status_code == 200

    refused = _regulate(sandbox, [_user_id(sandbox, "person-004")])

    assert refused.status_code == 429
    error = refused.json()["errors"][0]
    assert error["type"] == "RateLimited"
    assert "2 users per calendar month" in error["message"]
    now = datetime.now(UTC)
    next_month = (now.replace(day=1, hour=0, minute=0, second=0, microsecond=0) + timedelta(days=32)).replace(
        day=1
    )
    assert parsedate_to_datetime(refused.headers["X-RateLimit-Reset"]) == next_month
    assert abs(int(refused.headers["Retry-After"]) - (next_month - now).total_seconds()) <= 2
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert sandbox.state("person-004")["segment"]["regulations"] == []  # nothing was created


def test_the_segment_hook_reports_the_spent_quota_with_the_reset(sandbox, api_connections):
    sandbox.reset(regulation_quota=1)
    hook = SegmentHook(retry_policy=FAST)
    hook.create_regulation([_user_id(sandbox, "person-002")])
    with pytest.raises(ProviderQuotaExhausted) as caught:
        hook.create_regulation([_user_id(sandbox, "person-003")])
    now = datetime.now(UTC)
    next_month = (now.replace(day=1, hour=0, minute=0, second=0, microsecond=0) + timedelta(days=32)).replace(
        day=1
    )
    assert next_month <= caught.value.not_before <= next_month + timedelta(seconds=3)
    assert caught.value.status == 429


def test_short_quota_windows_reset_back_to_back(sandbox):
    sandbox.reset(regulation_quota=1, regulation_quota_seconds=2)
    assert _regulate(sandbox, [_user_id(sandbox, "person-002")]).status_code == 200
    refused = _regulate(sandbox, [_user_id(sandbox, "person-003")])
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) <= 2
    time.sleep(int(refused.headers["Retry-After"]) + 0.1)
    assert _regulate(sandbox, [_user_id(sandbox, "person-003")]).status_code == 200


# -- the DAG, end to end ---------------------------------------------------------------------------


def _try_numbers(run, task_id: str) -> list[int]:
    return [ti.try_number for ti in run.get_task_instances() if ti.task_id.endswith(task_id)]


def _run_summary(run) -> dict:
    """What ``summarize_run`` returned (its XCom) in ``run``."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            XComModel.get_many(
                run_id=run.run_id, key="return_value", task_ids="summarize_run", dag_ids=run.dag_id
            )
        ).one()
        return XComModel.deserialize_value(row)


@pytest.mark.parametrize("pipeline", [{"GDPR_ERASURE_MAX_RETRY_AFTER": "1"}], indirect=True)
def test_a_spent_quota_defers_the_request_and_the_first_run_after_the_reset_completes_it(pipeline):
    sandbox, store = pipeline.sandbox, pipeline.store
    # Segment's month is 20 s here, and the hook retries waits of up to 1 s: Segment's answer
    # (wait until the reset) is longer than the task should wait, as a month is in production.
    sandbox.reset(regulation_quota=1, regulation_quota_seconds=QUOTA_WINDOW_SECONDS)
    # Another process used this window's quota.
    assert _regulate(sandbox, [_user_id(sandbox, "person-006")]).status_code == 200
    pipeline.submit("person-002", "no_segment")
    window_start = datetime.now(UTC)

    first = pipeline.run()

    # The run is green: waiting for a quota is not a failure.
    assert first.state == "success"
    waiting = store.get("req-person-002")
    assert waiting.status is RequestStatus.DEFERRED
    assert (waiting.failures, waiting.attempts) == (0, 1)
    assert window_start < waiting.not_before <= window_start + timedelta(seconds=QUOTA_WINDOW_SECONDS + 1)
    assert "erase_segment: provider quota spent" in waiting.last_error
    assert store.get("req-no_segment").status is RequestStatus.COMPLETED
    assert store.counts_by_status() == {"completed": 1, "deferred": 1}
    # No Airflow retry of the Segment task (nor of any other): the wait is recorded, not raised.
    assert set(_try_numbers(first, "erase_segment")) == {1}
    assert set(_try_numbers(first, "write_ledger_record")) == {1}
    # The run summary counts it and says when it is due.
    summary = _run_summary(first)
    assert (summary["deferred"], summary["completed"]) == (1, 1)
    assert summary["deferred_until"] == {"req-person-002": waiting.not_before.isoformat()}
    # Everything but Segment is erased and proven in this run.
    step = store.steps("req-person-002")
    assert step[steps.SEGMENT].status is StepStatus.PENDING
    assert datetime.fromisoformat(step[steps.SEGMENT].result["not_before"]) == waiting.not_before
    assert steps.VERIFY_SEGMENT not in step
    for done in (steps.TWILIO_PROFILE, steps.TWILIO_HISTORY, steps.STRIPE):
        assert step[done].status in (StepStatus.DONE, StepStatus.SKIPPED), done
    for proof in (steps.VERIFY_TWILIO_PROFILE, steps.VERIFY_STRIPE):
        assert step[proof].status is StepStatus.DONE, proof
    left = sandbox.state("person-002")
    assert all(c["deleted"] for c in left["stripe"]["customers"])
    assert (left["twilio"]["messages"], left["twilio"]["calls"]) == (0, 0)
    assert left["memory"]["profile_present"] is False
    assert left["segment"]["profile_present"] is True
    assert left["segment"]["regulations"] == []
    # The 30-day report shows it and when it is due; the identifiers are still needed.
    report = period_summary(store)
    assert (report["deferred"], report["needs_attention"], report["failed"]) == (1, 0, 0)
    assert report["deferred_requests"][0]["request_id"] == "req-person-002"
    assert report["deferred_requests"][0]["not_before"] == waiting.not_before.isoformat()
    assert waiting.identifiers is not None
    assert sorted(pipeline.audit()) == ["req-no_segment"]

    # A run before the reset leaves it alone.
    if datetime.now(UTC) < waiting.not_before - timedelta(seconds=5):
        assert pipeline.run().state == "success"
        assert store.get("req-person-002").status is RequestStatus.DEFERRED
        assert store.get("req-person-002").attempts == 1

    # After the reset the next run takes it and does only what is left: the regulation.
    time.sleep(max(0.0, (waiting.not_before - datetime.now(UTC)).total_seconds()) + 0.5)
    sandbox.clear_requests_log()

    second = pipeline.run()

    assert second.state == "success"
    done = store.get("req-person-002")
    assert done.status is RequestStatus.COMPLETED
    assert (done.failures, done.attempts, done.not_before) == (0, 2, None)
    assert done.identifiers is None
    regulations = sandbox.state("person-002")["segment"]["regulations"]
    assert len(regulations) == 1
    assert regulations[0]["overallStatus"] == "FINISHED"
    # Run 2's writes at the providers: that one regulation, nothing repeated.
    assert dict(pipeline.side_effects()) == {("POST", "/regulations"): 1}
    record = pipeline.audit()["req-person-002"]
    assert record["segment"]["regulation_id"] == regulations[0]["id"]
    assert record["segment"]["proof"]["status"] == "FINISHED"
    assert record["attempts"] == 2
    assert store.counts_by_status() == {"completed": 2}
    assert store.verify_audit_chain().ok
