"""TwilioHook against the sandbox, through the real twilio-python SDK."""

from __future__ import annotations

import json
import time

import pytest

from gdpr_erasure.hooks import twilio as twilio_hook
from gdpr_erasure.hooks.errors import PermanentApiError, TransientApiError
from gdpr_erasure.hooks.retry import RetryPolicy
from gdpr_erasure.hooks.twilio import RoutingHttpClient, TwilioHook

FAST = RetryPolicy(max_attempts=8, base_delay=0.01, max_delay=0.05)


@pytest.fixture
def hook(api_connections):
    return TwilioHook(retry_policy=FAST)


def _person_with(sandbox, predicate):
    return next(p for p in sandbox.people() if predicate(p))


def test_memory_lookup_by_email_and_phone_finds_the_profile(hook, sandbox):
    person = _person_with(sandbox, lambda p: p["memory_profile_id"])
    assert hook.lookup_memory_profiles("email", person["email"]) == [person["memory_profile_id"]]
    assert hook.lookup_memory_profiles("phone", person["phone"]) == [person["memory_profile_id"]]
    assert hook.lookup_memory_profiles("email", "nobody@example.net") == []


def test_memory_delete_is_asynchronous_and_then_gone(hook, sandbox):
    person = _person_with(sandbox, lambda p: p["memory_profile_id"])
    profile_id = person["memory_profile_id"]
    assert hook.memory_profile_exists(profile_id)
    assert hook.delete_memory_profile(profile_id) == "deleted"
    deadline = time.monotonic() + 10
    while hook.memory_profile_exists(profile_id):
        assert time.monotonic() < deadline, "profile never disappeared"
        time.sleep(0.1)
    assert hook.lookup_memory_profiles("email", person["email"]) == []
    assert hook.delete_memory_profile(profile_id) == "already_absent"


def test_messages_to_and_from_are_listed_across_pages_and_deleted(hook, sandbox, monkeypatch):
    monkeypatch.setattr(twilio_hook, "PAGE_SIZE", 50)  # the seeded person fills one page of 1000
    person = sandbox.person("many_messages")
    before = sandbox.state("many_messages")["twilio"]["messages"]
    sids = hook.list_message_sids(person["phone"])
    assert len(sids) == before > 100  # more than one page of 50 each way
    assert len(set(sids)) == len(sids)
    assert hook.delete_message(sids[0]) == "deleted"
    assert hook.delete_message(sids[0]) == "already_absent"
    assert len(hook.list_message_sids(person["phone"])) == before - 1


def test_calls_recordings_and_transcriptions(hook, sandbox):
    person = sandbox.person("many_messages")
    calls = hook.list_call_sids(person["phone"])
    recordings = [r for c in calls for r in hook.list_recording_sids(c)]
    transcriptions = [t for r in recordings for t in hook.list_transcription_sids(r)]
    assert calls
    assert recordings
    assert transcriptions
    for sid in transcriptions:
        assert hook.delete_transcription(sid) == "deleted"
    for sid in recordings:
        assert hook.delete_recording(sid) == "deleted"
    for sid in calls:
        assert hook.delete_call(sid) == "deleted"
    state = sandbox.state("many_messages")["twilio"]
    assert (state["calls"], state["recordings"], state["transcriptions"]) == (0, 0, 0)


def test_conversations_are_deleted_without_webhooks(hook, sandbox):
    person = _person_with(sandbox, lambda p: sandbox.state(p["key"])["twilio"]["participations"] > 0)
    participations = hook.list_participant_conversations(address=person["phone"])
    assert participations
    assert set(participations[0]) == {
        "conversation_sid",
        "participant_sid",
        "chat_service_sid",
        "conversation_state",
    }
    for item in participations:
        assert hook.delete_conversation(item["chat_service_sid"], item["conversation_sid"]) == "deleted"
    assert hook.list_participant_conversations(address=person["phone"]) == []
    deletes = [r for r in sandbox.requests_log() if r["method"] == "DELETE" and "Conversations" in r["route"]]
    assert deletes
    assert all(r.get("webhook_enabled") == "false" for r in deletes), deletes


def test_conversations_are_found_and_deleted_in_every_service(hook, sandbox):
    """A conversation in a service other than the account's default is invisible to the
    default-service paths, and a delete there answers 404. Looked up in every service and
    deleted through its own service's path, it is really gone."""
    person = sandbox.person("other_service")
    services = hook.list_conversation_services()
    assert len(services) == 2
    found = hook.list_participant_conversations(
        address=person["phone"]
    ) + hook.list_participant_conversations(identity=person["email"])
    assert len(found) == 2
    other = {item["chat_service_sid"] for item in found}
    assert len(other) == 1 and other != {services[0]}

    # The default-service path does not know these conversations: 404, which is NOT "gone".
    conversations = hook.client.conversations.v1
    assert list(conversations.participant_conversations.list(address=person["phone"])) == []
    for item in found:
        assert hook._delete_without_webhooks("probe", f"/Conversations/{item['conversation_sid']}") == (
            "already_absent"
        )
    assert sandbox.state("other_service")["twilio"]["participations"] == 2  # still there

    for item in found:
        assert hook.delete_conversation(item["chat_service_sid"], item["conversation_sid"]) == "deleted"
    assert sandbox.state("other_service")["twilio"]["participations"] == 0
    assert hook.list_participant_conversations(address=person["phone"]) == []
    assert hook.list_participant_conversations(identity=person["email"]) == []
    # Deleting again through the owning path: 404 there does mean gone.
    assert hook.delete_conversation(found[0]["chat_service_sid"], found[0]["conversation_sid"]) == (
        "already_absent"
    )


def test_lists_ask_for_the_largest_page_the_api_allows(hook, sandbox):
    """One page per query for all but the longest histories: PageSize 1000 on the 2010 API's lists
    (1-1000), 50 on ParticipantConversations (1-50), each the spec's maximum."""
    person = sandbox.person("many_messages")
    sandbox.clear_requests_log()
    calls = hook.list_call_sids(person["phone"])
    assert hook.list_message_sids(person["phone"]) and calls
    hook.list_recording_sids(calls[0])
    hook.list_participant_conversations(
        address=person["phone"], chat_service_sids=hook.conversation_services()
    )
    sizes = {
        (r["route"].rsplit("/", 1)[-1], r["page_size"])
        for r in sandbox.requests_log()
        if r["method"] == "GET"
    }
    assert sizes >= {("Messages.json", 1000), ("Calls.json", 1000), ("Recordings.json", 1000)}
    assert ("ParticipantConversations", 50) in sizes
    messages = [r for r in sandbox.requests_log() if r["route"].endswith("/Messages.json")]
    assert len(messages) == 2  # To, then From: 65 each fit one page


def test_messages_and_calls_are_listed_one_direction_at_a_time(hook, sandbox):
    phone = sandbox.person("many_messages")["phone"]
    to, from_ = (hook.list_message_sids_by_direction(phone, d) for d in ("to", "from"))
    assert to and from_ and not set(to) & set(from_)
    assert hook.list_message_sids(phone) == to + from_
    calls = [hook.list_call_sids_by_direction(phone, d) for d in ("to", "from")]
    assert hook.list_call_sids(phone) == [sid for part in calls for sid in part]


def test_the_service_list_is_shared_for_a_minute_and_a_check_lists_afresh(api_connections, sandbox):
    """The account's Conversation Services are listed once for the requests of a batch (each
    builds its own hook); ``max_age=0`` and the preflight ask Twilio again."""
    first = TwilioHook(retry_policy=FAST).conversation_services(max_age=0)
    sandbox.clear_requests_log()
    for _ in range(3):
        assert TwilioHook(retry_policy=FAST).conversation_services() == first
    listed = lambda: [r for r in sandbox.requests_log() if r["route"] == "/v1/Services"]  # noqa: E731
    assert listed() == []
    assert TwilioHook(retry_policy=FAST).conversation_services(max_age=0) == first
    assert len(listed()) == 1
    assert TwilioHook(retry_policy=FAST).test_connection()[0]
    assert len(listed()) == 2


def test_unknown_conversation_service_is_an_error_not_an_absence(hook):
    with pytest.raises(PermanentApiError):
        hook.list_participant_conversations(address="+14155550199", chat_service_sids=["IS" + "0" * 32])


def test_phone_without_history_lists_nothing(hook, sandbox):
    phone = sandbox.person("quiet_phone")["phone"]
    assert hook.list_message_sids(phone) == []
    assert hook.list_call_sids(phone) == []


def test_rate_limit_20429_is_retried(hook, sandbox):
    sandbox.set_faults({"twilio": {"rate_429": 0.6, "retry_after": 0}})
    phone = sandbox.person("person-002")["phone"]
    expected = sandbox.state("person-002")["twilio"]["messages"]
    for _ in range(3):
        assert len(hook.list_message_sids(phone)) == expected
    assert 429 in [r["status"] for r in sandbox.requests_log()]


def test_retry_after_reaches_the_error(api_connections, sandbox):
    sandbox.set_faults({"twilio": {"rate_429": 1.0, "retry_after": 3}})
    hook = TwilioHook(retry_policy=RetryPolicy(max_attempts=1))
    with pytest.raises(TransientApiError) as info:
        hook.delete_message("SM" + "1" * 32)
    assert (info.value.status, info.value.code, info.value.retry_after) == (429, 20429, 3.0)


def test_bad_credentials_are_permanent(api_connections, monkeypatch):
    import json

    conn = dict(api_connections["twilio_default"], login="not-a-sid")
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", json.dumps(conn))
    hook = TwilioHook(retry_policy=FAST)
    hook.account_sid = "AC" + "0" * 32  # the login is wrong on purpose
    with pytest.raises(PermanentApiError) as info:
        hook.list_message_sids("+14155550100")
    assert info.value.status == 401
    assert "4155550100" not in str(info.value)


def test_routing_client_only_rewrites_when_a_base_is_set():
    class Capture(RoutingHttpClient):
        def __init__(self, base):
            super().__init__(base)
            self.urls = []

    pattern_base = Capture("http://127.0.0.1:1/twilio")
    from gdpr_erasure.hooks.twilio import _TWILIO_HOST

    match = _TWILIO_HOST.match("https://memory.twilio.com/v1/Stores/x/Profiles/Lookup")
    assert match["sub"] == "memory"
    assert match["path"] == "/v1/Stores/x/Profiles/Lookup"
    assert pattern_base.base_url == "http://127.0.0.1:1/twilio"
    assert RoutingHttpClient(None).base_url is None


def test_test_connection_passes_against_the_sandbox(hook):
    ok, message = hook.test_connection()
    assert ok, message
    assert "account AC" in message and "Memory store" in message and "2 Conversation Service(s)" in message


def test_test_connection_names_refused_credentials(api_connections, monkeypatch):
    conn = dict(api_connections["twilio_default"], login="AC" + "0" * 32)
    conn["extra"] = dict(conn["extra"], account_sid="AC" + "0" * 32)
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", json.dumps(conn))
    ok, message = TwilioHook(retry_policy=RetryPolicy(max_attempts=1)).test_connection()
    assert not ok
    assert "refused" in message and "sandbox-auth-token" not in message


def test_an_api_key_is_checked_without_reading_the_account(api_connections, monkeypatch, sandbox):
    """Standard API keys may not read /Accounts on Twilio: the check lists one message instead."""
    conn = dict(api_connections["twilio_default"], login="SK" + "1" * 32)
    conn["extra"] = dict(conn["extra"], account_sid=sandbox.accounts()["twilio"]["account_sid"])
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", json.dumps(conn))
    sandbox.clear_requests_log()
    ok, message = TwilioHook().test_connection()
    assert ok, message
    assert "API key accepted" in message
    assert not [r for r in sandbox.requests_log() if r["route"].endswith("/Accounts/{Sid}.json")]


def test_a_404_without_twilios_code_is_not_absence(api_connections, monkeypatch, sandbox):
    """A 404 that is not Twilio's 20404 (here: a base URL that points at nothing) must fail the
    call, not read as "no profile" or "already deleted"."""
    conn = dict(api_connections["twilio_default"])
    conn["extra"] = dict(conn["extra"], api_base=f"{sandbox.base_url}/nowhere")
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", json.dumps(conn))
    hook = TwilioHook(retry_policy=RetryPolicy(max_attempts=1))
    with pytest.raises(PermanentApiError) as info:
        hook.lookup_memory_profiles("phone", "+14155550199")
    assert info.value.status == 404
    with pytest.raises(PermanentApiError):
        hook.delete_message("SM" + "0" * 32)
