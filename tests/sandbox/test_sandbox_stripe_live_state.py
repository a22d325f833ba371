"""Stripe live state in the sandbox: subscriptions, invoices, charges with disputes, the customer
balance, the cancel endpoint and the per-customer count of writes."""

from __future__ import annotations

from typing import Any

import pytest
from sandbox_support import Api, wait_for

LIVE_KEYS = ("active_subscription", "open_dispute", "unpaid_invoice", "customer_balance", "closed_states")
OTHER_ACCOUNT_KEY = "sk_test_other_project_key"


def _customer(sandbox, key: str) -> str:
    return sandbox.person(key)["stripe_customer_ids"][0]


def _ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["data"]]


def _all_pages(api: Api, path: str, params: dict[str, Any], limit: int) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        page = api.stripe(
            "GET", path, params={**params, "limit": limit, **({"starting_after": cursor} if cursor else {})}
        )
        assert page.status_code == 200, page.text
        body = page.json()
        pages.append([item["id"] for item in body["data"]])
        if not body["has_more"]:
            return pages
        cursor = body["data"][-1]["id"]


def test_each_seeded_person_has_its_live_state_and_nobody_else_has_any(sandbox):
    states = {key: sandbox.state(key)["stripe"] for key in LIVE_KEYS}
    assert [s["status"] for s in states["active_subscription"]["subscriptions"]] == ["active"]
    assert [i["status"] for i in states["active_subscription"]["invoices"]] == ["paid"]
    assert [d["status"] for d in states["open_dispute"]["disputes"]] == ["needs_response"]
    assert any(ch["disputed"] for ch in states["open_dispute"]["charges"])
    assert [i["status"] for i in states["unpaid_invoice"]["invoices"]] == ["open"]
    assert [c["balance"] for c in states["customer_balance"]["customers"]] == [-1500]
    closed = states["closed_states"]
    assert [s["status"] for s in closed["subscriptions"]] == ["canceled"]
    assert [i["status"] for i in closed["invoices"]] == ["paid"]
    assert [d["status"] for d in closed["disputes"]] == ["won"]
    assert [c["balance"] for c in closed["customers"]] == [0]
    for person in sandbox.people():
        if person["key"] in LIVE_KEYS:
            continue
        stripe = sandbox.state(person["key"])["stripe"]
        assert stripe["subscriptions"] == stripe["invoices"] == stripe["disputes"] == [], person["key"]
        assert all(c["balance"] == 0 for c in stripe["customers"])
        assert not any(ch["disputed"] for ch in stripe["charges"])


def test_subscriptions_are_listed_by_customer_and_status(sandbox, api: Api):
    active, closed = _customer(sandbox, "active_subscription"), _customer(sandbox, "closed_states")
    [active_id] = _ids(api.stripe("GET", "/v1/subscriptions", params={"customer": active}))
    # Without a status Stripe lists what is not canceled; `all` and `ended` include the canceled one.
    assert _ids(api.stripe("GET", "/v1/subscriptions", params={"customer": closed})) == []
    [closed_id] = _ids(api.stripe("GET", "/v1/subscriptions", params={"customer": closed, "status": "all"}))
    for status, expected in (("canceled", [closed_id]), ("ended", [closed_id]), ("active", [])):
        assert (
            _ids(api.stripe("GET", "/v1/subscriptions", params={"customer": closed, "status": status}))
            == expected
        )
    assert _ids(api.stripe("GET", "/v1/subscriptions", params={"customer": active, "status": "all"})) == [
        active_id
    ]
    sub = api.stripe("GET", "/v1/subscriptions", params={"customer": active}).json()["data"][0]
    assert sub["customer"] == active and sub["status"] == "active" and sub["object"] == "subscription"
    price = sub["items"]["data"][0]["price"]["id"]
    assert _ids(api.stripe("GET", "/v1/subscriptions", params={"price": price, "status": "all"})) == [
        active_id
    ]
    bad = api.stripe("GET", "/v1/subscriptions", params={"customer": active, "status": "live"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "status"


def test_invoices_are_listed_by_customer_and_status(sandbox, api: Api):
    unpaid = _customer(sandbox, "unpaid_invoice")
    [open_id] = _ids(api.stripe("GET", "/v1/invoices", params={"customer": unpaid}))
    assert _ids(api.stripe("GET", "/v1/invoices", params={"customer": unpaid, "status": "open"})) == [open_id]
    assert (
        _ids(api.stripe("GET", "/v1/invoices", params={"customer": unpaid, "status": "uncollectible"})) == []
    )
    invoice = api.stripe("GET", "/v1/invoices", params={"customer": unpaid}).json()["data"][0]
    assert invoice["amount_remaining"] == invoice["amount_due"] > 0 and invoice["amount_paid"] == 0
    assert invoice["customer_email"] == sandbox.person("unpaid_invoice")["email"]  # the snapshot Stripe keeps
    active = _customer(sandbox, "active_subscription")
    [sub_id] = _ids(api.stripe("GET", "/v1/subscriptions", params={"customer": active}))
    paid = api.stripe("GET", "/v1/invoices", params={"subscription": sub_id}).json()["data"]
    assert [i["status"] for i in paid] == ["paid"]
    assert paid[0]["parent"]["subscription_details"]["subscription"] == sub_id
    bad = api.stripe("GET", "/v1/invoices", params={"status": "unpaid"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "status"


def test_disputes_are_found_through_the_customers_charges(sandbox, api: Api):
    """The spec has no customer filter on disputes: list the customer's charges, then the disputes
    of each charge marked ``disputed``."""
    customer = _customer(sandbox, "open_dispute")
    charges = api.stripe("GET", "/v1/charges", params={"customer": customer, "limit": 100}).json()["data"]
    assert charges and all(ch["customer"] == customer for ch in charges)
    disputed = [ch["id"] for ch in charges if ch["disputed"]]
    assert len(disputed) == 1
    disputes = api.stripe("GET", "/v1/disputes", params={"charge": disputed[0]}).json()["data"]
    assert [(d["charge"], d["status"]) for d in disputes] == [(disputed[0], "needs_response")]
    undisputed = next((ch["id"] for ch in charges if not ch["disputed"]), None)
    if undisputed:
        assert _ids(api.stripe("GET", "/v1/disputes", params={"charge": undisputed})) == []
    unknown = api.stripe("GET", "/v1/disputes", params={"charge": "ch_unknown000000"})
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "charge"
    everyone = _ids(api.stripe("GET", "/v1/disputes", params={"limit": 100}))
    assert len(everyone) == 2  # open_dispute's and closed_states' (won)


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/subscriptions", {"status": "all"}),
        ("/v1/invoices", {}),
        ("/v1/charges", {}),
        ("/v1/disputes", {}),
    ],
)
def test_lists_page_newest_first_with_starting_after_and_ending_before(sandbox, api: Api, path, params):
    everything = api.stripe("GET", path, params={**params, "limit": 100}).json()
    assert not everything["has_more"] and everything["url"] == path
    all_ids = [item["id"] for item in everything["data"]]
    created = [item["created"] for item in everything["data"]]
    assert len(all_ids) >= 2 and created == sorted(created, reverse=True)
    pages = _all_pages(api, path, params, limit=1)
    assert [i for page in pages for i in page] == all_ids
    before = api.stripe("GET", path, params={**params, "limit": 1, "ending_before": all_ids[1]}).json()
    assert [item["id"] for item in before["data"]] == all_ids[:1]
    unknown = api.stripe("GET", path, params={**params, "starting_after": "xx_unknown"})
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "starting_after"
    assert api.stripe("GET", path, params={"limit": 101}).status_code == 400


@pytest.mark.parametrize("path", ["/v1/subscriptions", "/v1/invoices", "/v1/charges", "/v1/disputes"])
def test_lists_refuse_unknown_parameters(sandbox, api: Api, path):
    # A mistyped filter must fail, never be dropped: without `customer` a list is every customer's.
    refused = api.stripe("GET", path, params={"customer ": _customer(sandbox, "active_subscription")})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "customer "
    assert api.stripe("GET", path, params={"email": "x@example.com"}).json()["error"]["param"] == "email"


@pytest.mark.parametrize("path", ["/v1/subscriptions", "/v1/invoices", "/v1/charges"])
def test_an_unknown_customer_is_an_error_never_an_empty_list(sandbox, api: Api, path):
    unknown = api.stripe("GET", path, params={"customer": "cus_doesnotexist00"})
    assert unknown.status_code == 400
    assert unknown.json()["error"] == {
        "code": "resource_missing",
        "doc_url": "https://stripe.com/docs/error-codes/resource-missing",
        "message": "No such customer: 'cus_doesnotexist00'",
        "param": "customer",
        "type": "invalid_request_error",
    }
    # Another account's key holds none of the sandbox's customers: the same answer, not "nothing".
    mine = _customer(sandbox, "active_subscription")
    other = api.stripe("GET", path, key=OTHER_ACCOUNT_KEY, params={"customer": mine})
    assert other.status_code == 400 and other.json()["error"]["param"] == "customer"
    assert api.stripe("GET", path, key=OTHER_ACCOUNT_KEY).json()["data"] == []


def test_cancel_answers_the_canceled_subscription_then_404_like_stripe(sandbox, api: Api):
    customer = _customer(sandbox, "active_subscription")
    [sub_id] = _ids(api.stripe("GET", "/v1/subscriptions", params={"customer": customer}))
    canceled = api.stripe(
        "DELETE", f"/v1/subscriptions/{sub_id}", params={"cancellation_details[comment]": "erasure request"}
    )
    assert canceled.status_code == 200
    body = canceled.json()
    assert body["status"] == "canceled" and body["canceled_at"] and body["ended_at"]
    assert body["cancellation_details"]["reason"] == "cancellation_requested"
    # A second cancel, even with the same Idempotency-Key (Stripe ignores keys on DELETE), is 404.
    again = api.stripe("DELETE", f"/v1/subscriptions/{sub_id}", headers={"Idempotency-Key": "cancel-1"})
    assert again.status_code == 404 and again.json()["error"]["code"] == "resource_missing"
    assert "Idempotent-Replayed" not in again.headers
    # Retrieve still answers it, canceled; listing by default no longer shows it.
    retrieved = api.stripe("GET", f"/v1/subscriptions/{sub_id}").json()
    assert retrieved["status"] == "canceled" and retrieved["customer"] == customer
    assert _ids(api.stripe("GET", "/v1/subscriptions", params={"customer": customer})) == []
    state = sandbox.state("active_subscription")["stripe"]
    assert [s["status"] for s in state["subscriptions"]] == ["canceled"]
    assert state["writes"] == 1  # the 404 changed nothing
    missing = api.stripe("DELETE", "/v1/subscriptions/sub_unknown0000000")
    assert missing.status_code == 404 and missing.json()["error"]["message"] == (
        "No such subscription: 'sub_unknown0000000'"
    )
    assert (
        api.stripe("DELETE", f"/v1/subscriptions/{sub_id}", params={"at_period_end": "true"}).status_code
        == 400
    )


def test_another_accounts_key_cannot_see_or_cancel_a_subscription(sandbox, api: Api):
    customer = _customer(sandbox, "active_subscription")
    [sub_id] = _ids(api.stripe("GET", "/v1/subscriptions", params={"customer": customer}))
    assert api.stripe("GET", f"/v1/subscriptions/{sub_id}", key=OTHER_ACCOUNT_KEY).status_code == 404
    assert api.stripe("DELETE", f"/v1/subscriptions/{sub_id}", key=OTHER_ACCOUNT_KEY).status_code == 404
    assert [s["status"] for s in sandbox.state("active_subscription")["stripe"]["subscriptions"]] == [
        "active"
    ]
    assert sandbox.state("active_subscription")["stripe"]["writes"] == 0


def test_deleting_a_customer_cancels_its_subscriptions_and_keeps_its_objects_listable(sandbox, api: Api):
    """Stripe: "Also immediately cancels any active subscriptions on the customer"."""
    customer = _customer(sandbox, "active_subscription")
    assert api.stripe("DELETE", f"/v1/customers/{customer}").json()["deleted"] is True
    subs = api.stripe("GET", "/v1/subscriptions", params={"customer": customer, "status": "all"}).json()[
        "data"
    ]
    assert [s["status"] for s in subs] == ["canceled"]
    assert len(_ids(api.stripe("GET", "/v1/invoices", params={"customer": customer}))) == 1


def test_writes_are_counted_per_customer_and_named_in_the_log(sandbox, api: Api):
    """Successful writes count; reads, refused writes, replays and faulted calls do not."""
    target, bystander = _customer(sandbox, "unpaid_invoice"), _customer(sandbox, "active_subscription")
    path = f"/v1/customers/{target}"
    api.stripe("GET", path)
    api.stripe("GET", "/v1/invoices", params={"customer": target})
    assert api.stripe("POST", path, data={"metadata[a]": "1"}, headers={"Idempotency-Key": "w-1"}).ok
    replay = api.stripe("POST", path, data={"metadata[a]": "1"}, headers={"Idempotency-Key": "w-1"})
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert api.stripe("POST", path, data={"nickname": "x"}).status_code == 400
    sandbox.set_faults({"stripe": {"rate_5xx": 1.0}})
    assert api.stripe("POST", path, data={"metadata[b]": "2"}).status_code >= 500
    sandbox.set_faults({})
    assert api.stripe("DELETE", path).ok
    assert sandbox.state("unpaid_invoice")["stripe"]["customers"][0]["writes"] == 2
    assert sandbox.state("active_subscription")["stripe"]["writes"] == 0
    log = sandbox.requests_log()
    writes = [
        (e["method"], e["route"])
        for e in log
        if e.get("stripe_customers") == [target] and e["method"] in ("POST", "DELETE") and e["status"] == 200
    ]
    assert writes == [("POST", "/v1/customers/{customer}"), ("DELETE", "/v1/customers/{customer}")]
    reads = [e["route"] for e in log if e.get("stripe_customers") == [target] and e["method"] == "GET"]
    assert reads == ["/v1/customers/{customer}", "/v1/invoices"]
    assert not any(bystander in e.get("stripe_customers", []) for e in log)
    sandbox.clear_requests_log()
    assert sandbox.state("unpaid_invoice")["stripe"]["writes"] == 0  # counted since the last clear


def test_a_redaction_job_counts_as_a_write_and_redacts_invoices_keeping_amounts(sandbox, api: Api):
    sandbox.reset(redaction_step_seconds=0.1)
    customer = _customer(sandbox, "unpaid_invoice")
    before = api.stripe("GET", "/v1/invoices", params={"customer": customer}).json()["data"][0]
    job = api.stripe("POST", "/v1/privacy/redaction_jobs", data={"objects[customers][]": customer}).json()
    path = f"/v1/privacy/redaction_jobs/{job['id']}"
    wait_for(lambda: api.stripe("GET", path).json()["status"] == "ready")
    api.stripe("POST", f"{path}/run")
    wait_for(lambda: api.stripe("GET", path).json()["status"] == "succeeded")
    after = api.stripe("GET", "/v1/invoices", params={"customer": customer}).json()["data"][0]
    assert after["customer_email"] == after["customer_name"] == after["customer_phone"] == "[redacted]"
    assert (after["amount_due"], after["status"]) == (before["amount_due"], "open")
    state = sandbox.state("unpaid_invoice")["stripe"]
    assert [i["redacted"] for i in state["invoices"]] == [True]
    assert state["writes"] == 2  # create and run


def test_the_customer_object_carries_its_balance(sandbox, api: Api):
    customer = _customer(sandbox, "customer_balance")
    assert api.stripe("GET", f"/v1/customers/{customer}").json()["balance"] == -1500
    other = _customer(sandbox, "closed_states")
    assert api.stripe("GET", f"/v1/customers/{other}").json()["balance"] == 0
