"""StripeHook against the sandbox, through the real stripe-python SDK."""

from __future__ import annotations

import time

import pytest

from gdpr_erasure.hooks.errors import PermanentApiError, TransientApiError
from gdpr_erasure.hooks.retry import RetryPolicy
from gdpr_erasure.hooks.stripe import StripeHook, idempotency_key

FAST = RetryPolicy(max_attempts=8, base_delay=0.01, max_delay=0.05)


@pytest.fixture
def hook(api_connections):
    return StripeHook(retry_policy=FAST)


def test_retrieve_and_list_by_email(hook, sandbox):
    person = sandbox.person("person-002")
    customer_id = person["stripe_customer_ids"][0]
    assert hook.retrieve_customer(customer_id)["id"] == customer_id
    assert [c["id"] for c in hook.list_customers_by_email(person["email"])] == [customer_id]


def test_list_by_email_is_exact_and_case_sensitive_like_stripe(hook, sandbox):
    person = sandbox.person("person-002")
    assert hook.list_customers_by_email(person["email"].upper()) == []


def test_list_pages_through_every_customer_of_an_email(hook, sandbox):
    person = sandbox.person("multi_stripe")
    found = hook.list_customers_by_email(person["email"], page_size=1)
    assert sorted(c["id"] for c in found) == sorted(person["stripe_customer_ids"])
    assert len(person["stripe_customer_ids"]) >= 2


def test_unknown_customer_is_none_not_an_error(hook):
    assert hook.retrieve_customer("cus_doesnotexist00") is None


def test_tag_then_delete_then_only_the_stub_remains(hook, sandbox):
    customer_id = sandbox.person("person-003")["stripe_customer_ids"][0]
    key = idempotency_key("req-1", "tag", customer_id)
    updated = hook.update_customer_metadata(
        customer_id, {"gdpr_status": "redacted", "deletion_ts": "1767225600"}, idempotency_key=key
    )
    assert updated["metadata"]["gdpr_status"] == "redacted"
    assert hook.delete_customer(customer_id) == "deleted"
    stub = hook.retrieve_customer(customer_id)
    assert stub == {"id": customer_id, "object": "customer", "deleted": True}  # no metadata after deletion
    assert hook.delete_customer(customer_id) == "already_absent"
    assert hook.update_customer_metadata(customer_id, {"gdpr_status": "x"}, idempotency_key=key + "b") is None


def test_same_idempotency_key_replays_instead_of_acting_twice(hook, sandbox):
    customer_id = sandbox.person("person-004")["stripe_customer_ids"][0]
    key = idempotency_key("req-2", "tag", customer_id)
    first = hook.update_customer_metadata(customer_id, {"deletion_ts": "1"}, idempotency_key=key)
    again = hook.update_customer_metadata(customer_id, {"deletion_ts": "1"}, idempotency_key=key)
    assert first == again
    log = [r for r in sandbox.requests_log() if r.get("idempotency_key") == key]
    assert len(log) == 2
    with pytest.raises(PermanentApiError) as info:
        hook.update_customer_metadata(customer_id, {"deletion_ts": "2"}, idempotency_key=key)
    assert info.value.status == 400


def test_idempotency_keys_are_deterministic_and_distinct():
    assert idempotency_key("r1", "tag", "cus_1") == idempotency_key("r1", "tag", "cus_1")
    assert idempotency_key("r1", "tag", "cus_1") != idempotency_key("r1", "tag", "cus_2")
    assert idempotency_key("r1", "tag", "cus_1") != idempotency_key("r2", "tag", "cus_1")
    assert len(idempotency_key("r" * 64, "step", "cus_" + "x" * 200)) < 255


def test_redaction_job_runs_to_succeeded_and_redacts(hook, sandbox):
    person = sandbox.person("person-005")
    customer_id = person["stripe_customer_ids"][0]
    job = hook.create_redaction_job([customer_id], idempotency_key=idempotency_key("req-3", "job"))
    assert job["status"] in ("created", "validating", "ready")
    job = _wait_for(hook, job["id"], {"ready"})
    job = hook.run_redaction_job(job["id"], idempotency_key=idempotency_key("req-3", "run"))
    job = _wait_for(hook, job["id"], {"succeeded"})
    customer = hook.retrieve_customer(customer_id)
    assert customer["email"] != person["email"]


def _wait_for(hook, job_id, statuses, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        job = hook.retrieve_redaction_job(job_id)
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, f"job stuck in {job['status']}"
        time.sleep(0.2)


def test_rate_limits_are_retried_honouring_retry_after(hook, sandbox):
    sandbox.set_faults({"stripe": {"rate_429": 0.6, "retry_after": 0}})
    customer_id = sandbox.person("person-006")["stripe_customer_ids"][0]
    for _ in range(5):
        assert hook.retrieve_customer(customer_id)["id"] == customer_id
    statuses = [r["status"] for r in sandbox.requests_log() if r["api"] == "stripe"]
    assert 429 in statuses and 200 in statuses


def test_persistent_rate_limit_surfaces_as_transient_with_retry_after(api_connections, sandbox):
    sandbox.set_faults({"stripe": {"rate_429": 1.0, "retry_after": 2}})
    hook = StripeHook(retry_policy=RetryPolicy(max_attempts=1))
    customer_id = sandbox.person("person-006")["stripe_customer_ids"][0]
    with pytest.raises(TransientApiError) as info:
        hook.update_customer_metadata(customer_id, {"a": "b"}, idempotency_key="k-429")
    assert (info.value.status, info.value.retry_after) == (429, 2.0)
    sandbox.set_faults({})
    assert "a" not in (hook.retrieve_customer(customer_id).get("metadata") or {})  # a 429 changed nothing


def test_server_errors_are_retried(hook, sandbox):
    sandbox.set_faults({"stripe": {"rate_5xx": 0.5}})
    customer_id = sandbox.person("person-007")["stripe_customer_ids"][0]
    for _ in range(4):
        assert hook.retrieve_customer(customer_id)["id"] == customer_id


def test_bad_key_is_a_permanent_error(api_connections, sandbox, monkeypatch):
    import json

    conn = dict(api_connections["stripe_default"], password="sk_live_not_allowed")
    monkeypatch.setenv("AIRFLOW_CONN_STRIPE_DEFAULT", json.dumps(conn))
    with pytest.raises(PermanentApiError) as info:
        StripeHook(retry_policy=FAST).retrieve_customer("cus_x00000")
    assert info.value.status == 401


def test_errors_and_logs_do_not_carry_the_email(hook, sandbox, caplog):
    person = sandbox.person("person-008")
    sandbox.set_faults({"stripe": {"rate_429": 1.0, "retry_after": 0}})
    hook.retry_policy = RetryPolicy(max_attempts=2, base_delay=0.01)
    with caplog.at_level("DEBUG"), pytest.raises(TransientApiError) as info:
        hook.list_customers_by_email(person["email"])
    assert person["email"] not in str(info.value)
    assert person["email"] not in caplog.text
    assert person["email"].split("@")[0] not in caplog.text
