"""Behaviour of the Stripe emulation: state, paging, idempotency, redaction, SDK compatibility."""

from __future__ import annotations

import pytest
import stripe
from sandbox_support import STRIPE_KEY, Api, wait_for


def test_deleted_customer_leaves_only_a_stub_and_refuses_updates(sandbox, api: Api):
    customer_id = sandbox.person("no_segment")["stripe_customer_ids"][0]
    tagged = api.stripe("POST", f"/v1/customers/{customer_id}", data={"metadata[gdpr_status]": "erasing"})
    assert tagged.json()["metadata"]["gdpr_status"] == "erasing"
    assert api.stripe("DELETE", f"/v1/customers/{customer_id}").json()["deleted"] is True
    assert api.stripe("GET", f"/v1/customers/{customer_id}").json() == {
        "id": customer_id,
        "object": "customer",
        "deleted": True,
    }
    refused = api.stripe("POST", f"/v1/customers/{customer_id}", data={"metadata[x]": "y"})
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "resource_missing"
    assert api.stripe("DELETE", f"/v1/customers/{customer_id}").status_code == 404
    assert sandbox.state("no_segment")["stripe"]["customers"][0]["deleted"] is True


def test_metadata_updates_set_and_unset_keys(sandbox, api: Api):
    customer_id = sandbox.person("quiet_phone")["stripe_customer_ids"][0]
    path = f"/v1/customers/{customer_id}"
    api.stripe("POST", path, data={"metadata[a]": "1", "metadata[b]": "2"})
    updated = api.stripe("POST", path, data={"metadata[a]": "", "description": "erasure pending"}).json()
    assert "a" not in updated["metadata"] and updated["metadata"]["b"] == "2"
    assert updated["description"] == "erasure pending"
    cleared = api.stripe("POST", path, data={"metadata": ""}).json()
    assert cleared["metadata"] == {}


def test_list_by_email_is_exact_and_skips_deleted_customers(sandbox, api: Api):
    person = sandbox.person("multi_stripe")

    def listed(email: str) -> list[str]:
        return [c["id"] for c in api.stripe("GET", "/v1/customers", params={"email": email}).json()["data"]]

    assert sorted(listed(person["email"])) == sorted(person["stripe_customer_ids"])
    assert listed(person["email"].upper()) == []
    api.stripe("DELETE", f"/v1/customers/{person['stripe_customer_ids'][0]}")
    assert listed(person["email"]) == [person["stripe_customer_ids"][1]]


def test_list_paging_follows_starting_after_and_ending_before(sandbox, api: Api):
    everyone = api.stripe("GET", "/v1/customers", params={"limit": 100}).json()
    assert not everyone["has_more"]
    all_ids = [c["id"] for c in everyone["data"]]
    pages, cursor = [], None
    while True:
        params = {"limit": 4} | ({"starting_after": cursor} if cursor else {})
        page = api.stripe("GET", "/v1/customers", params=params).json()
        pages.append([c["id"] for c in page["data"]])
        if not page["has_more"]:
            break
        cursor = page["data"][-1]["id"]
    assert [i for page in pages for i in page] == all_ids and len(pages) > 2
    before = api.stripe("GET", "/v1/customers", params={"limit": 4, "ending_before": pages[1][0]}).json()
    assert [c["id"] for c in before["data"]] == pages[0]
    unknown = api.stripe("GET", "/v1/customers", params={"starting_after": "cus_unknown"})
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "starting_after"


def test_idempotency_key_replays_the_first_result_without_reapplying_it(sandbox, api: Api):
    customer_id = sandbox.person("quiet_phone")["stripe_customer_ids"][0]
    path = f"/v1/customers/{customer_id}"
    first = api.stripe("POST", path, data={"name": "First"}, headers={"Idempotency-Key": "k-1"})
    api.stripe("POST", path, data={"name": "Second"}, headers={"Idempotency-Key": "k-2"})
    replay = api.stripe("POST", path, data={"name": "First"}, headers={"Idempotency-Key": "k-1"})
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert replay.headers["Original-Request"] == first.headers["Request-Id"]
    assert api.stripe("GET", path).json()["name"] == "Second"  # the replay changed nothing

    conflict = api.stripe("POST", path, data={"name": "Other"}, headers={"Idempotency-Key": "k-1"})
    assert conflict.status_code == 400 and conflict.json()["error"]["type"] == "idempotency_error"
    elsewhere = api.stripe("POST", "/v1/privacy/redaction_jobs", headers={"Idempotency-Key": "k-1"})
    assert elsewhere.status_code == 400 and "same endpoint" in elsewhere.json()["error"]["message"]
    logged = [e for e in sandbox.requests_log() if e.get("idempotency_key") == "k-1"]
    assert len(logged) == 4


def test_every_stripe_response_has_a_request_id(sandbox, api: Api):
    for response in (
        api.stripe("GET", "/v1/customers"),
        api.stripe("GET", "/v1/nothing"),
        api.stripe("GET", "/v1/customers", key=None),
    ):
        assert response.headers["Request-Id"].startswith("req_")


def test_redaction_job_redacts_customers_and_their_charges(sandbox, api: Api):
    sandbox.reset(redaction_step_seconds=0.1)
    person = sandbox.person("multi_stripe")
    customer_id = person["stripe_customer_ids"][0]
    job = api.stripe("POST", "/v1/privacy/redaction_jobs", data={"objects[customers][0]": customer_id}).json()
    path = f"/v1/privacy/redaction_jobs/{job['id']}"
    seen = {job["status"]}
    wait_for(lambda: seen.add(status := api.stripe("GET", path).json()["status"]) or status == "ready")
    assert {"created", "ready"} <= seen
    assert api.stripe("POST", f"{path}/run").json()["status"] == "redacting"
    wait_for(lambda: api.stripe("GET", path).json()["status"] == "succeeded")
    customer = api.stripe("GET", f"/v1/customers/{customer_id}").json()
    assert customer["email"] == customer["name"] == customer["phone"] == "[redacted]"
    assert customer["metadata"] == {}
    state = sandbox.state("multi_stripe")["stripe"]
    redacted = {c["id"]: c["redacted"] for c in state["customers"]}
    assert redacted == {customer_id: True, person["stripe_customer_ids"][1]: False}
    assert all(ch["redacted"] == (ch["customer"] == customer_id) for ch in state["charges"])
    remaining = api.stripe("GET", "/v1/customers", params={"email": person["email"]}).json()["data"]
    assert [c["id"] for c in remaining] == [person["stripe_customer_ids"][1]]


def test_second_job_on_the_same_customer_is_locked(sandbox, api: Api):
    sandbox.reset(redaction_step_seconds=0.1)
    customer_id = sandbox.person("quiet_phone")["stripe_customer_ids"][0]
    data = {"objects[customers][]": customer_id}
    first = api.stripe("POST", "/v1/privacy/redaction_jobs", data=data).json()["id"]
    second = api.stripe("POST", "/v1/privacy/redaction_jobs", data=data).json()["id"]
    wait_for(lambda: api.stripe("GET", f"/v1/privacy/redaction_jobs/{second}").json()["status"] == "failed")
    assert api.stripe("GET", f"/v1/privacy/redaction_jobs/{first}").json()["status"] == "ready"
    errors = api.stripe("GET", f"/v1/privacy/redaction_jobs/{second}/validation_errors").json()["data"]
    assert [e["code"] for e in errors] == ["locked_by_other_job"]


OTHER_ACCOUNT_KEY = "rk_test_other_sister_company"


def test_a_key_of_another_account_sees_and_changes_nothing_of_this_one(sandbox, api: Api):
    """Another account's valid key: its own account id, no customers, none of this account's
    redaction jobs, and nothing it sends reaches this account's customers."""
    sandbox.reset(redaction_step_seconds=0.1)
    accounts = sandbox.accounts()["stripe"]
    person = sandbox.person("multi_stripe")
    customer_id = person["stripe_customer_ids"][0]
    before = sandbox.state("multi_stripe")["stripe"]["customers"]
    assert (
        api.stripe("GET", "/v1/account", key=OTHER_ACCOUNT_KEY).json()["id"] == accounts["other_account_id"]
    )
    assert api.stripe("GET", "/v1/account").json()["id"] == accounts["account_id"]
    assert api.stripe("GET", "/v1/customers", key=OTHER_ACCOUNT_KEY).json()["data"] == []
    query = {"query": f"email:'{person['email']}'"}
    assert api.stripe("GET", "/v1/customers/search", key=OTHER_ACCOUNT_KEY, params=query).json()["data"] == []
    tag = api.stripe("POST", f"/v1/customers/{customer_id}", key=OTHER_ACCOUNT_KEY, data={"metadata[a]": "b"})
    assert tag.status_code == 404 and tag.json()["error"]["code"] == "resource_missing"
    assert api.stripe("DELETE", f"/v1/customers/{customer_id}", key=OTHER_ACCOUNT_KEY).status_code == 404
    assert sandbox.state("multi_stripe")["stripe"]["customers"] == before

    mine = api.stripe("POST", "/v1/privacy/redaction_jobs", data={"objects[customers][]": customer_id}).json()
    assert (
        api.stripe("GET", f"/v1/privacy/redaction_jobs/{mine['id']}", key=OTHER_ACCOUNT_KEY).status_code
        == 404
    )
    theirs = api.stripe(
        "POST",
        "/v1/privacy/redaction_jobs",
        key=OTHER_ACCOUNT_KEY,
        data={"objects[customers][]": customer_id},
    ).json()
    listed = api.stripe("GET", "/v1/privacy/redaction_jobs", key=OTHER_ACCOUNT_KEY).json()["data"]
    assert [j["id"] for j in listed] == [theirs["id"]]
    # Their job cannot validate our customer (not theirs) nor lock it against our own job.
    path = f"/v1/privacy/redaction_jobs/{theirs['id']}"
    wait_for(lambda: api.stripe("GET", path, key=OTHER_ACCOUNT_KEY).json()["status"] == "failed")
    errors = api.stripe("GET", f"{path}/validation_errors", key=OTHER_ACCOUNT_KEY).json()["data"]
    assert [e["code"] for e in errors] == ["invalid_state"]
    wait_for(
        lambda: api.stripe("GET", f"/v1/privacy/redaction_jobs/{mine['id']}").json()["status"] == "ready"
    )


def test_stripe_python_sdk_talks_to_the_sandbox(sandbox):
    """stripe-python with ``base_addresses={"api": <sandbox>/stripe}`` builds the sandbox's URLs."""
    person = sandbox.person("multi_stripe")
    client = stripe.StripeClient(
        STRIPE_KEY, base_addresses={"api": f"{sandbox.base_url}/stripe"}, max_network_retries=0
    )
    customers = client.v1.customers.list(params={"email": person["email"]}).data
    assert sorted(c.id for c in customers) == sorted(person["stripe_customer_ids"])
    updated = client.v1.customers.update(customers[0].id, params={"metadata": {"gdpr_status": "erasing"}})
    assert updated.metadata["gdpr_status"] == "erasing"
    assert client.v1.customers.delete(customers[0].id).deleted is True
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.customers.update(customers[0].id, params={"metadata": {"late": "1"}})
    assert refused.value.http_status == 404 and refused.value.code == "resource_missing"
    raw = client.raw_request(
        "post",
        "/v1/privacy/redaction_jobs",
        objects={"customers": [customers[1].id]},
        stripe_version="2025-05-28.preview",
    )
    job = client.deserialize(raw, api_mode="V1")
    assert job.object == "privacy.redaction_job" and job.objects.customers == [customers[1].id]
    routes = [(e["method"], e["route"]) for e in sandbox.requests_log()]
    assert routes == [
        ("GET", "/v1/customers"),
        ("POST", "/v1/customers/{customer}"),
        ("DELETE", "/v1/customers/{customer}"),
        ("POST", "/v1/customers/{customer}"),
        ("POST", "/v1/privacy/redaction_jobs"),
    ]
