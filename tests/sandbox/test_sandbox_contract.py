"""Contract tests: every emulated operation, over real HTTP, checked against the official specs.

Responses of Stripe, Twilio (2010, Conversations, Memory) and the Segment Public API are validated
with openapi-core against the subsets in ``tests/api_reference`` (the sandbox prefix is mapped
back to the spec's server). The Segment Profile API has no OpenAPI spec: its responses are
checked with JSON Schemas derived here from ``segment-profile-api.json`` (and the derivation is
itself checked against that file's examples). Error responses that a subset does not describe
are checked against schemas derived from the closest documented one; ``docs/sandbox.md`` lists
them under "Known differences".
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse
from sandbox_support import Api, wait_for

SPEC_DIR = Path(__file__).resolve().parent.parent / "api_reference"

# target name -> (sandbox prefix, spec file, the spec's server URL)
TARGETS = {
    "stripe": ("/stripe", "stripe.subset.json", "https://api.stripe.com"),
    "twilio": ("/twilio/api", "twilio-api-v2010.subset.json", "https://api.twilio.com"),
    "conversations": (
        "/twilio/conversations",
        "twilio-conversations-v1.subset.json",
        "https://conversations.twilio.com",
    ),
    "memory": ("/twilio/memory", "twilio-memory-v1.subset.json", "https://memory.twilio.com"),
    "segment": ("/segment/api", "segment.subset.json", "https://api.segmentapis.com"),
}


def _load(spec_file: str) -> dict[str, Any]:
    return json.loads((SPEC_DIR / spec_file).read_text())


def _null_branches(node: Any) -> Any:
    """Make OpenAPI 3.0 ``nullable`` effective next to ``anyOf`` and ``enum`` (a validator gap, not
    a spec change).

    Stripe writes optional objects as ``{"nullable": true, "anyOf": [{"$ref": ...}]}``; the
    validator ignores ``nullable`` on a schema without ``type``, so a documented ``null`` fails.
    Adding an explicit null branch keeps the spec's meaning. Likewise a nullable enum without
    ``null`` among its values (``cancellation_details.reason``: "nullable": true, enum of four
    reasons): the validator checks the enum first, so ``null`` is added to it.
    """
    if isinstance(node, dict):
        node = {key: _null_branches(value) for key, value in node.items()}
        if node.get("nullable") and "anyOf" in node and "type" not in node:
            node["anyOf"] = [*node["anyOf"], {"type": "string", "nullable": True, "enum": [None]}]
        if node.get("nullable") and "enum" in node and None not in node["enum"]:
            node["enum"] = [*node["enum"], None]
        return node
    if isinstance(node, list):
        return [_null_branches(item) for item in node]
    return node


@functools.cache
def openapi(spec_file: str) -> OpenAPI:
    return OpenAPI.from_dict(_null_branches(_load(spec_file)))


def inline_schema(spec_file: str, pointer: str) -> dict[str, Any]:
    """A component schema of a subset with its local ``$ref``s inlined (for plain jsonschema)."""
    spec = _load(spec_file)

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                target: Any = spec
                for part in node["$ref"].removeprefix("#/").split("/"):
                    target = target[part]
                return resolve(target)
            return {k: resolve(v) for k, v in node.items() if not k.startswith("x-")}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    target: Any = spec
    for part in pointer.split("/"):
        target = target[part]
    return resolve(target)


# Twilio's 2010 and Conversations subsets describe no error response. The Memory subset's
# TwilioError is the same JSON; 20003 responses also carry "detail", so it is allowed here.
TWILIO_ERROR = inline_schema("twilio-memory-v1.subset.json", "components/schemas/TwilioError")
TWILIO_ERROR["properties"]["detail"] = {"type": "string"}
TWILIO_ERROR["required"] = ["code", "message", "more_info", "status"]
SEGMENT_ERRORS = inline_schema("segment.subset.json", "components/schemas/RequestErrorEnvelope")


def _profile_doc() -> dict[str, Any]:
    return _load("segment-profile-api.json")


def _profile_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schemas for the Profile API, derived from the response shapes in the doc summary."""
    endpoints = _profile_doc()["endpoints"]
    external_id = {
        "type": "object",
        "required": list(endpoints["external_ids"]["response_200_shape"]["data"][0]),
        "properties": {
            name: {"type": "string"} for name in endpoints["external_ids"]["response_200_shape"]["data"][0]
        },
    }
    cursor = {
        "type": "object",
        "required": ["url", "has_more", "next"],
        "properties": {
            "url": {"type": "string"},
            "has_more": {"type": "boolean"},
            "next": {"type": "string"},
        },
    }
    error = {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": list(_profile_doc()["errors"]["body_shape"]["error"]),
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                "additionalProperties": False,
            }
        },
        "additionalProperties": False,
    }
    return {
        "external_ids": {
            "type": "object",
            "required": ["data", "cursor"],
            "properties": {"data": {"type": "array", "items": external_id}, "cursor": cursor},
        },
        "traits": {
            "type": "object",
            "required": ["traits", "cursor"],
            "properties": {"traits": {"type": "object"}, "cursor": cursor},
        },
        "error": error,
    }


PROFILE_SCHEMAS = _profile_schemas()


class Contract:
    """Checks a sandbox response against the spec of the service it emulates."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def spec(self, target: str, response: requests.Response, status: int) -> Any:
        """Assert ``status``, validate with openapi-core, return the decoded body (or ``None``)."""
        assert response.status_code == status, response.text
        prefix, spec_file, server = TARGETS[target]
        request = response.request.copy()
        assert request.url is not None and request.url.startswith(self.base_url + prefix)
        request.url = server + request.url[len(self.base_url + prefix) :]
        openapi(spec_file).validate_response(
            RequestsOpenAPIRequest(request), RequestsOpenAPIResponse(response)
        )
        return response.json() if response.content else None

    @staticmethod
    def schema(schema: dict[str, Any], response: requests.Response, status: int) -> Any:
        assert response.status_code == status, response.text
        body = response.json()
        jsonschema.validate(body, schema)
        return body


@pytest.fixture
def contract(sandbox) -> Contract:
    return Contract(sandbox.base_url)


def _someone(sandbox, *needs: str) -> dict[str, Any]:
    """A generated person having every identifier named in ``needs``."""
    return next(p for p in sandbox.people() if p["key"].startswith("person-") and all(p[n] for n in needs))


# --- Stripe -------------------------------------------------------------------------------------


def test_stripe_customer_operations_match_the_spec(sandbox, api: Api, contract: Contract):
    person = sandbox.person("multi_stripe")
    listed = contract.spec(
        "stripe", api.stripe("GET", "/v1/customers", params={"email": person["email"]}), 200
    )
    assert sorted(c["id"] for c in listed["data"]) == sorted(person["stripe_customer_ids"])
    contract.spec("stripe", api.stripe("GET", "/v1/customers", params={"limit": 3}), 200)
    # The preflight's read: one customer; a test-mode key shows livemode false on every object.
    probe = contract.spec("stripe", api.stripe("GET", "/v1/customers", params={"limit": 1}), 200)
    assert len(probe["data"]) == 1 and probe["data"][0]["livemode"] is False
    restricted = api.stripe("GET", "/v1/customers", key="rk_test_sandbox", params={"limit": 1})
    assert contract.spec("stripe", restricted, 200)["data"][0]["livemode"] is False
    query = f"email:'{person['email']}'"
    found = contract.spec("stripe", api.stripe("GET", "/v1/customers/search", params={"query": query}), 200)
    assert len(found["data"]) == 2
    customer_id = person["stripe_customer_ids"][0]
    contract.spec("stripe", api.stripe("GET", f"/v1/customers/{customer_id}"), 200)
    tagged = api.stripe("POST", f"/v1/customers/{customer_id}", data={"metadata[gdpr_status]": "erasing"})
    assert contract.spec("stripe", tagged, 200)["metadata"]["gdpr_status"] == "erasing"
    assert (
        contract.spec("stripe", api.stripe("DELETE", f"/v1/customers/{customer_id}"), 200)["deleted"] is True
    )
    stub = contract.spec("stripe", api.stripe("GET", f"/v1/customers/{customer_id}"), 200)
    assert stub == {"id": customer_id, "object": "customer", "deleted": True}


OTHER_ACCOUNT_KEY = "sk_test_other_project_key"  # a valid key of another Stripe account


def test_stripe_account_matches_the_spec(sandbox, api: Api, contract: Contract):
    """``GET /v1/account`` answers the key's own account: the sandbox's, or for a key of another
    account that account, which holds none of the sandbox's customers."""
    stripe = sandbox.accounts()["stripe"]
    mine = contract.spec("stripe", api.stripe("GET", "/v1/account"), 200)
    assert mine["id"] == stripe["account_id"] and mine["object"] == "account"
    assert mine["id"].startswith("acct_")
    restricted = contract.spec("stripe", api.stripe("GET", "/v1/account", key="rk_test_sandbox"), 200)
    assert restricted["id"] == stripe["account_id"]
    expanded = api.stripe("GET", "/v1/account", params={"expand[]": "settings"})
    assert contract.spec("stripe", expanded, 200)["id"] == stripe["account_id"]
    other = contract.spec("stripe", api.stripe("GET", "/v1/account", key=OTHER_ACCOUNT_KEY), 200)
    assert other["id"] == stripe["other_account_id"] != stripe["account_id"]
    # The field set of Stripe's own account fixture, nothing invented.
    fixture = json.loads((SPEC_DIR / "stripe.subset.json").read_text())["components"]["examples"]
    assert set(mine) <= set(fixture["account_fixture"]["value"])

    # The other account's key is valid, and its answers are the ones that read as "absent".
    person = sandbox.person("multi_stripe")
    nobody = api.stripe("GET", "/v1/customers", key=OTHER_ACCOUNT_KEY, params={"email": person["email"]})
    assert contract.spec("stripe", nobody, 200)["data"] == []
    customer_id = person["stripe_customer_ids"][0]
    unknown = api.stripe("GET", f"/v1/customers/{customer_id}", key=OTHER_ACCOUNT_KEY)
    assert contract.spec("stripe", unknown, 404)["error"]["code"] == "resource_missing"
    contract.spec("stripe", api.stripe("DELETE", f"/v1/customers/{customer_id}", key=OTHER_ACCOUNT_KEY), 404)

    contract.spec("stripe", api.stripe("GET", "/v1/account", params={"nickname": "x"}), 400)
    contract.spec("stripe", api.stripe("GET", "/v1/account", key=None), 401)
    contract.spec("stripe", api.stripe("GET", "/v1/account", key="sk_live_abcdefgh1234"), 401)


def test_stripe_live_state_operations_match_the_spec(sandbox, api: Api, contract: Contract):
    """The reads before an erasure (subscriptions, invoices, charges, disputes) and the cancel;
    every field the sandbox sends is one of the spec's properties (nothing invented)."""
    schemas = json.loads((SPEC_DIR / "stripe.subset.json").read_text())["components"]["schemas"]

    def fields_of(kind: str, body: dict[str, Any]) -> None:
        assert not set(body) - set(schemas[kind]["properties"]), set(body) - set(schemas[kind]["properties"])

    active = sandbox.person("active_subscription")["stripe_customer_ids"][0]
    closed = sandbox.person("closed_states")["stripe_customer_ids"][0]
    listed = contract.spec("stripe", api.stripe("GET", "/v1/subscriptions", params={"customer": active}), 200)
    [sub] = listed["data"]
    fields_of("subscription", sub)
    every = api.stripe("GET", "/v1/subscriptions", params={"customer": closed, "status": "all", "limit": 100})
    assert contract.spec("stripe", every, 200)["data"][0]["status"] == "canceled"
    contract.spec("stripe", api.stripe("GET", f"/v1/subscriptions/{sub['id']}"), 200)
    canceled = contract.spec("stripe", api.stripe("DELETE", f"/v1/subscriptions/{sub['id']}"), 200)
    assert canceled["status"] == "canceled"
    assert (
        contract.spec("stripe", api.stripe("DELETE", f"/v1/subscriptions/{sub['id']}"), 404)["error"]["code"]
        == "resource_missing"
    )
    contract.spec("stripe", api.stripe("GET", "/v1/subscriptions/sub_unknown0000000"), 404)

    for key, status in (("unpaid_invoice", "open"), ("closed_states", "paid")):
        customer = sandbox.person(key)["stripe_customer_ids"][0]
        invoices = api.stripe("GET", "/v1/invoices", params={"customer": customer, "status": status})
        [invoice] = contract.spec("stripe", invoices, 200)["data"]
        fields_of("invoice", invoice)
    disputed = sandbox.person("open_dispute")["stripe_customer_ids"][0]
    charges = contract.spec("stripe", api.stripe("GET", "/v1/charges", params={"customer": disputed}), 200)
    fields_of("charge", charges["data"][0])
    charge = next(ch for ch in charges["data"] if ch["disputed"])
    disputes = contract.spec(
        "stripe", api.stripe("GET", "/v1/disputes", params={"charge": charge["id"]}), 200
    )
    assert disputes["data"][0]["status"] == "needs_response"
    fields_of("dispute", disputes["data"][0])
    contract.spec("stripe", api.stripe("GET", "/v1/disputes", params={"limit": 1}), 200)

    # Errors: an unknown customer or charge filter, an unknown parameter, a bad status, no key.
    for path in ("/v1/subscriptions", "/v1/invoices", "/v1/charges"):
        unknown = api.stripe("GET", path, params={"customer": "cus_doesnotexist00"})
        assert contract.spec("stripe", unknown, 400)["error"]["param"] == "customer"
        contract.spec("stripe", api.stripe("GET", path, params={"nickname": "x"}), 400)
        contract.spec("stripe", api.stripe("GET", path, key=None), 401)
    contract.spec("stripe", api.stripe("GET", "/v1/disputes", params={"charge": "ch_unknown000000"}), 400)
    contract.spec("stripe", api.stripe("GET", "/v1/subscriptions", params={"status": "live"}), 400)
    contract.spec("stripe", api.stripe("GET", "/v1/invoices", params={"status": "unpaid"}), 400)


def test_stripe_errors_match_the_spec(sandbox, api: Api, contract: Contract):
    customer_id = sandbox.person("no_segment")["stripe_customer_ids"][0]
    missing = contract.spec("stripe", api.stripe("GET", "/v1/customers/cus_doesnotexist1"), 404)["error"]
    assert missing == {
        "code": "resource_missing",
        "doc_url": "https://stripe.com/docs/error-codes/resource-missing",
        "message": "No such customer: 'cus_doesnotexist1'",
        "param": "id",
        "type": "invalid_request_error",
    }
    unknown_param = api.stripe("POST", f"/v1/customers/{customer_id}", data={"nickname": "x"})
    assert contract.spec("stripe", unknown_param, 400)["error"]["param"] == "nickname"
    assert contract.spec("stripe", api.stripe("GET", "/v1/customers", key=None), 401)["error"]["type"]
    # A key Stripe does not know: 401 with type invalid_request_error (the spec's error types have no
    # authentication_error; stripe-python raises AuthenticationError from the status), key masked.
    wrong = contract.spec("stripe", api.stripe("GET", "/v1/customers", key="sk_live_abcdefgh1234"), 401)
    assert wrong["error"] == {
        "message": "Invalid API Key provided: sk_live_****1234",
        "type": "invalid_request_error",
    }
    contract.spec("stripe", api.stripe("GET", "/v1/customers", params={"limit": 101}), 400)
    api.stripe("DELETE", f"/v1/customers/{customer_id}")
    contract.spec("stripe", api.stripe("DELETE", f"/v1/customers/{customer_id}"), 404)
    contract.spec("stripe", api.stripe("POST", f"/v1/customers/{customer_id}", data={"name": "x"}), 404)


def test_stripe_redaction_jobs_match_the_spec(sandbox, api: Api, contract: Contract):
    sandbox.reset(redaction_step_seconds=0.1)
    customer_id = sandbox.person("no_segment")["stripe_customer_ids"][0]
    created = api.stripe("POST", "/v1/privacy/redaction_jobs", data={"objects[customers][]": customer_id})
    job = contract.spec("stripe", created, 200)
    assert job["status"] == "created"
    # The redaction-job preflight's read (preview spec: GetPrivacyRedactionJobs).
    listed = contract.spec(
        "stripe", api.stripe("GET", "/v1/privacy/redaction_jobs", params={"limit": 1}), 200
    )
    assert [j["id"] for j in listed["data"]] == [job["id"]]
    early_run = api.stripe("POST", f"/v1/privacy/redaction_jobs/{job['id']}/run")
    assert contract.spec("stripe", early_run, 400)["error"]["type"] == "invalid_request_error"
    path = f"/v1/privacy/redaction_jobs/{job['id']}"
    wait_for(lambda: api.stripe("GET", path).json()["status"] == "ready")
    contract.spec("stripe", api.stripe("GET", path), 200)
    contract.spec("stripe", api.stripe("GET", f"{path}/validation_errors"), 200)
    assert contract.spec("stripe", api.stripe("POST", f"{path}/run"), 200)["status"] == "redacting"
    contract.spec("stripe", api.stripe("POST", f"{path}/cancel"), 400)
    contract.spec("stripe", api.stripe("GET", "/v1/privacy/redaction_jobs/prj_unknown"), 404)

    failing = api.stripe(
        "POST", "/v1/privacy/redaction_jobs", data={"objects[customers][0]": "cus_unknown00000"}
    )
    failing_path = f"/v1/privacy/redaction_jobs/{failing.json()['id']}"
    wait_for(lambda: api.stripe("GET", failing_path).json()["status"] == "failed")
    errors = contract.spec("stripe", api.stripe("GET", f"{failing_path}/validation_errors"), 200)
    assert errors["data"][0]["erroring_object"] == {"id": "cus_unknown00000", "object_type": "customer"}
    assert (
        contract.spec("stripe", api.stripe("POST", f"{failing_path}/validate"), 200)["status"] == "validating"
    )
    wait_for(lambda: api.stripe("GET", failing_path).json()["status"] == "failed")
    assert contract.spec("stripe", api.stripe("POST", f"{failing_path}/cancel"), 200)["status"] == "canceling"


def test_stripe_injected_faults_match_the_spec(sandbox, api: Api, contract: Contract):
    sandbox.set_faults({"stripe": {"rate_429": 1.0}})
    limited = contract.spec("stripe", api.stripe("GET", "/v1/customers"), 429)
    assert limited["error"]["code"] == "rate_limit"
    sandbox.set_faults({"stripe": {"rate_5xx": 1.0}})
    response = api.stripe("GET", "/v1/customers")
    assert contract.spec("stripe", response, response.status_code)["error"]["type"] == "api_error"
    assert response.status_code in (500, 503)


# --- Twilio 2010 ----------------------------------------------------------------------------------


def test_twilio_messages_and_calls_match_the_spec(sandbox, api: Api, contract: Contract):
    phone = sandbox.person("no_stripe")["phone"]
    inbound = contract.spec("twilio", api.api2010("GET", "/Messages.json", params={"From": phone}), 200)
    outbound = contract.spec("twilio", api.api2010("GET", "/Messages.json", params={"To": phone}), 200)
    messages = inbound["messages"] + outbound["messages"]
    assert messages and all(phone in (m["from"], m["to"]) for m in messages)
    contract.spec("twilio", api.api2010("DELETE", f"/Messages/{messages[0]['sid']}.json"), 204)
    calls = []
    for direction in ("To", "From"):
        listed = api.api2010("GET", "/Calls.json", params={direction: phone})
        calls += contract.spec("twilio", listed, 200)["calls"]
    completed = next(c for c in calls if c["status"] == "completed")
    contract.spec("twilio", api.api2010("DELETE", f"/Calls/{completed['sid']}.json"), 204)


def test_twilio_account_fetch_matches_the_spec(sandbox, api: Api, contract: Contract):
    """The preflight's credential check: ``GET /2010-04-01/Accounts/{Sid}.json``."""
    path = f"/2010-04-01/Accounts/{api.account_sid}.json"
    account = contract.spec("twilio", api.twilio("api", "GET", path), 200)
    assert account["sid"] == account["owner_account_sid"] == api.account_sid
    assert account["status"] == "active" and account["uri"] == path
    # Wrong credentials (another account's SID, an empty secret): 401 with error 20003.
    for auth in (("AC" + "1" * 32, "secret"), (api.account_sid, "")):
        refused = contract.schema(TWILIO_ERROR, api.twilio("api", "GET", path, auth=auth), 401)
        assert refused["code"] == 20003
    other = f"/2010-04-01/Accounts/AC{'2' * 32}.json"
    assert contract.schema(TWILIO_ERROR, api.twilio("api", "GET", other), 401)["code"] == 20003
    malformed = api.twilio("api", "GET", "/2010-04-01/Accounts/ACnot-an-account.json")
    assert contract.schema(TWILIO_ERROR, malformed, 404)["code"] == 20404


def test_twilio_recordings_and_transcriptions_match_the_spec(sandbox, api: Api, contract: Contract):
    transcribed = _recording_with_transcription(sandbox, api)
    recording_sid, call_sid = transcribed["sid"], transcribed["call_sid"]
    contract.spec("twilio", api.api2010("GET", "/Recordings.json", params={"CallSid": call_sid}), 200)
    contract.spec("twilio", api.api2010("GET", f"/Calls/{call_sid}/Recordings.json"), 200)
    listed = api.api2010("GET", f"/Recordings/{recording_sid}/Transcriptions.json", params={"PageSize": 1000})
    transcriptions = contract.spec("twilio", listed, 200)["transcriptions"]
    transcription = transcriptions[0]
    assert transcription["recording_sid"] == recording_sid and transcription["sid"].startswith("TR")
    # The spec types a transcription's price as a number (or null), not a string as for messages.
    assert all(t["price"] is None or isinstance(t["price"], float | int) for t in transcriptions)
    contract.spec("twilio", api.api2010("DELETE", f"/Transcriptions/{transcription['sid']}.json"), 204)
    if len(transcriptions) > 1:
        scoped = f"/Recordings/{recording_sid}/Transcriptions/{transcriptions[1]['sid']}.json"
        contract.spec("twilio", api.api2010("DELETE", scoped), 204)
    contract.spec("twilio", api.api2010("DELETE", f"/Recordings/{recording_sid}.json"), 204)
    soft = api.api2010("GET", "/Recordings.json", params={"CallSid": call_sid, "IncludeSoftDeleted": "true"})
    statuses = {r["sid"]: r["status"] for r in contract.spec("twilio", soft, 200)["recordings"]}
    assert statuses[recording_sid] == "deleted"


def _recording_with_transcription(sandbox, api: Api) -> dict[str, Any]:
    """A seeded recording that has a transcription (searched through the public API)."""
    recordings = api.api2010("GET", "/Recordings.json", params={"PageSize": 1000}).json()["recordings"]
    for recording in recordings:
        listed = api.api2010("GET", f"/Recordings/{recording['sid']}/Transcriptions.json").json()
        if listed["transcriptions"]:
            return recording
    raise AssertionError("the default seed has no transcribed recording")


def test_twilio_errors_have_twilio_error_bodies(sandbox, api: Api, contract: Contract):
    missing_sid = "SM" + "0" * 32
    gone = contract.schema(TWILIO_ERROR, api.api2010("DELETE", f"/Messages/{missing_sid}.json"), 404)
    assert gone["code"] == 20404 and missing_sid in gone["message"]
    refused = contract.schema(
        TWILIO_ERROR, api.api2010("GET", "/Messages.json", auth=("AC" + "1" * 32, "x")), 401
    )
    assert refused["code"] == 20003
    assert (
        contract.schema(TWILIO_ERROR, api.twilio("api", "GET", "/2010-04-01/Nothing.json"), 404)["code"]
        == 20404
    )
    in_flight = sandbox.person("in_flight")["phone"]
    sending = api.api2010("GET", "/Messages.json", params={"To": in_flight}).json()["messages"]
    pending = next(m for m in sending if m["status"] == "sending")
    early = contract.schema(TWILIO_ERROR, api.api2010("DELETE", f"/Messages/{pending['sid']}.json"), 400)
    assert early["code"] == 20009
    sandbox.set_faults({"twilio": {"rate_429": 1.0}})
    assert contract.schema(TWILIO_ERROR, api.api2010("GET", "/Calls.json"), 429)["code"] == 20429


# --- Twilio Conversations and Memory ---------------------------------------------------------------


def test_conversations_match_the_spec(sandbox, api: Api, contract: Contract):
    phone = sandbox.person("no_stripe")["phone"]
    listed = api.twilio("conversations", "GET", "/v1/ParticipantConversations", params={"Address": phone})
    entries = contract.spec("conversations", listed, 200)["conversations"]
    assert entries and entries[0]["participant_messaging_binding"]["address"] == phone
    identity = next(p["chat_identity"] for p in sandbox.people() if p["chat_identity"])
    by_identity = api.twilio(
        "conversations", "GET", "/v1/ParticipantConversations", params={"Identity": identity}
    )
    assert (
        contract.spec("conversations", by_identity, 200)["conversations"][0]["participant_identity"]
        == identity
    )
    entry = entries[0]
    headers = {"X-Twilio-Webhook-Enabled": "false"}
    participant = f"/v1/Conversations/{entry['conversation_sid']}/Participants/{entry['participant_sid']}"
    contract.spec("conversations", api.twilio("conversations", "DELETE", participant, headers=headers), 204)
    conversation = f"/v1/Conversations/{entry['conversation_sid']}"
    contract.spec("conversations", api.twilio("conversations", "DELETE", conversation, headers=headers), 204)
    gone = api.twilio("conversations", "DELETE", conversation)
    assert contract.schema(TWILIO_ERROR, gone, 404)["code"] == 20404


def test_conversation_services_match_the_spec(sandbox, api: Api, contract: Contract):
    """Configuration, the list of Conversation Services and the service-scoped operations."""
    config = contract.spec("conversations", api.twilio("conversations", "GET", "/v1/Configuration"), 200)
    default_service = config["default_chat_service_sid"]
    # The hook's page size, the spec's maximum for Services (1-100).
    listed = api.twilio("conversations", "GET", "/v1/Services", params={"PageSize": 100})
    services = contract.spec("conversations", listed, 200)
    assert services["meta"]["key"] == "services" and services["meta"]["page_size"] == 100
    sids = [service["sid"] for service in services["services"]]
    assert default_service in sids and len(sids) >= 2
    person = sandbox.person("other_service")
    other = next(sid for sid in sids if sid != default_service)
    scoped = f"/v1/Services/{other}/ParticipantConversations"
    by_phone = api.twilio("conversations", "GET", scoped, params={"Address": person["phone"]})
    entries = contract.spec("conversations", by_phone, 200)["conversations"]
    assert entries and all(e["chat_service_sid"] == other for e in entries)
    by_identity = api.twilio("conversations", "GET", scoped, params={"Identity": person["chat_identity"]})
    assert contract.spec("conversations", by_identity, 200)["meta"]["key"] == "conversations"
    entry = entries[0]
    headers = {"X-Twilio-Webhook-Enabled": "false"}
    conversation = f"/v1/Services/{other}/Conversations/{entry['conversation_sid']}"
    participant = f"{conversation}/Participants/{entry['participant_sid']}"
    contract.spec("conversations", api.twilio("conversations", "DELETE", participant, headers=headers), 204)
    contract.spec("conversations", api.twilio("conversations", "DELETE", conversation, headers=headers), 204)
    gone = api.twilio("conversations", "DELETE", conversation, headers=headers)
    assert contract.schema(TWILIO_ERROR, gone, 404)["code"] == 20404


def test_memory_matches_the_spec(sandbox, api: Api, contract: Contract):
    sandbox.reset(memory_delete_seconds=0.2)
    person = _someone(sandbox, "memory_profile_id")
    profile_id = person["memory_profile_id"]
    found = contract.spec(
        "memory",
        api.memory("POST", "/Profiles/Lookup", json={"idType": "phone", "value": person["phone"]}),
        200,
    )
    assert found == {"normalizedValue": person["phone"], "profiles": [profile_id]}
    fetched = contract.spec("memory", api.memory("GET", f"/Profiles/{profile_id}"), 200)
    assert fetched["traits"]["Contact"]["email"] == person["email"]
    contract.spec(
        "memory", api.memory("GET", f"/Profiles/{profile_id}", params={"traitGroups": "Contact"}), 200
    )
    accepted = contract.spec("memory", api.memory("DELETE", f"/Profiles/{profile_id}"), 202)
    assert accepted == {"message": "Profile accepted for deletion."}
    wait_for(lambda: api.memory("GET", f"/Profiles/{profile_id}").status_code == 404)
    assert contract.spec("memory", api.memory("GET", f"/Profiles/{profile_id}"), 404)["code"] == 20404
    contract.spec("memory", api.memory("POST", "/Profiles/Lookup", json={"idType": "fax", "value": "1"}), 400)
    contract.spec("memory", api.memory("GET", f"/Profiles/{profile_id}", auth=("AC" + "2" * 32, "x")), 401)
    sandbox.set_faults({"twilio": {"rate_429": 1.0, "retry_after": 2}})
    limited = api.memory("POST", "/Profiles/Lookup", json={"idType": "email", "value": person["email"]})
    assert contract.spec("memory", limited, 429)["code"] == 20429
    assert limited.headers["Retry-After"] == "2"


def test_memory_store_fetch_matches_the_spec(sandbox, api: Api, contract: Contract):
    """The preflight's check of ``memory_store_id``: ``GET /v1/ControlPlane/Stores/{storeId}``."""
    fetched = api.twilio("memory", "GET", f"/v1/ControlPlane/Stores/{api.store_id}")
    store = contract.spec("memory", fetched, 200)
    assert store["id"] == api.store_id and store["status"] == "ACTIVE"
    assert fetched.headers["ETag"]
    unknown = api.twilio("memory", "GET", "/v1/ControlPlane/Stores/mem_store_01unknownstore000000000000")
    assert contract.spec("memory", unknown, 404)["code"] == 20404
    contract.spec("memory", api.twilio("memory", "GET", "/v1/ControlPlane/Stores/not-a-store"), 400)
    # FetchStore declares no 401; the body is the spec's TwilioError like every Memory error.
    refused = api.twilio(
        "memory", "GET", f"/v1/ControlPlane/Stores/{api.store_id}", auth=("AC" + "3" * 32, "x")
    )
    assert contract.schema(TWILIO_ERROR, refused, 401)["code"] == 20003


# --- Segment ---------------------------------------------------------------------------------------


def test_segment_regulations_match_the_spec(sandbox, api: Api, contract: Contract):
    user_id = _someone(sandbox, "segment_user_id")["segment_user_id"]
    body = {"regulationType": "SUPPRESS_WITH_DELETE", "subjectType": "USER_ID", "subjectIds": [user_id]}
    created = contract.spec("segment", api.public("POST", "/regulations", json=body), 200)
    regulate_id = created["data"]["regulateId"]
    regulation = contract.spec("segment", api.public("GET", f"/regulations/{regulate_id}"), 200)["data"][
        "regulation"
    ]
    assert regulation["id"] == regulate_id and regulation["overallStatus"] == "INITIALIZED"
    wait_for(lambda: api.regulation_status(regulate_id) == "FINISHED")
    finished = contract.spec("segment", api.public("GET", f"/regulations/{regulate_id}"), 200)["data"][
        "regulation"
    ]
    assert finished["finishedAt"] and finished["streamStatus"]
    contract.spec("segment", api.public("GET", "/regulations/nope"), 404)
    for invalid in (
        {**body, "regulationType": "DELETE_EVERYTHING"},
        {**body, "subjectIds": []},
        {**body, "subjectIds": [f"u{i}" for i in range(5001)]},
        {"regulationType": "SUPPRESS_WITH_DELETE", "subjectType": "USER_ID"},
    ):
        errors = contract.spec("segment", api.public("POST", "/regulations", json=invalid), 422)["errors"]
        assert errors[0]["type"] == "input-validation"
    # 401 is not described by the subset; Segment documents the same error envelope for it.
    contract.schema(
        SEGMENT_ERRORS, api.public("GET", f"/regulations/{regulate_id}", headers={"Authorization": ""}), 401
    )
    sandbox.set_faults({"segment": {"rate_429": 1.0}})
    assert contract.spec("segment", api.public("POST", "/regulations", json=body), 429)["errors"][0]["type"]


def test_segment_regulation_list_matches_the_spec(sandbox, api: Api, contract: Contract):
    """The preflight's read: ``GET /regulations`` (listWorkspaceRegulations), paged by cursor."""
    empty = contract.spec("segment", api.public("GET", "/regulations"), 200)["data"]
    assert empty == {
        "regulations": [],
        "pagination": {"current": "MA==", "next": None, "previous": None, "totalEntries": 0},
    }
    user_ids = [p["segment_user_id"] for p in sandbox.people() if p["segment_user_id"]][:3]
    created = [api.regulate([user_id]) for user_id in user_ids]
    first = api.public("GET", "/regulations", params={"pagination.count": 2})
    page = contract.spec("segment", first, 200)["data"]
    assert [r["id"] for r in page["regulations"]] == created[::-1][:2]
    assert page["regulations"][0]["regulationType"] == "SUPPRESS_WITH_DELETE"
    assert page["pagination"]["totalEntries"] == 3 and page["pagination"]["next"]
    # The Go SDK's deepObject form of the same parameters.
    second = api.public(
        "GET",
        "/regulations",
        params={"pagination[count]": 2, "pagination[cursor]": page["pagination"]["next"]},
    )
    rest = contract.spec("segment", second, 200)["data"]
    assert [r["id"] for r in rest["regulations"]] == created[:1] and rest["pagination"]["next"] is None
    filtered = api.public(
        "GET", "/regulations", params={"status": "FINISHED", "regulationTypes": "UNSUPPRESS"}
    )
    assert contract.spec("segment", filtered, 200)["data"]["regulations"] == []
    for bad in ({"pagination.count": 0}, {"pagination.count": 1001}, {"pagination.cursor": "not a cursor"}):
        errors = contract.spec("segment", api.public("GET", "/regulations", params=bad), 422)["errors"]
        assert errors[0]["type"] == "input-validation"
    # 401 is not in the spec; Segment documents the errors envelope for a missing or invalid token.
    refused = api.public("GET", "/regulations", headers={"Authorization": ""})
    assert contract.schema(SEGMENT_ERRORS, refused, 401)["errors"][0]["type"] == "unauthorized"


def test_profile_schemas_accept_the_documented_examples():
    """The derived Profile API schemas must accept Segment's own examples (guards the derivation)."""
    endpoints = _profile_doc()["endpoints"]
    jsonschema.validate(
        endpoints["external_ids"]["examples"]["200"]["normalized"], PROFILE_SCHEMAS["external_ids"]
    )
    jsonschema.validate(endpoints["traits"]["examples"]["200"]["normalized"], PROFILE_SCHEMAS["traits"])
    jsonschema.validate(endpoints["traits"]["examples"]["404"]["parsed"], PROFILE_SCHEMAS["error"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"data": [{"id": "x"}], "cursor": {}}, PROFILE_SCHEMAS["external_ids"])


def test_segment_profile_api_matches_the_documented_shapes(sandbox, api: Api, contract: Contract):
    person = _someone(sandbox, "segment_user_id")
    ids = contract.schema(
        PROFILE_SCHEMAS["external_ids"], api.profile("user_id", person["segment_user_id"]), 200
    )
    assert {x["type"]: x["id"] for x in ids["data"]}["email"] == person["email"]
    by_phone = contract.schema(PROFILE_SCHEMAS["external_ids"], api.profile("phone", person["phone"]), 200)
    assert by_phone["cursor"]["url"].endswith(f"/profiles/{person['segment_id']}/external_ids")
    contract.schema(
        PROFILE_SCHEMAS["external_ids"], api.profile(None, person["segment_id"], params={"limit": 1}), 200
    )
    traits = contract.schema(PROFILE_SCHEMAS["traits"], api.profile("email", person["email"], "traits"), 200)
    assert traits["traits"]["first_name"]
    missing = contract.schema(PROFILE_SCHEMAS["error"], api.profile("email", "nobody@example.com"), 404)
    assert missing == {"error": {"code": "not_found", "message": "Profile was not found."}}
    refused = contract.schema(
        PROFILE_SCHEMAS["error"], api.profile("email", person["email"], auth=("t", "pw")), 401
    )
    assert refused["error"]["code"] == "authentication_error"
    bad_limit = api.profile("email", person["email"], params={"limit": 0})
    assert contract.schema(PROFILE_SCHEMAS["error"], bad_limit, 400)["error"]["code"] == "validation_error"
