"""StripeHook's live-state reads and the subscription cancel, against the sandbox through
stripe-python: what must not be erased blindly, and every way a wrong answer is refused."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading

import pytest
from support.stripe_hook import FAST, OTHER_ACCOUNT_KEY

from gdpr_erasure.hooks import stripe as stripe_hook
from gdpr_erasure.hooks.errors import PermanentApiError
from gdpr_erasure.hooks.stripe import (
    ACTIVE_SUBSCRIPTION,
    CUSTOMER_BALANCE,
    OPEN_DISPUTE,
    OPEN_INVOICE,
    StripeAccountError,
    StripeConfigurationError,
    StripeHook,
    live_state_cases,
)
from sandbox.ids import STRIPE_ACCOUNT_ID, STRIPE_OTHER_ACCOUNT_ID

pytestmark = pytest.mark.usefixtures("fresh_stripe_process")


@pytest.fixture
def hook(stripe_hook_fast):
    return stripe_hook_fast


def _customer(sandbox, key: str) -> str:
    return sandbox.person(key)["stripe_customer_ids"][0]


def _stripe_conn(monkeypatch, base: str, key: str = "sk_test_local_key", account_id: str = STRIPE_ACCOUNT_ID):
    conn = {"conn_type": "stripe", "password": key, "extra": {"api_base": base, "account_id": account_id}}
    monkeypatch.setenv("AIRFLOW_CONN_STRIPE_DEFAULT", json.dumps(conn))


def _routes(sandbox) -> list[tuple[str, str, int]]:
    return [(r["method"], r["route"], r["status"]) for r in sandbox.requests_log() if r["api"] == "stripe"]


# --- the policy cases of each seeded person -------------------------------------------------------


def test_each_seeded_person_shows_exactly_its_own_case(hook, sandbox):
    expected = {
        "active_subscription": (ACTIVE_SUBSCRIPTION,),
        "open_dispute": (OPEN_DISPUTE,),
        "unpaid_invoice": (OPEN_INVOICE,),
        "customer_balance": (CUSTOMER_BALANCE,),
        "closed_states": (),  # canceled subscription, paid invoice, won dispute, zero balance
        "person-002": (),
        "multi_stripe": (),
    }
    for key, cases in expected.items():
        state = hook.live_state(_customer(sandbox, key))
        assert state["customer"] == "present", key
        assert live_state_cases(state) == cases, key
    assert hook.live_state(_customer(sandbox, "customer_balance"))[CUSTOMER_BALANCE] == -1500


def test_the_live_state_names_the_objects_it_found(hook, sandbox):
    subs = sandbox.state("active_subscription")["stripe"]["subscriptions"]
    assert hook.live_state(_customer(sandbox, "active_subscription"))[ACTIVE_SUBSCRIPTION] == [subs[0]["id"]]
    invoices = sandbox.state("unpaid_invoice")["stripe"]["invoices"]
    assert hook.live_state(_customer(sandbox, "unpaid_invoice"))[OPEN_INVOICE] == [invoices[0]["id"]]
    disputes = sandbox.state("open_dispute")["stripe"]["disputes"]
    assert hook.live_state(_customer(sandbox, "open_dispute"))[OPEN_DISPUTE] == [disputes[0]["id"]]


def test_the_live_state_is_read_only(hook, sandbox):
    for key in ("active_subscription", "open_dispute", "unpaid_invoice", "customer_balance", "closed_states"):
        hook.live_state(_customer(sandbox, key))
    assert {method for method, _, _ in _routes(sandbox)} == {"GET"}
    assert all(sandbox.state(key)["stripe"]["writes"] == 0 for key in ("active_subscription", "open_dispute"))


def test_reads_use_the_spec_routes_and_the_largest_page(hook, sandbox):
    hook.live_state(_customer(sandbox, "open_dispute"))
    routes = [route for _, route, _ in _routes(sandbox)]
    assert routes == [
        "/v1/account",
        "/v1/customers/{customer}",
        "/v1/subscriptions",
        "/v1/invoices",  # every status in one listing, open and uncollectible kept
        "/v1/charges",
        "/v1/disputes",  # only for the charge marked disputed
    ]
    lists = [r for r in sandbox.requests_log() if r["route"] in routes[2:]]
    assert {r["page_size"] for r in lists} == {100}  # Stripe's largest limit


def test_open_invoices_are_one_listing_filtered_by_status(hook, sandbox):
    """One call instead of one per status, and the same answer: only open or uncollectible
    invoices, the customer's paid one left out."""
    customer = _customer(sandbox, "unpaid_invoice")
    seeded = {i["id"]: i["status"] for i in sandbox.state("unpaid_invoice")["stripe"]["invoices"]}
    hook.verify_account()
    sandbox.clear_requests_log()
    open_ids = [i["id"] for i in hook.list_invoices(customer)]
    assert open_ids == [i for i, status in seeded.items() if status in ("open", "uncollectible")] != []
    assert [route for _, route, _ in _routes(sandbox)] == ["/v1/invoices"]
    paid = _customer(sandbox, "active_subscription")  # its current period's invoice is paid
    assert [i["status"] for i in hook.list_invoices(paid, ["paid"])] == ["paid"]
    assert hook.list_invoices(paid) == []


def test_every_page_is_read(hook, sandbox, monkeypatch):
    monkeypatch.setattr(stripe_hook, "LIST_PAGE_MAX", 1)
    customer = _customer(sandbox, "multi_stripe")
    charges = {
        ch["id"] for ch in sandbox.state("multi_stripe")["stripe"]["charges"] if ch["customer"] == customer
    }
    assert len(charges) >= 2
    assert {ch["id"] for ch in hook.list_charges(customer)} == charges
    pages = [route for _, route, _ in _routes(sandbox) if route == "/v1/charges"]
    assert len(pages) == len(charges)  # the last page says has_more: false


def test_subscriptions_are_listed_whatever_their_status(hook, sandbox):
    closed = hook.list_subscriptions(_customer(sandbox, "closed_states"))
    assert [s["status"] for s in closed] == ["canceled"]  # Stripe's default list would leave it out


def test_invoices_by_status_and_an_unknown_status_is_refused_before_any_call(hook, sandbox):
    customer = _customer(sandbox, "closed_states")
    assert hook.list_invoices(customer) == []
    assert [i["status"] for i in hook.list_invoices(customer, ["paid"])] == ["paid"]
    sandbox.clear_requests_log()
    with pytest.raises(ValueError, match="not an invoice status"):
        hook.list_invoices(customer, ["unpaid"])
    assert _routes(sandbox) == []


def test_disputes_are_found_through_the_charges_marked_disputed(hook, sandbox):
    [open_dispute] = hook.list_disputes(_customer(sandbox, "open_dispute"))
    assert open_dispute["status"] == "needs_response"
    [won] = hook.list_disputes(_customer(sandbox, "closed_states"))
    assert won["status"] == "won"
    assert hook.list_disputes(_customer(sandbox, "person-002")) == []


# --- the cancel -----------------------------------------------------------------------------------


def test_cancel_then_a_retried_cancel_is_proven_by_retrieving_it(hook, sandbox):
    customer = _customer(sandbox, "active_subscription")
    [sub_id] = hook.live_state(customer)[ACTIVE_SUBSCRIPTION]
    canceled = hook.cancel_subscription(sub_id, customer_id=customer)
    assert canceled["status"] == "canceled" and canceled["id"] == sub_id
    sandbox.clear_requests_log()
    again = hook.cancel_subscription(sub_id, customer_id=customer)  # a retried task
    assert again["status"] == "canceled"
    assert [(m, s) for m, _, s in _routes(sandbox)] == [("DELETE", 404), ("GET", 200)]
    assert sandbox.state("active_subscription")["stripe"]["writes"] == 0  # the retry wrote nothing
    assert live_state_cases(hook.live_state(customer)) == ()


def test_a_cancel_is_refused_unless_the_subscription_is_the_customers(hook, sandbox):
    customer = _customer(sandbox, "closed_states")
    [sub] = hook.list_subscriptions(customer)  # already canceled: Stripe answers the DELETE 404
    with pytest.raises(PermanentApiError, match="not proof of cancellation"):
        hook.cancel_subscription(sub["id"], customer_id=_customer(sandbox, "active_subscription"))
    with pytest.raises(PermanentApiError) as info:
        hook.cancel_subscription("sub_unknown0000000", customer_id=customer)
    assert info.value.status == 404  # never "already canceled"


def test_an_unknown_customer_is_never_an_empty_list(hook, sandbox):
    for listing in (hook.list_subscriptions, hook.list_invoices, hook.list_charges, hook.list_disputes):
        with pytest.raises(PermanentApiError) as info:
            listing("cus_doesnotexist00")
        assert (info.value.status, info.value.code) == (400, "resource_missing")
        assert "cus_doesnotexist00" not in str(info.value)  # scrubbed
    sandbox.clear_requests_log()
    state = hook.live_state("cus_doesnotexist00")
    assert state["customer"] == "not_found" and live_state_cases(state) == ()
    assert [route for _, route, _ in _routes(sandbox)] == ["/v1/customers/{customer}"]  # nothing listed


def test_a_deleted_customer_has_no_live_state(hook, sandbox):
    customer = _customer(sandbox, "active_subscription")
    assert hook.delete_customer(customer) == "deleted"  # Stripe cancels its subscriptions with it
    state = hook.live_state(customer)
    assert state["customer"] == "deleted_stub" and live_state_cases(state) == ()
    assert [s["status"] for s in hook.list_subscriptions(customer)] == ["canceled"]


def test_rate_limits_and_server_errors_are_retried(hook, sandbox):
    sandbox.set_faults({"stripe": {"rate_429": 0.3, "rate_5xx": 0.2, "retry_after": 0}})
    for key, cases in (("active_subscription", (ACTIVE_SUBSCRIPTION,)), ("open_dispute", (OPEN_DISPUTE,))):
        assert live_state_cases(hook.live_state(_customer(sandbox, key))) == cases
    assert {s for _, _, s in _routes(sandbox)} > {200}


# --- a wrong account or a wrong server fails loud -------------------------------------------------


def test_a_key_of_another_account_reads_nothing(api_connections, sandbox, monkeypatch):
    customer = _customer(sandbox, "active_subscription")
    _stripe_conn(monkeypatch, f"{sandbox.base_url}/stripe", key=OTHER_ACCOUNT_KEY)
    hook = StripeHook(retry_policy=FAST)
    for name, call in {
        "live state": lambda: hook.live_state(customer),
        "subscriptions": lambda: hook.list_subscriptions(customer),
        "invoices": lambda: hook.list_invoices(customer),
        "disputes": lambda: hook.list_disputes(customer),
        "cancel": lambda: hook.cancel_subscription("sub_anything00000", customer_id=customer),
    }.items():
        with pytest.raises(StripeAccountError, match="wrong key") as info:
            call()
        assert STRIPE_OTHER_ACCOUNT_ID in str(info.value) and customer not in str(info.value), name
    assert {route for _, route, _ in _routes(sandbox)} == {"/v1/account"}
    assert sandbox.state("active_subscription")["stripe"]["subscriptions"][0]["status"] == "active"


def test_another_accounts_lists_are_errors_even_when_its_key_is_expected(
    api_connections, sandbox, monkeypatch
):
    """Proven to be the other account, whose customers these are not: a list about a customer it
    does not hold is Stripe's 400, never "no subscriptions"."""
    customer = _customer(sandbox, "active_subscription")
    _stripe_conn(
        monkeypatch, f"{sandbox.base_url}/stripe", key=OTHER_ACCOUNT_KEY, account_id=STRIPE_OTHER_ACCOUNT_ID
    )
    hook = StripeHook(retry_policy=FAST)
    assert hook.live_state(customer)["customer"] == "not_found"
    with pytest.raises(PermanentApiError) as info:
        hook.list_subscriptions(customer)
    assert info.value.status == 400


def test_a_wrong_api_base_fails_loud(api_connections, sandbox, monkeypatch):
    _stripe_conn(monkeypatch, f"{sandbox.base_url}/stripe/v9")
    with pytest.raises(PermanentApiError):
        StripeHook(retry_policy=FAST).live_state(_customer(sandbox, "active_subscription"))


@contextlib.contextmanager
def _server(answers: dict[str, dict]):
    """Another server behind api_base, answering ``"METHOD /path"`` with a fixed 200 JSON body (for
    answers the sandbox never gives: filters or paging ignored)."""
    answers = {"GET /v1/account": {"id": STRIPE_ACCOUNT_ID, "object": "account"}, **answers}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(answers.get(f"GET {self.path.split('?', 1)[0]}", {})).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


CUSTOMER = "cus_localcustomer1"
SUB = {"id": "sub_1", "object": "subscription", "customer": CUSTOMER, "status": "active"}


@pytest.mark.parametrize(
    ("answer", "complaint"),
    [
        # The customer filter dropped: another customer's subscription in the list.
        (
            {"object": "list", "data": [{**SUB, "customer": "cus_someoneelse0"}], "has_more": False},
            "is not the one",
        ),
        # Not a list at all.
        ({"object": "subscription", **SUB}, "did not answer a list"),
        # Paging ignored: the same page again and again.
        ({"object": "list", "data": [SUB], "has_more": True}, "did not move past starting_after"),
    ],
)
def test_a_list_the_server_did_not_filter_or_page_proves_nothing(monkeypatch, answer, complaint):
    with _server({"GET /v1/subscriptions": answer}) as url:
        _stripe_conn(monkeypatch, url)
        with pytest.raises(StripeConfigurationError, match=complaint) as info:
            StripeHook(retry_policy=FAST).list_subscriptions(CUSTOMER)
    assert "api_base" in str(info.value) and CUSTOMER not in str(info.value)


@pytest.mark.parametrize("status", [None, "pending_payment"])
def test_an_invoice_without_a_known_status_proves_nothing(monkeypatch, status):
    """Invoices are filtered by status here, not by Stripe: one without a status we know must
    fail loud, never drop out of the list as if nothing were owed."""
    invoice = {"id": "in_1", "object": "invoice", "customer": CUSTOMER, "status": status}
    with _server({"GET /v1/invoices": {"object": "list", "data": [invoice], "has_more": False}}) as url:
        _stripe_conn(monkeypatch, url)
        with pytest.raises(StripeConfigurationError, match="without a known status"):
            StripeHook(retry_policy=FAST).list_invoices(CUSTOMER)


def test_a_customer_answer_without_an_integer_balance_proves_nothing(monkeypatch):
    with _server(
        {f"GET /v1/customers/{CUSTOMER}": {"id": CUSTOMER, "object": "customer", "balance": "0"}}
    ) as url:
        _stripe_conn(monkeypatch, url)
        with pytest.raises(StripeConfigurationError, match="integer balance"):
            StripeHook(retry_policy=FAST).live_state(CUSTOMER)
