"""StripeHook against the sandbox, through the real stripe-python SDK."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time

import pytest
import requests
from support.stripe_hook import FAST, OTHER_ACCOUNT_KEY

from gdpr_erasure.hooks import stripe as stripe_hook
from gdpr_erasure.hooks.errors import PermanentApiError, TransientApiError
from gdpr_erasure.hooks.retry import RetryPolicy
from gdpr_erasure.hooks.stripe import (
    StripeAccountError,
    StripeConfigurationError,
    StripeHook,
    idempotency_key,
)
from gdpr_erasure.proofs.stripe import StripeCustomerDeletedCheck
from sandbox.ids import STRIPE_ACCOUNT_ID, STRIPE_OTHER_ACCOUNT_ID

SUPPORT = "Please see https://stripe.com/docs or we can help at https://support.stripe.com/."


pytestmark = pytest.mark.usefixtures("fresh_stripe_process")


@pytest.fixture
def hook(stripe_hook_fast):
    return stripe_hook_fast


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
        customer_id, {"gdpr_status": "erased", "deletion_ts": "1767225600"}, idempotency_key=key
    )
    assert updated["metadata"]["gdpr_status"] == "erased"
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


# --- what counts as gone ------------------------------------------------------------------------

ANSWER_FORMS = ("stub", "not_found", "bare_404")  # the sandbox's stripe:deleted_customer_answer


def _a_customer(sandbox) -> str:
    """A customer of a generated person (not every generated person has one)."""
    return next(p["stripe_customer_ids"][0] for p in sandbox.people() if p["stripe_customer_ids"])


def _deleted_customer(hook, sandbox, form: str) -> str:
    """A customer, tagged and deleted, with the sandbox answering deleted customers in ``form``."""
    customer_id = _a_customer(sandbox)
    tag = idempotency_key("req-gone", "tag", customer_id)
    assert hook.update_customer_metadata(customer_id, {"gdpr_status": "erased"}, idempotency_key=tag)
    assert hook.delete_customer(customer_id) == "deleted"
    sandbox.set_faults({"stripe": {"deleted_customer_answer": form}})
    return customer_id


@pytest.mark.parametrize("form", ANSWER_FORMS)
def test_a_deleted_customer_reads_as_gone_in_every_form(hook, sandbox, form):
    customer_id = _deleted_customer(hook, sandbox, form)
    answer = hook.retrieve_customer(customer_id)
    if form == "stub":
        assert answer == {"id": customer_id, "object": "customer", "deleted": True}
        assert hook.customer_presence(customer_id) == "deleted_stub"
    else:
        assert answer is None
        assert hook.customer_presence(customer_id) == "not_found"
    bodies = [r for r in sandbox.requests_log() if r["method"] == "GET" and r["status"] == 404]
    assert bodies or form == "stub"


@pytest.mark.parametrize("form", ANSWER_FORMS)
def test_repeated_delete_and_tag_of_a_deleted_customer_are_idempotent(hook, sandbox, form):
    customer_id = _deleted_customer(hook, sandbox, form)
    assert hook.delete_customer(customer_id) == "already_absent"
    again = idempotency_key("req-gone-2", "tag", customer_id)
    assert (
        hook.update_customer_metadata(customer_id, {"gdpr_status": "erased"}, idempotency_key=again) is None
    )
    statuses = {
        (r["method"], r["status"]) for r in sandbox.requests_log() if r["route"] == "/v1/customers/{customer}"
    }
    assert {("DELETE", 404), ("POST", 404)} <= statuses  # Stripe said 404: we read it, not failed


@pytest.mark.parametrize("form", ANSWER_FORMS)
def test_the_proof_names_the_answer_that_proved_it(api_connections, sandbox, form):
    hook = StripeHook(retry_policy=FAST)
    customer_id = _deleted_customer(hook, sandbox, form)
    state, evidence = StripeCustomerDeletedCheck([customer_id], tag=str).check()
    assert state == "done"
    proof = evidence["customers"][customer_id]
    assert proof["state"] == "deleted"
    assert proof["evidence"] == ("deleted_stub" if form == "stub" else "not_found")


def test_a_live_customer_is_not_proof(api_connections, sandbox):
    customer_id = _a_customer(sandbox)
    state, evidence = StripeCustomerDeletedCheck([customer_id], tag=str).check()
    assert state == "waiting" and "customers" not in evidence


def test_an_id_stripe_never_knew_is_not_found_with_the_code(hook, sandbox):
    assert hook.customer_presence("cus_neverexisted00") == "not_found"
    answer = [r for r in sandbox.requests_log() if r["route"] == "/v1/customers/{customer}"]
    assert [r["status"] for r in answer] == [404]


def _stripe_conn(
    monkeypatch,
    base: str,
    key: str = "sk_test_local_key",
    account_id: str | None = STRIPE_ACCOUNT_ID,
    **extra,
) -> None:
    extra = {"api_base": base, **extra}
    if account_id is not None:
        extra["account_id"] = account_id
    conn = {"conn_type": "stripe", "password": key, "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_STRIPE_DEFAULT", json.dumps(conn))


def test_stripes_unrecognized_url_404_is_a_configuration_error(api_connections, sandbox, monkeypatch):
    """A wrong api_base gets Stripe's 404 invalid_request_error without a code, the very shape of
    a bare "no such customer": the message tells them apart, and nothing reads as gone."""
    customer_id = _a_customer(sandbox)
    _stripe_conn(monkeypatch, f"{sandbox.base_url}/stripe/v9")
    hook = StripeHook(retry_policy=FAST)
    calls = {
        "retrieve": lambda: hook.retrieve_customer(customer_id),
        "presence": lambda: hook.customer_presence(customer_id),
        "tag": lambda: hook.update_customer_metadata(customer_id, {"a": "b"}, idempotency_key="k-url"),
        "delete": lambda: hook.delete_customer(customer_id),
    }
    for name, call in calls.items():
        with pytest.raises(StripeConfigurationError) as info:
            call()
        assert info.value.status == 404, name
        assert "api_base" in str(info.value), name
    log = [r for r in sandbox.requests_log() if r["api"] == "stripe"]
    assert {r["route"] for r in log} == {"<unmatched>"} and len(log) == len(calls)  # no retries
    _stripe_conn(monkeypatch, f"{sandbox.base_url}/stripe")
    assert StripeHook(retry_policy=FAST).customer_presence(customer_id) == "present"


def test_an_unrecognized_url_on_the_customers_path_is_a_configuration_error(monkeypatch):
    """The same 404 on the customer's own path, from a server whose account lookup works (with a
    wrong api_base the sandbox already refuses the account lookup, above)."""
    unrecognized = _error(f"Unrecognized request URL (GET: /v1/customers/cus_anybody00006). {SUPPORT}")
    with _fake_stripe({"*": (404, unrecognized)}) as url:
        _stripe_conn(monkeypatch, url)
        hook = StripeHook(retry_policy=FAST)
        for call in (
            lambda: hook.customer_presence("cus_anybody00006"),
            lambda: hook.delete_customer("cus_anybody00006"),
            lambda: hook.update_customer_metadata("cus_anybody00006", {"a": "b"}, idempotency_key="k-u"),
        ):
            with pytest.raises(StripeConfigurationError, match="api_base"):
                call()


def test_a_404_that_is_not_stripes_error_shape_is_not_gone(api_connections, sandbox, monkeypatch):
    _stripe_conn(monkeypatch, f"{sandbox.base_url}/segment/api")  # answers 404 {"errors": [...]}
    with pytest.raises(PermanentApiError) as info:
        StripeHook(retry_policy=FAST).retrieve_customer("cus_somebody0001")
    assert info.value.status == 404


@pytest.mark.parametrize("status", [401, 403])
def test_an_unauthorized_key_is_never_gone(api_connections, sandbox, monkeypatch, status):
    customer_id = _a_customer(sandbox)
    if status == 401:
        _stripe_conn(monkeypatch, f"{sandbox.base_url}/stripe", key="sk_live_not_allowed_here")
        hook = StripeHook(retry_policy=FAST)
        operations = [
            lambda: hook.customer_presence(customer_id),
            lambda: hook.delete_customer(customer_id),
            lambda: hook.update_customer_metadata(customer_id, {"a": "b"}, idempotency_key="k-401"),
        ]
        for operation in operations:
            with pytest.raises(PermanentApiError) as info:
                operation()
            assert info.value.status == 401
    else:
        with _fake_stripe(
            {"*": (403, _error("The provided key does not have the required permissions"))}
        ) as url:
            _stripe_conn(monkeypatch, url, key="rk_test_restricted")
            with pytest.raises(PermanentApiError) as info:
                StripeHook(retry_policy=FAST).customer_presence(customer_id)
            assert info.value.status == 403


# A local stand-in for answers the sandbox does not give (another server behind api_base).


def _error(message: str, **fields) -> dict:
    return {"error": {"message": message, "type": "invalid_request_error", **fields}}


#: What the local stand-in answers to ``GET /v1/account`` unless a test says otherwise: the key
#: belongs to the account the connections of these tests expect.
ACCOUNT_ANSWER = (200, {"id": STRIPE_ACCOUNT_ID, "object": "account"})


@contextlib.contextmanager
def _fake_stripe(answers: dict[str, tuple[int, dict]]):
    """A server answering ``"METHOD /path"`` (or ``"*"``) with a fixed status and JSON body;
    ``GET /v1/account`` answers :data:`ACCOUNT_ANSWER` unless ``answers`` names it."""
    answers = {"GET /v1/account": ACCOUNT_ANSWER, **answers}

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self):
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            path = self.path.split("?", 1)[0]
            status, body = answers.get(f"{self.command} {path}", answers.get("*", (500, {})))
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = _answer

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_that_answers_every_url_with_a_bare_404_proves_nothing(monkeypatch):
    """A bare 404 (no code) is trusted only when the same server lists customers."""
    with _fake_stripe({"*": (404, _error("Not Found"))}) as url:
        _stripe_conn(monkeypatch, url)
        hook = StripeHook(retry_policy=FAST)
        with pytest.raises(StripeConfigurationError, match="api_base"):
            hook.customer_presence("cus_anybody00001")
        with pytest.raises(StripeConfigurationError):
            hook.delete_customer("cus_anybody00001")


def test_a_bare_404_from_a_server_that_lists_customers_is_not_found(monkeypatch):
    answers = {
        "GET /v1/customers": (200, {"object": "list", "data": [], "has_more": False, "url": "/v1/customers"}),
        "*": (404, _error("No such customer: 'cus_anybody00002'")),
    }
    with _fake_stripe(answers) as url:
        _stripe_conn(monkeypatch, url)
        hook = StripeHook(retry_policy=FAST)
        assert hook.customer_presence("cus_anybody00002") == "not_found"
        assert hook.delete_customer("cus_anybody00002") == "already_absent"


def test_a_customer_of_the_other_mode_is_a_configuration_error_not_gone(monkeypatch):
    message = (
        "No such customer: 'cus_livemode0001'; a similar object exists in live mode, but a test "
        "mode key was used to make this request."
    )
    answers = {"*": (404, _error(message, code="resource_missing", param="id"))}
    with _fake_stripe(answers) as url:
        _stripe_conn(monkeypatch, url)
        with pytest.raises(StripeConfigurationError, match="other mode"):
            StripeHook(retry_policy=FAST).customer_presence("cus_livemode0001")


def test_a_404_with_another_code_is_not_gone(monkeypatch):
    answers = {"*": (404, _error("No such test clock", code="resource_missing", param="test_clock"))}
    with _fake_stripe(answers) as url:
        _stripe_conn(monkeypatch, url)
        with pytest.raises(PermanentApiError):
            StripeHook(retry_policy=FAST).customer_presence("cus_anybody00003")


def test_a_200_without_deleted_true_is_not_a_deletion(monkeypatch):
    answers = {
        "DELETE /v1/customers/cus_anybody00004": (200, {"id": "cus_anybody00004", "object": "customer"}),
        "GET /v1/customers/cus_anybody00004": (
            200,
            {"id": "cus_anybody00004", "object": "customer", "deleted": "true"},
        ),
        "GET /v1/customers/cus_anybody00005": (
            200,
            {"id": "cus_someoneelse1", "object": "customer", "deleted": True},
        ),
    }
    with _fake_stripe(answers) as url:
        _stripe_conn(monkeypatch, url)
        hook = StripeHook(retry_policy=FAST)
        with pytest.raises(PermanentApiError, match="deleted: true"):
            hook.delete_customer("cus_anybody00004")
        assert hook.customer_presence("cus_anybody00004") == "present"  # "true" is not true
        assert hook.customer_presence("cus_anybody00005") == "present"  # another id's stub
        state, _ = StripeCustomerDeletedCheck(["cus_anybody00004"], tag=str).check()
        assert state == "waiting"


# --- preflight checks -----------------------------------------------------------------------------


def test_checks_prove_the_key_reads_customers_and_name_the_mode(hook, sandbox):
    results = hook.checks()
    assert [(r.system, r.name, r.ok) for r in results] == [
        ("stripe", "secret key", True),
        ("stripe", "account", True),
        ("stripe", "call budget", True),
    ]
    assert "test mode" in results[0].detail and "livemode=false" in results[0].detail
    assert "sk_test_sandbox_key" not in results[0].detail
    ok, message = hook.test_connection()
    assert ok and message.startswith("ok: secret key: ")
    reads = [(r["method"], r["route"]) for r in sandbox.requests_log()]
    # One read each per run of the checks: a check asks Stripe again, it never trusts a cache.
    assert reads == [("GET", "/v1/customers"), ("GET", "/v1/account")] * 2


def test_a_wrong_key_fails_the_check_with_one_line_saying_what_to_do(api_connections, sandbox, monkeypatch):
    _stripe_conn(monkeypatch, f"{sandbox.base_url}/stripe", key="sk_live_wrong_secret_1234")
    ok, message = StripeHook(retry_policy=FAST).test_connection()
    assert not ok
    assert "stripe_default" in message and "401" in message and "password" in message
    assert "\n" not in message
    assert "wrong_secret" not in message and "1234" not in message


def test_a_publishable_key_fails_the_check_without_calling_stripe(api_connections, sandbox, monkeypatch):
    _stripe_conn(monkeypatch, f"{sandbox.base_url}/stripe", key="pk_test_publishable_123")
    *results, budget = StripeHook(retry_policy=FAST).checks()
    assert [r.name for r in results] == ["secret key", "account"]
    assert budget.name == "call budget" and budget.ok  # the budget is the connection's, whatever the key
    for result in results:
        assert (
            not result.ok
            and "publishable" in result.detail
            and "pk_test_publishable_123" not in result.detail
        )
    assert sandbox.requests_log() == []


def test_a_wrong_api_base_fails_the_check(api_connections, sandbox, monkeypatch):
    _stripe_conn(monkeypatch, f"{sandbox.base_url}/stripe/v9")
    *results, _ = StripeHook(retry_policy=FAST).checks()
    assert [(r.name, r.ok) for r in results] == [("secret key", False), ("account", False)]
    assert all("api_base" in r.detail for r in results)


def test_a_redaction_job_connection_also_checks_the_redaction_jobs_endpoint(
    api_connections, sandbox, monkeypatch
):
    _stripe_conn(monkeypatch, f"{sandbox.base_url}/stripe", redaction_method="redaction_job")
    results = StripeHook(retry_policy=FAST).checks()
    assert [(r.name, r.ok) for r in results] == [
        ("secret key", True),
        ("account", True),
        ("redaction jobs", True),
        ("call budget", True),
    ]
    reads = [(r["method"], r["route"]) for r in sandbox.requests_log()]
    assert reads == [("GET", "/v1/customers"), ("GET", "/v1/account"), ("GET", "/v1/privacy/redaction_jobs")]


def test_a_redaction_job_connection_without_the_preview_fails_its_check(monkeypatch):
    answers = {
        "GET /v1/customers": (200, {"object": "list", "data": [], "has_more": False, "url": "/v1/customers"}),
        "*": (404, _error("Unrecognized request URL (GET: /v1/privacy/redaction_jobs).")),
    }
    with _fake_stripe(answers) as url:
        _stripe_conn(monkeypatch, url, redaction_method="redaction_job")
        ok, message = StripeHook(retry_policy=FAST).test_connection()
    assert not ok
    assert message.startswith("ok: secret key: ") and "; ok: account: " in message
    assert "FAILED: redaction jobs: " in message


def test_an_unknown_redaction_method_fails_the_check(api_connections, sandbox, monkeypatch):
    _stripe_conn(monkeypatch, f"{sandbox.base_url}/stripe", redaction_method="shred")
    results = StripeHook(retry_policy=FAST).checks()
    assert [(r.name, r.ok) for r in results] == [
        ("secret key", True),
        ("account", True),
        ("redaction method", False),
        ("call budget", True),
    ]


# --- which account: the key must belong to the connection's account_id ---------------------------


def _account_result(results):
    [account] = [r for r in results if r.name == "account"]
    return account


def test_the_account_check_passes_on_the_connections_account(hook, sandbox):
    account = _account_result(hook.checks())
    assert account.ok and account.system == "stripe"
    assert account.detail == f"the key belongs to {STRIPE_ACCOUNT_ID}, the connection's account_id"


def test_a_key_of_another_account_fails_the_check_with_one_line(api_connections, sandbox, monkeypatch):
    """Another project's key is valid and reads customers: only its account tells it apart."""
    _stripe_conn(monkeypatch, f"{sandbox.base_url}/stripe", key=OTHER_ACCOUNT_KEY)
    results = StripeHook(retry_policy=FAST).checks()
    assert [(r.name, r.ok) for r in results] == [
        ("secret key", True),
        ("account", False),
        ("call budget", True),
    ]
    assert _account_result(results).detail == (
        f"connection stripe_default: the key belongs to {STRIPE_OTHER_ACCOUNT_ID}, the connection expects "
        f"{STRIPE_ACCOUNT_ID}: wrong key"
    )
    ok, message = StripeHook(retry_policy=FAST).test_connection()
    assert not ok and "FAILED: account: " in message and "wrong key" in message
    assert "\n" not in message and OTHER_ACCOUNT_KEY not in message


@pytest.mark.parametrize("unset", [None, "", "  "])
def test_an_unset_account_id_fails_naming_the_keys_account(api_connections, sandbox, monkeypatch, unset):
    """Account ids are neither secrets nor personal data: the line names the key's account."""
    if unset is None:
        _stripe_conn(monkeypatch, f"{sandbox.base_url}/stripe", account_id=None)
    else:
        _stripe_conn(monkeypatch, f"{sandbox.base_url}/stripe", account_id=unset)
    account = _account_result(StripeHook(retry_policy=FAST).checks())
    assert not account.ok
    assert account.detail == (
        "connection stripe_default: set the connection's account_id to the acct_ id of the account your "
        f"customers are in; this key's account is {STRIPE_ACCOUNT_ID}"
    )


def test_a_rejected_key_fails_the_account_check_naming_the_password(api_connections, sandbox, monkeypatch):
    _stripe_conn(monkeypatch, f"{sandbox.base_url}/stripe", key="sk_live_wrong_secret_1234")
    account = _account_result(StripeHook(retry_policy=FAST).checks())
    assert not account.ok
    assert account.detail == (
        "connection stripe_default: Stripe rejected the secret key (HTTP 401): put a valid sk_/rk_ key of "
        f"{STRIPE_ACCOUNT_ID} in the connection's password"
    )
    assert "wrong_secret" not in account.detail and "1234" not in account.detail


def test_a_restricted_key_that_may_not_read_its_account_is_told_the_permission(monkeypatch):
    """Stripe's 403 names the key (masked) and the account; the line keeps only the permission."""
    refusal = _error(
        "The provided key 'rk_test_*********************************4Ab9' does not have the required "
        f"permissions for this endpoint on account '{STRIPE_ACCOUNT_ID}'. Having the "
        "'rak_accounts_kyc_basic_read' permission would allow this request to continue."
    )
    answers = {
        "GET /v1/account": (403, refusal),
        "GET /v1/customers": (200, {"object": "list", "data": [], "has_more": False, "url": "/v1/customers"}),
    }
    with _fake_stripe(answers) as url:
        _stripe_conn(monkeypatch, url, key="rk_test_restricted_4Ab9")
        results = StripeHook(retry_policy=FAST).checks()
    assert [(r.name, r.ok) for r in results] == [
        ("secret key", True),
        ("account", False),
        ("call budget", True),
    ]
    detail = _account_result(results).detail
    assert detail == (
        "connection stripe_default: the key may not read its account (HTTP 403): give the restricted key "
        "read access to the account (GET /v1/account: connected_account_read); Stripe's answer names "
        "rak_accounts_kyc_basic_read"
    )
    assert "4Ab9" not in detail


def test_an_answer_that_is_not_an_account_fails_the_check(monkeypatch):
    with _fake_stripe({"GET /v1/account": (200, {"object": "list", "data": []})}) as url:
        _stripe_conn(monkeypatch, url)
        account = _account_result(StripeHook(retry_policy=FAST).checks())
    assert not account.ok and "did not answer an account" in account.detail and "api_base" in account.detail


def test_another_accounts_nobody_is_never_read_as_absent(api_connections, sandbox, monkeypatch):
    """The guard at the point of use: without any preflight in this process, a key of another
    account gets no answer about customers read, let alone an empty list or a 404 as "absent"."""
    person = sandbox.person("multi_stripe")
    customer_id = person["stripe_customer_ids"][0]
    _stripe_conn(monkeypatch, f"{sandbox.base_url}/stripe", key=OTHER_ACCOUNT_KEY)
    hook = StripeHook(retry_policy=FAST)
    calls = {
        "list by email": lambda: hook.list_customers_by_email(person["email"]),
        "retrieve": lambda: hook.retrieve_customer(customer_id),
        "presence": lambda: hook.customer_presence(customer_id),
        "tag": lambda: hook.update_customer_metadata(customer_id, {"a": "b"}, idempotency_key="k-acct"),
        "delete": lambda: hook.delete_customer(customer_id),
        "redaction job": lambda: hook.create_redaction_job([customer_id], idempotency_key="k-acct-job"),
        "proof": lambda: StripeCustomerDeletedCheck([customer_id], tag=str).check(),
    }
    for name, call in calls.items():
        with pytest.raises(StripeAccountError) as info:
            call()
        message = str(info.value)
        assert "wrong key" in message and STRIPE_OTHER_ACCOUNT_ID in message, name
        assert "\n" not in message and customer_id not in message and person["email"] not in message
    # Stripe was asked whose key it is, and nothing about the person.
    assert {r["route"] for r in sandbox.requests_log()} == {"/v1/account"}
    assert sandbox.state("multi_stripe")["stripe"]["customers"][0]["deleted"] is False


def test_an_unset_account_id_is_refused_at_the_point_of_use_too(api_connections, sandbox, monkeypatch):
    _stripe_conn(monkeypatch, f"{sandbox.base_url}/stripe", account_id=None)
    with pytest.raises(StripeAccountError, match="set the connection's account_id"):
        StripeHook(retry_policy=FAST).list_customers_by_email("nobody@example.com")
    assert [r["route"] for r in sandbox.requests_log()] == ["/v1/account"]


def test_the_proven_account_is_remembered_in_the_process(hook, sandbox, monkeypatch):
    """One GET /v1/account per process and connection (a passed check counts), then trusted like
    the connection; another key, or another account_id, is proven again."""
    customer_id = _a_customer(sandbox)
    assert all(r.ok for r in hook.checks())
    for _ in range(3):
        assert StripeHook(retry_policy=FAST).customer_presence(customer_id) == "present"
    routes = [r["route"] for r in sandbox.requests_log()]
    assert routes.count("/v1/account") == 1 and routes.count("/v1/customers/{customer}") == 3

    sandbox.clear_requests_log()
    _stripe_conn(monkeypatch, f"{sandbox.base_url}/stripe", key=OTHER_ACCOUNT_KEY)
    with pytest.raises(StripeAccountError):
        StripeHook(retry_policy=FAST).customer_presence(customer_id)
    _stripe_conn(
        monkeypatch, f"{sandbox.base_url}/stripe", key=OTHER_ACCOUNT_KEY, account_id=STRIPE_OTHER_ACCOUNT_ID
    )
    assert StripeHook(retry_policy=FAST).customer_presence(customer_id) == "not_found"  # its own account
    assert [r["route"] for r in sandbox.requests_log()] == [
        "/v1/account",
        "/v1/account",
        "/v1/customers/{customer}",
    ]


def test_a_proof_expires_with_the_connection_cache(hook, sandbox, monkeypatch):
    customer_id = _a_customer(sandbox)
    hook.customer_presence(customer_id)
    monkeypatch.setattr(stripe_hook, "ACCOUNT_TRUST_SECONDS", 0.0)
    hook.customer_presence(customer_id)
    routes = [r["route"] for r in sandbox.requests_log()]
    assert routes == ["/v1/account", "/v1/customers/{customer}"] * 2


def test_the_sandbox_answer_knob_is_validated_and_cleared_by_reset(sandbox):
    url = f"{sandbox.base_url}/_sandbox/faults"
    assert (
        requests.put(url, json={"stripe": {"deleted_customer_answer": "maybe"}}, timeout=10).status_code
        == 400
    )
    assert (
        requests.put(url, json={"twilio": {"deleted_customer_answer": "bare_404"}}, timeout=10).status_code
        == 400
    )
    assert (
        sandbox.set_faults({"stripe": {"deleted_customer_answer": "bare_404"}})["stripe"][
            "deleted_customer_answer"
        ]
        == "bare_404"
    )
    sandbox.reset()
    assert requests.get(url, timeout=10).json()["stripe"]["deleted_customer_answer"] == "stub"


def test_the_redaction_job_list_filters_by_status_and_refuses_an_unknown_one(hook, sandbox):
    customer_id = _a_customer(sandbox)
    job = hook.create_redaction_job([customer_id], idempotency_key=idempotency_key("req-list", "job"))
    assert [j["id"] for j in hook.list_redaction_jobs(limit=1)["data"]] == [job["id"]]
    with pytest.raises(PermanentApiError) as info:
        hook._raw("get", "/v1/privacy/redaction_jobs", "list redaction jobs", {"status": "done"})
    assert info.value.status == 400
