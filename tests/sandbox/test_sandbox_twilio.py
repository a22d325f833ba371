"""Behaviour of the Twilio emulation: paging, deletions, 20009, Memory's async delete, SDK use."""

from __future__ import annotations

import re

import pytest
from sandbox_support import TWILIO_SECRET, Api, wait_for
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client


def _follow(api: Api, uri: str):
    """GET a 2010 ``next_page_uri`` (relative to api.twilio.com) on the sandbox."""
    return api.http.get(f"{api.base_url}/twilio/api{uri}", auth=(api.account_sid, TWILIO_SECRET), timeout=10)


def test_messages_page_by_50_with_page_tokens(sandbox, api: Api):
    phone = sandbox.person("many_messages")["phone"]
    first = api.api2010("GET", "/Messages.json", params={"To": phone, "PageSize": 50}).json()
    assert len(first["messages"]) == 50 and first["next_page_uri"]
    assert first["previous_page_uri"] is None and first["page"] == 0
    assert "PageToken=PA" in first["next_page_uri"] and "To=%2B" in first["next_page_uri"]
    second = _follow(api, first["next_page_uri"]).json()
    assert second["page"] == 1 and second["next_page_uri"] is None and second["previous_page_uri"]
    sids = [m["sid"] for m in first["messages"] + second["messages"]]
    assert len(sids) == len(set(sids)) == 65
    assert all(m["to"] == phone for m in first["messages"] + second["messages"])
    back = _follow(api, second["previous_page_uri"]).json()
    assert [m["sid"] for m in back["messages"]] == sids[:50]


def test_paging_continues_after_deleting_the_listed_page(sandbox, api: Api):
    phone = sandbox.person("many_messages")["phone"]
    first = api.api2010("GET", "/Messages.json", params={"From": phone}).json()
    for message in first["messages"]:
        assert api.api2010("DELETE", f"/Messages/{message['sid']}.json").status_code == 204
    rest = _follow(api, first["next_page_uri"]).json()["messages"]
    assert len(rest) == 15
    fresh = api.api2010("GET", "/Messages.json", params={"From": phone}).json()["messages"]
    assert [m["sid"] for m in fresh] == [m["sid"] for m in rest]


def test_deleted_message_is_gone_everywhere(sandbox, api: Api):
    phone = sandbox.person("segment_failed")["phone"]
    before = sandbox.state("segment_failed")["twilio"]["messages"]
    listed = api.api2010("GET", "/Messages.json", params={"To": phone}).json()["messages"]
    listed += api.api2010("GET", "/Messages.json", params={"From": phone}).json()["messages"]
    assert len(listed) == before
    sid = listed[0]["sid"]
    assert api.api2010("DELETE", f"/Messages/{sid}.json").status_code == 204
    again = api.api2010("DELETE", f"/Messages/{sid}.json")
    assert again.status_code == 404 and again.json()["code"] == 20404
    assert sandbox.state("segment_failed")["twilio"]["messages"] == before - 1


def test_in_flight_message_and_call_cannot_be_deleted_until_they_settle(sandbox, api: Api):
    sandbox.reset(in_flight_seconds=0.6)
    phone = sandbox.person("in_flight")["phone"]
    message = next(
        m
        for m in api.api2010("GET", "/Messages.json", params={"To": phone}).json()["messages"]
        if m["status"] == "sending"
    )
    calls = api.api2010("GET", "/Calls.json", params={"Status": "in-progress"}).json()["calls"]
    call = next(c for c in calls if phone in (c["to"], c["from"]))
    for path in (f"/Messages/{message['sid']}.json", f"/Calls/{call['sid']}.json"):
        refused = api.api2010("DELETE", path)
        assert refused.status_code == 400 and refused.json()["code"] == 20009
    assert sandbox.state("in_flight")["twilio"]["messages_in_flight"] == 1
    wait_for(lambda: api.api2010("DELETE", f"/Messages/{message['sid']}.json").status_code == 204)
    assert api.api2010("DELETE", f"/Calls/{call['sid']}.json").status_code == 204


def test_deleting_a_call_keeps_its_recordings_and_transcriptions(sandbox, api: Api):
    recordings = api.api2010("GET", "/Recordings.json", params={"PageSize": 1000}).json()["recordings"]
    call_sid = recordings[0]["call_sid"]
    owner = next(
        p["key"] for p in sandbox.people() if call_sid in {c["sid"] for c in _calls_of(api, p["phone"])}
    )
    before = sandbox.state(owner)["twilio"]
    assert api.api2010("DELETE", f"/Calls/{call_sid}.json").status_code == 204
    after = sandbox.state(owner)["twilio"]
    assert after["calls"] == before["calls"] - 1
    assert after["recordings"] == before["recordings"] and after["transcriptions"] == before["transcriptions"]
    still = api.api2010("GET", f"/Calls/{call_sid}/Recordings.json").json()["recordings"]
    assert {r["sid"] for r in still} >= {r["sid"] for r in recordings if r["call_sid"] == call_sid}


def _calls_of(api: Api, phone: str) -> list[dict]:
    calls = api.api2010("GET", "/Calls.json", params={"To": phone}).json()["calls"]
    return calls + api.api2010("GET", "/Calls.json", params={"From": phone}).json()["calls"]


def test_twilio_credentials_are_checked(sandbox, api: Api):
    api_key = ("SK" + "ab" * 16, "secret")
    assert api.api2010("GET", "/Calls.json", auth=api_key).status_code == 200
    assert api.api2010("GET", "/Calls.json", auth=(api.account_sid, "")).status_code == 401
    assert api.api2010("GET", "/Calls.json", auth=None).status_code == 401
    malformed = api.twilio("api", "GET", "/2010-04-01/Accounts/ACnope/Calls.json")
    assert malformed.status_code == 404 and malformed.json()["code"] == 20404
    assert api.twilio("conversations", "GET", "/v1/ParticipantConversations", auth=None).status_code == 401


def test_conversation_deletions_record_the_webhook_header(sandbox, api: Api):
    phone = sandbox.person("no_stripe")["phone"]
    entry = api.twilio("conversations", "GET", "/v1/ParticipantConversations", params={"Address": phone})
    conversation = entry.json()["conversations"][0]
    participant = (
        f"/v1/Conversations/{conversation['conversation_sid']}/Participants/{conversation['participant_sid']}"
    )
    headers = {"X-Twilio-Webhook-Enabled": "false"}
    assert api.twilio("conversations", "DELETE", participant, headers=headers).status_code == 204
    assert api.twilio("conversations", "DELETE", participant).status_code == 404
    state = sandbox.state("no_stripe")["twilio"]
    assert state["participations"] == 0
    assert state["conversation_deletions"] == [
        {
            "kind": "participant",
            "sid": conversation["participant_sid"],
            "conversation_sid": conversation["conversation_sid"],
            "webhook_enabled": "false",
        }
    ]
    assert (
        api.twilio(
            "conversations", "DELETE", f"/v1/Conversations/{conversation['conversation_sid']}"
        ).status_code
        == 204
    )
    kinds = [
        (d["kind"], d["webhook_enabled"])
        for d in sandbox.state("no_stripe")["twilio"]["conversation_deletions"]
    ]
    assert kinds == [("participant", "false"), ("conversation", None)]
    logged = [e.get("webhook_enabled") for e in sandbox.requests_log() if e["method"] == "DELETE"]
    assert logged == ["false", None, None]


def test_memory_deletion_takes_effect_after_a_delay(sandbox, api: Api):
    sandbox.reset(memory_delete_seconds=0.4)
    person = next(p for p in sandbox.people() if p["memory_profile_id"])
    profile = f"/Profiles/{person['memory_profile_id']}"
    lookup = {"idType": "email", "value": person["email"].upper()}
    assert api.memory("DELETE", profile).status_code == 202
    assert api.memory("GET", profile).status_code == 200  # still there: deletion is asynchronous
    assert api.memory("POST", "/Profiles/Lookup", json=lookup).json()["profiles"] == [
        person["memory_profile_id"]
    ]
    wait_for(lambda: api.memory("GET", profile).status_code == 404)
    assert api.memory("POST", "/Profiles/Lookup", json=lookup).json() == {
        "normalizedValue": person["email"],
        "profiles": [],
    }
    assert sandbox.state(person["key"])["memory"]["profile_present"] is False


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("+1 (415) 555-0123", "+14155550123"),
        ("415.555.0123", "+14155550123"),
        ("0044 7700 900123", "+447700900123"),
    ],
)
def test_memory_lookup_normalises_phone_numbers(sandbox, api: Api, raw: str, normalized: str):
    found = api.memory("POST", "/Profiles/Lookup", json={"idType": "phone", "value": raw})
    assert found.status_code == 200 and found.json()["normalizedValue"] == normalized


def test_memory_rejects_unknown_stores_and_malformed_ids(sandbox, api: Api):
    other_store = "mem_store_0" + "z" * 25
    response = api.twilio(
        "memory",
        "POST",
        f"/v1/Stores/{other_store}/Profiles/Lookup",
        json={"idType": "email", "value": "a@example.com"},
    )
    assert response.status_code == 404 and response.json()["code"] == 20404
    assert api.memory("GET", "/Profiles/not-a-profile-id").status_code == 400


class _SandboxHttpClient(TwilioHttpClient):
    """Sends twilio-python's ``https://<sub>.twilio.com`` requests to the sandbox instead."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url

    def request(self, method, url, *args, **kwargs):
        url = re.sub(r"^https://(api|conversations|memory)\.twilio\.com", rf"{self.base_url}/twilio/\1", url)
        return super().request(method, url, *args, **kwargs)


def test_twilio_python_sdk_talks_to_the_sandbox(sandbox, api: Api):
    person = sandbox.person("many_messages")
    client = Client(api.account_sid, TWILIO_SECRET, http_client=_SandboxHttpClient(sandbox.base_url))
    received = client.messages.list(to=person["phone"], page_size=50)
    assert len(received) == 65  # two pages, the second through next_page_uri
    assert client.messages(received[0].sid).delete() is True
    with pytest.raises(TwilioRestException) as gone:
        client.messages(received[0].sid).delete()
    assert gone.value.status == 404 and gone.value.code == 20404
    entries = client.conversations.v1.participant_conversations.list(address=person["phone"])
    assert entries and entries[0].participant_messaging_binding["address"] == person["phone"]
    assert client.conversations.v1.conversations(entries[0].conversation_sid).delete(
        x_twilio_webhook_enabled="false"
    )
    store = client.memory.v1.lookup(api.store_id)
    identifier = store.Identifier({"idType": "phone", "value": person["phone"]})
    assert store.create(identifier).profiles == [person["memory_profile_id"]]
