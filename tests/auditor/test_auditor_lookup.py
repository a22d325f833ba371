""" "Was this person erased?" over real HTTP on a real store (SQLite, and PostgreSQL when
GDPR_TEST_PG_URL is set): found by email and by phone in other spellings, "no record" otherwise,
POST only, permission-checked, rate limited, guarded against cross-site forms, and what was
entered never comes back, in an answer, an error or a log line."""

from __future__ import annotations

import logging
import re

import pytest
import requests
from auditor import auditor_support
from auditor.auditor_support import november, seed_request, serve
from fastapi import Request
from store_backends import backends, throwaway_database

from gdpr_erasure.auditor import lookup
from gdpr_erasure.auditor.app import create_app
from gdpr_erasure.auditor.lookup import RateLimiter, csrf_token
from gdpr_erasure.hashing import load_hash_key
from gdpr_erasure.identifiers import SubjectIdentifiers
from gdpr_erasure.store import ComplianceStore

PEOPLE = {
    "req-email": {"email": "Jane.Doe@Example.com"},
    "req-phone": {"phone": "+442079460958"},
    "req-both": {"email": "sam.o@example.net", "phone": "+14155550123"},
}
#: A record written before records carried each identifier's own hash.
OLD = ("req-old", {"email": "old.timer@example.org", "phone": "+33142685300"})
#: What the tests type, in spellings other than the intake stored (case, spaces, brackets).
TYPED = [
    "JANE.DOE@EXAMPLE.COM",
    "jane.doe@example.com",
    "Jane.Doe@Example.com",
    "+44 20 7946 0958",
    "+44 (20) 7946-0958",
    "+442079460958",
    "442079460958",
    "sam.o@example.net",
    "+1 415 555 0123",
    "+14155550123",
    "nobody@example.org",
    "not-an-email",
    "+1 (415) 555-0000",
]


def header_user(request: Request) -> str:
    """The permission check stand-in: every caller may read, named by an ``X-User`` header."""
    return request.headers.get("x-user", "auditor")


@pytest.fixture(params=backends())
def store(request, tmp_path):
    with throwaway_database(request.param, tmp_path, prefix="gdpr_lookup") as url:
        store = ComplianceStore.from_url(url)
        store.init_db()
        key = load_hash_key()
        for day, (request_id, given) in enumerate(PEOPLE.items(), start=2):
            seed_request(store, key, request_id, SubjectIdentifiers.parse(**given), received_at=november(day))
        seed_request(
            store,
            key,
            OLD[0],
            SubjectIdentifiers.parse(**OLD[1]),
            received_at=november(9),
            per_identifier=False,
        )
        try:
            yield store
        finally:
            store.dispose()


@pytest.fixture
def site(store):
    app = create_app(store_factory=lambda: store, user_dependency=header_user, lookups_per_minute=100)
    with serve(app, log_level="debug", access_log=True) as url:
        yield url


def ask(url: str, user: str = "auditor", **form: str) -> requests.Response:
    """A lookup as the page's form sends it (same-origin POST, urlencoded)."""
    headers = {"Origin": url, "X-User": user}
    return requests.post(f"{url}/lookup", data=form, headers=headers, timeout=30)


def found(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return re.findall(r'<tr data-request-id="([^"]+)">', response.text)


def assert_not_echoed(text: str) -> None:
    lowered = text.lower()
    for typed in TYPED:
        assert typed.lower() not in lowered, typed


def test_an_erased_person_is_found_by_email_in_another_case(site):
    answer = ask(site, email="JANE.DOE@EXAMPLE.COM")
    assert found(answer) == ["req-email"]
    assert "Erased: 1 record(s) match the email entered." in answer.text
    assert '<a href="request/req-email">req-email</a>' in answer.text
    assert answer.headers["cache-control"] == "no-store"
    assert 'name="email" id="lookup-email" autocomplete="off">' in answer.text  # the form, empty
    assert_not_echoed(answer.text)


@pytest.mark.parametrize("phone", ["+44 20 7946 0958", "+44 (20) 7946-0958", " +442079460958\n"])
def test_an_erased_person_is_found_by_phone_spelled_otherwise(site, phone):
    answer = ask(site, phone=phone)
    assert found(answer) == ["req-phone"]
    assert_not_echoed(answer.text)


def test_a_person_is_found_by_any_one_identifier_their_request_gave(site):
    """Records carry each identifier's own keyed hash: the email alone, or the phone alone, finds
    a request that gave both."""
    assert found(ask(site, email="sam.o@example.net", phone="+1 415 555 0123")) == ["req-both"]
    assert found(ask(site, email="SAM.O@example.net")) == ["req-both"]
    assert found(ask(site, phone="+1 (415) 555-0123")) == ["req-both"]
    # Two people's identifiers together: each is found.
    both = ask(site, email="jane.doe@example.com", phone="+44 20 7946 0958")
    assert sorted(found(both)) == ["req-email", "req-phone"]


def test_an_older_record_is_found_only_by_every_identifier_it_gave(site):
    """A record written before per-identifier hashes holds one hash over all the identifiers:
    each combination of what is entered is tried, so it is found when all of them are entered."""
    alone = ask(site, email=OLD[1]["email"])
    assert found(alone) == []
    assert "No record" in alone.text
    assert found(ask(site, email=OLD[1]["email"], phone="+33 1 42 68 53 00")) == ["req-old"]


def test_anyone_else_has_no_record(site):
    answer = ask(site, email="nobody@example.org", phone="+1 (415) 555-0000")
    assert found(answer) == []
    assert 'id="lookup-result">No record: no erasure in the ledger matches the email and phone entered.' in (
        answer.text
    )
    assert_not_echoed(answer.text)


def test_what_is_not_an_identifier_is_refused_by_field_never_echoed(site):
    bad = ask(site, email="not-an-email")
    assert bad.status_code == 400
    assert "email: not a valid email address" in bad.text
    assert_not_echoed(bad.text)
    empty = ask(site, email="  ", phone="")
    assert empty.status_code == 400
    assert "enter an email address or a phone number" in empty.text
    big = ask(site, email="a" * 5000 + "@example.com")
    assert big.status_code == 413
    assert "aaaa" not in big.text


def test_get_is_refused(site):
    for params in ({"email": "jane.doe@example.com"}, {}):
        response = requests.get(f"{site}/lookup", params=params, timeout=10)
        assert response.status_code == 405
        assert_not_echoed(response.text)


def test_lookups_are_rate_limited_per_user(store):
    app = create_app(store_factory=lambda: store, user_dependency=header_user, lookups_per_minute=3)
    with serve(app) as url:
        assert [ask(url, email="jane.doe@example.com").status_code for _ in range(3)] == [200] * 3
        refused = ask(url, email="jane.doe@example.com")
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 20  # three a minute: one every 20 s
        assert "too many lookups: 3 a minute" in refused.text
        assert_not_echoed(refused.text)
        assert found(ask(url, user="another-auditor", email="jane.doe@example.com")) == ["req-email"]


def test_the_bucket_refills_evenly():
    now = [1000.0]
    bucket = RateLimiter(per_minute=10, clock=lambda: now[0])
    assert [bucket.take("ada") for _ in range(10)] == [0] * 10
    assert bucket.take("ada") == 6  # one lookup every 6 s
    now[0] += 6
    assert bucket.take("ada") == 0
    assert bucket.take("ada") == 6
    assert bucket.take("bob") == 0


def test_a_cookie_session_needs_a_same_origin_form_with_its_token(site):
    """A browser sends the session cookie with a cross-site POST too: such a form needs this
    server's Origin (or Referer) and the token the page put into it."""
    cookies = {"_token": "a-session-jwt"}
    token = csrf_token("a-session-jwt")
    page = requests.get(f"{site}/", cookies=cookies, timeout=30).text
    assert f'name="csrf" value="{token}"' in page

    def post(headers: dict[str, str], **form: str) -> requests.Response:
        data = {"email": "jane.doe@example.com", **form}
        return requests.post(f"{site}/lookup", data=data, headers=headers, cookies=cookies, timeout=30)

    assert found(post({"Origin": site}, csrf=token)) == ["req-email"]
    assert found(post({"Referer": f"{site}/"}, csrf=token)) == ["req-email"]
    for headers, form, reason in [
        ({"Origin": "https://evil.example"}, {"csrf": token}, "sent from another site"),
        ({"Referer": "https://evil.example/page"}, {"csrf": token}, "sent from another site"),
        ({}, {"csrf": token}, "neither Origin nor Referer"),
        ({"Origin": site}, {}, "out of date or not from this page"),
        ({"Origin": site}, {"csrf": csrf_token("another-session")}, "out of date or not from this page"),
    ]:
        refused = post(headers, **form)
        assert refused.status_code == 403, (headers, form)
        assert reason in refused.text
        assert "req-email" not in refused.text
    # A bearer token without a cookie is not a browser acting for someone: no Origin needed.
    bearer = requests.post(f"{site}/lookup", data={"email": "jane.doe@example.com"}, timeout=30)
    assert found(bearer) == ["req-email"]


def test_without_the_hash_key_the_lookup_says_what_to_set(site, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_GDPR_HASH_KEY")
    answer = ask(site, email="jane.doe@example.com")
    assert answer.status_code == 503
    assert "lookups need the identifier hash key" in answer.text
    assert "gdpr_hash_key" in answer.text
    assert_not_echoed(answer.text)


def test_nothing_entered_reaches_a_log_or_an_error(site, store, caplog, capfd, monkeypatch):
    """Every kind of answer, with uvicorn's access log on and every logger at DEBUG: what was
    typed shows in no log line, no response, no exception. An exception whose text carries the
    input (as a careless one could) is answered and logged by its type only."""
    caplog.set_level(logging.DEBUG)
    responses = [
        ask(site, email="JANE.DOE@EXAMPLE.COM"),
        ask(site, phone="+44 (20) 7946-0958"),
        ask(site, email="nobody@example.org", phone="+1 (415) 555-0000"),
        ask(site, email="not-an-email"),
        ask(site, email="sam.o@example.net", phone="+1 415 555 0123"),
        requests.get(f"{site}/lookup", params={"email": "jane.doe@example.com"}, timeout=10),
    ]

    def leaky_hash(key, identifiers):
        raise RuntimeError(f"cannot hash {identifiers.email} / {identifiers.phone}")

    monkeypatch.setattr(lookup, "identifiers_hash", leaky_hash)
    failed = ask(site, email="Jane.Doe@Example.com", phone="+44 20 7946 0958")
    assert failed.status_code == 500
    assert "The lookup failed; nothing entered was kept." in failed.text
    assert [r.status_code for r in responses] == [200, 200, 200, 400, 200, 405]
    for response in [*responses, failed]:
        assert_not_echoed(response.text)
    assert "auditor lookup failed (RuntimeError)" in caplog.text
    captured = capfd.readouterr()
    logged = caplog.text + captured.out + captured.err
    assert "POST /lookup" in logged  # the access log was on, and wrote each request
    for typed in TYPED:
        assert typed.lower() not in logged.lower(), typed


def test_only_users_who_may_read_the_audit_may_look_up(tmp_path, monkeypatch, airflow_db):
    """The page's own permission check (Airflow's auth manager through ``user_dependency``): a
    signed-in viewer is refused (403), an auditor is answered."""
    store = ComplianceStore.from_url(f"sqlite:///{tmp_path / 'compliance.db'}")
    store.init_db()
    seed_request(
        store,
        load_hash_key(),
        "req-email",
        SubjectIdentifiers.parse(**PEOPLE["req-email"]),
        received_at=november(2),
    )
    app = create_app(store_factory=lambda: store)
    with auditor_support.airflow_site(tmp_path, monkeypatch, app) as (url, login, _):
        endpoint = f"{url}/gdpr-audit/lookup"
        form = {"email": "jane.doe@example.com"}
        assert requests.post(endpoint, data=form, timeout=10).status_code == 401
        for user in ("vera", "uma", "otto"):
            refused = requests.post(
                endpoint, data=form, headers={"Authorization": f"Bearer {login(user)}"}, timeout=10
            )
            assert refused.status_code == 403, user
            assert "may not read the GDPR audit ledger" in refused.text
            assert_not_echoed(refused.text)
        token = login("audrey")
        assert found(
            requests.post(endpoint, data=form, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        ) == ["req-email"]
        # As the UI sends it: the cookie, the page's Origin and the token from its form.
        page = requests.get(f"{url}/gdpr-audit/", cookies={"_token": token}, timeout=30).text
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
        answer = requests.post(
            endpoint,
            data={**form, "csrf": csrf},
            headers={"Origin": url},
            cookies={"_token": token},
            timeout=10,
        )
        assert found(answer) == ["req-email"]
    store.dispose()
