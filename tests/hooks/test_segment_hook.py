"""SegmentHook (providers-http HttpHook underneath) against the sandbox."""

from __future__ import annotations

import json
import time

import pytest
from requests import Session

from gdpr_erasure.hooks.errors import ApiConfigurationError, PermanentApiError, TransientApiError
from gdpr_erasure.hooks.retry import RetryPolicy
from gdpr_erasure.hooks.segment import SegmentApiHttpHook, SegmentHook

FAST = RetryPolicy(max_attempts=8, base_delay=0.01, max_delay=0.05)


@pytest.fixture
def hook(api_connections):
    return SegmentHook(retry_policy=FAST)


@pytest.mark.parametrize("id_type", ["email", "phone", "user_id"])
def test_profile_found_by_each_identifier(hook, sandbox, id_type):
    person = sandbox.person("person-002")
    value = {"email": person["email"], "phone": person["phone"], "user_id": person["segment_user_id"]}[
        id_type
    ]
    profile = hook.get_profile(id_type, value)
    assert profile.segment_id == person["segment_id"]
    assert profile.ids_of_type("user_id") == [person["segment_user_id"]]


def test_missing_profile_is_none(hook, sandbox):
    assert hook.get_profile("email", sandbox.person("no_segment")["email"]) is None
    assert hook.profile_exists("user_id", "nobody-at-all") is False


def test_regulation_moves_to_finished_and_the_profile_goes(hook, sandbox):
    person = sandbox.person("person-003")
    regulation_id = hook.create_regulation([person["segment_user_id"]])
    first = hook.get_regulation(regulation_id)
    assert first["overallStatus"] in ("INITIALIZED", "RUNNING")
    deadline = time.monotonic() + 15
    while (status := hook.get_regulation(regulation_id)["overallStatus"]) != "FINISHED":
        assert status in ("INITIALIZED", "RUNNING"), status
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert hook.get_profile("user_id", person["segment_user_id"]) is None


def test_unknown_regulation_is_none(hook):
    assert hook.get_regulation("2aBcDeFgHiJkLmNoPqRsTuVwXyZ") is None


def test_failed_regulation_reports_stream_status(hook, sandbox):
    person = sandbox.person("segment_failed")
    regulation_id = hook.create_regulation([person["segment_user_id"]])
    deadline = time.monotonic() + 15
    while (regulation := hook.get_regulation(regulation_id))["overallStatus"] in ("INITIALIZED", "RUNNING"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert regulation["overallStatus"] == "FAILED"
    assert regulation["streamStatus"]


def test_invalid_regulation_is_a_permanent_error(hook):
    with pytest.raises(ValueError, match="at least one"):
        hook.create_regulation([])
    with pytest.raises(PermanentApiError) as info:
        hook.create_regulation(["u1"], regulation_type="ERASE_EVERYTHING")
    assert info.value.status in (400, 422)


def test_rate_limits_and_server_errors_are_retried(hook, sandbox):
    sandbox.set_faults({"segment": {"rate_429": 0.4, "rate_5xx": 0.3, "retry_after": 0}})
    person = sandbox.person("person-004")
    for _ in range(4):
        assert hook.get_profile("email", person["email"]).segment_id == person["segment_id"]
    statuses = {r["status"] for r in sandbox.requests_log()}
    assert 429 in statuses
    assert statuses & {500, 503}


def test_retry_after_reaches_the_error_without_the_email(api_connections, sandbox):
    sandbox.set_faults({"segment": {"rate_429": 1.0, "retry_after": 4}})
    email = sandbox.person("person-004")["email"]
    with pytest.raises(TransientApiError) as info:
        SegmentHook(retry_policy=RetryPolicy(max_attempts=1)).get_profile("email", email)
    assert (info.value.status, info.value.retry_after) == (429, 4.0)
    assert email not in str(info.value)


def test_connection_errors_do_not_leak_the_url(api_connections, monkeypatch):
    conn = dict(api_connections["segment_default"])
    conn["extra"] = dict(conn["extra"], profile_api_url="http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AIRFLOW_CONN_SEGMENT_DEFAULT", json.dumps(conn))
    with pytest.raises(TransientApiError) as info:
        SegmentHook(retry_policy=RetryPolicy(max_attempts=2, base_delay=0.01)).get_profile(
            "email", "x.y@example.com"
        )
    assert "example.com" not in str(info.value)
    assert "ConnectionError" in str(info.value)


def test_our_settings_are_not_sent_as_http_headers(api_connections):
    hook = SegmentApiHttpHook("public", "GET", "segment_default")
    session = hook.get_conn()
    assert isinstance(session, Session)
    assert not {"space_id", "profile_api_token", "profile_api_url"} & {h.lower() for h in session.headers}
    assert hook.base_url.endswith("/segment/api")
    profiles = SegmentApiHttpHook("profiles", "GET", "segment_default")
    profiles.get_conn()
    assert profiles.base_url.endswith("/segment/profiles")


def test_one_session_serves_the_calls_of_a_thread(api_connections, sandbox, monkeypatch):
    """providers-http's ``HttpHook.run`` builds a ``requests.Session`` (a new connection, with
    TLS a new handshake) per call; the Segment hooks of a thread share one per API instead, and
    a thread of a batch gets its own."""
    import threading

    import requests

    built: list[int] = []
    original = requests.Session.__init__

    def counting(self, *args, **kwargs):
        built.append(threading.get_ident())
        original(self, *args, **kwargs)

    person = sandbox.person("person-002")
    SegmentHook(retry_policy=FAST).get_profile("email", person["email"])  # this thread's session
    monkeypatch.setattr(requests.Session, "__init__", counting)
    for _ in range(3):  # a hook per request, as the operators build them
        hook = SegmentHook(retry_policy=FAST)
        assert hook.get_profile("email", person["email"]).segment_id == person["segment_id"]
        assert hook.get_profile("user_id", "nobody-at-all") is None
    assert built == []
    other = threading.Thread(
        target=lambda: SegmentHook(retry_policy=FAST).get_profile("phone", person["phone"])
    )
    other.start()
    other.join()
    assert len(built) == 1 and built[0] != threading.get_ident()


def test_a_changed_connection_gets_a_new_session(api_connections, sandbox, monkeypatch):
    person = sandbox.person("person-002")
    before = SegmentHook(retry_policy=FAST)._http("profiles", "GET")
    assert SegmentHook(retry_policy=FAST)._http("profiles", "GET") is before
    hook = _segment_extra(monkeypatch, api_connections, profile_api_url=f"{sandbox.base_url}/nowhere")
    assert hook._http("profiles", "GET") is not before
    with pytest.raises(PermanentApiError):
        hook.get_profile("email", person["email"])


def _segment_extra(monkeypatch, api_connections, **extra):
    conn = dict(api_connections["segment_default"])
    conn["extra"] = dict(conn["extra"], **extra)
    monkeypatch.setenv("AIRFLOW_CONN_SEGMENT_DEFAULT", json.dumps(conn))
    return SegmentHook(retry_policy=FAST)


def test_the_phone_lookup_uses_the_spaces_external_id_type(api_connections, sandbox, monkeypatch):
    """The phone type is a per-space setting. The sandbox space keeps phones as ``phone``; a
    connection configured for ``phone_number`` finds nothing there, which is why the preflight
    proves the configured types on a known profile before a run."""
    person = sandbox.person("person-002")
    assert _segment_extra(monkeypatch, api_connections, phone_id_type="phone").get_profile(
        "phone", person["phone"]
    )
    assert (
        _segment_extra(monkeypatch, api_connections, phone_id_type="phone_number").get_profile(
            "phone", person["phone"]
        )
        is None
    )
    ok, message = _segment_extra(monkeypatch, api_connections, phone_id_type="phone_number").test_connection()
    assert not ok and "phone_id_type=phone_number" in message


def test_an_id_type_that_cannot_be_one_is_a_configuration_error(api_connections, monkeypatch):
    hook = _segment_extra(monkeypatch, api_connections, email_id_type="e mail/../x")
    with pytest.raises(ApiConfigurationError):
        hook.get_profile("email", "x.y@example.com")


def test_a_404_that_is_not_segments_not_found_is_not_no_profile(api_connections, sandbox, monkeypatch):
    """A Profile API URL that points elsewhere answers 404 with another body: that must fail
    loud, never read as "this person has no Segment profile"."""
    hook = _segment_extra(monkeypatch, api_connections, profile_api_url=f"{sandbox.base_url}/nowhere")
    with pytest.raises(PermanentApiError) as info:
        hook.get_profile("email", "x.y@example.com")
    assert info.value.status == 404
    assert "example.com" not in str(info.value)


def test_test_connection_passes_against_the_sandbox(hook):
    ok, message = hook.test_connection()
    assert ok, message
    assert message.count("ok:") == 4  # tokens, id types and the call budget
