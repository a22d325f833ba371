"""The intake over real HTTP (uvicorn on 127.0.0.1), on SQLite and PostgreSQL: accepted requests,
idempotency, OpenDSR, status, every rejection, rotation, replay, and what the logs say."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta

import pytest
import requests
from intake_support import (
    CUSTOMER,
    EMAIL,
    OLD_SECRET,
    OTHER_SECRET,
    PHONE,
    SECRET,
    USER_ID,
    ThreadedServer,
    assert_no_identifiers,
    connection_json,
    encode,
    get,
    native,
    opendsr,
    post,
    signed_headers,
)
from support.intake import CONTROLLER_ID

from gdpr_erasure.hashing import identifiers_hash, load_hash_key
from gdpr_erasure.identifiers import SubjectIdentifiers
from gdpr_erasure.intake.app import create_app
from gdpr_erasure.intake.settings import IntakeSettings
from gdpr_erasure.intake.signature import SIGNATURE_HEADER, signature_header
from gdpr_erasure.store import RequestStatus


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


# -- accepted ------------------------------------------------------------------------------------


def test_native_request_is_accepted_stored_and_answered_without_identifiers(intake):
    before = time.time()
    response = post(intake.url, native("req-1", email=EMAIL, phone=PHONE, stripe_customer_id=CUSTOMER))

    assert response.status_code == 202
    assert response.headers["content-type"] == "application/json"
    assert response.headers["Location"] == "/v1/requests/req-1"
    assert "Idempotent-Replayed" not in response.headers
    body = response.json()
    assert set(body) == {"request_id", "status", "received_at", "expected_completion_at", "completed_at"}
    assert body["request_id"] == "req-1"
    assert body["status"] == "pending"
    assert body["completed_at"] is None
    received = _time(body["received_at"])
    assert abs(received.timestamp() - before) < 5
    assert _time(body["expected_completion_at"]) - received == timedelta(days=30)
    assert_no_identifiers(response.text, "the answer")

    stored = intake.store.get("req-1")
    assert stored.source == "webhook"
    assert stored.identifiers == SubjectIdentifiers.parse(
        email=EMAIL, phone=PHONE, stripe_customer_id=CUSTOMER
    )
    assert stored.identifiers.email_as_given == EMAIL  # the caller's spelling, for Stripe's lookup
    assert intake.rows() == 1


def test_same_request_id_again_gives_the_same_answer_and_no_second_row(intake):
    first = post(intake.url, native("req-1"))
    again = post(intake.url, native("req-1", phone=PHONE, email=EMAIL.upper()))  # same person

    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert intake.rows() == 1


def test_replayed_signed_request_within_tolerance_is_idempotent(intake):
    """The rule: a byte-identical replay (same body, same signature, same t) inside the tolerance
    window is harmless - it names the same request id, so it gets the same answer, stores nothing."""
    body = encode(native("req-replay"))
    headers = signed_headers(body)
    answers = [
        requests.post(f"{intake.url}/v1/requests", data=body, headers=headers, timeout=10) for _ in range(3)
    ]

    assert [a.status_code for a in answers] == [202, 202, 202]
    assert answers[1].json() == answers[2].json() == answers[0].json()
    assert intake.rows() == 1


def test_replay_outside_the_tolerance_window_is_refused(intake):
    body = encode(native("req-old"))
    headers = signed_headers(body, timestamp=int(time.time()) - 301)

    response = requests.post(f"{intake.url}/v1/requests", data=body, headers=headers, timeout=10)

    assert response.status_code == 401
    assert response.json()["code"] == "timestamp_outside_tolerance"
    assert intake.rows() == 0


def test_same_request_id_with_other_identifiers_is_a_conflict_that_reveals_nothing(intake):
    assert post(intake.url, native("req-1", email=EMAIL)).status_code == 202

    response = post(intake.url, native("req-1", email="someone.else@example.net"))

    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "request_id_conflict"
    assert "someone.else" not in response.text
    assert_no_identifiers(response.text, "the conflict answer")
    assert intake.store.get("req-1").identifiers.email == EMAIL.lower()  # first request kept
    assert intake.rows() == 1


def test_repeat_of_a_completed_request_is_recognised_by_its_keyed_hash(intake):
    ids = SubjectIdentifiers.parse(email=EMAIL, phone=PHONE)
    assert post(intake.url, native("req-done", email=EMAIL, phone=PHONE)).status_code == 202
    intake.store.claim(1, "test-run")
    intake.store.transition("req-done", RequestStatus.COMPLETED)
    assert intake.store.erase_identifiers("req-done", identifiers_hash(load_hash_key(), ids))
    assert intake.store.get("req-done").identifiers is None

    same = post(intake.url, native("req-done", email=EMAIL, phone=PHONE))
    other = post(intake.url, native("req-done", email=EMAIL))

    assert same.status_code == 202
    assert same.headers["Idempotent-Replayed"] == "true"
    assert same.json()["status"] == "completed"
    assert same.json()["completed_at"] is not None
    assert other.status_code == 409
    assert other.json()["code"] == "request_id_conflict"
    assert intake.rows() == 1


def test_opendsr_request_in_and_answers_in_kind(intake):
    identities = [
        ("email", EMAIL),
        ("phone_number", PHONE),
        ("controller_customer_id", USER_ID),
        ("stripe_customer_id", CUSTOMER),
    ]
    response = post(intake.url, opendsr("a7551968-d5d6-44b2-9831-815ac9017798", identities))

    assert response.status_code == 202
    body = response.json()
    assert set(body) == {
        "controller_id",
        "subject_request_id",
        "request_status",
        "received_time",
        "expected_completion_time",
        "api_version",
    }
    assert body["controller_id"] == CONTROLLER_ID  # from the connection's extra
    assert body["subject_request_id"] == "a7551968-d5d6-44b2-9831-815ac9017798"
    assert body["request_status"] == "pending"
    assert body["api_version"] == "2.0"
    assert _time(body["expected_completion_time"]) - _time(body["received_time"]) == timedelta(days=30)
    assert_no_identifiers(response.text, "the OpenDSR answer")
    stored = intake.store.get("a7551968-d5d6-44b2-9831-815ac9017798")
    assert stored.source == "opendsr"
    assert stored.identifiers == SubjectIdentifiers.parse(
        email=EMAIL, phone=PHONE, stripe_customer_id=CUSTOMER, user_id=USER_ID
    )

    status = get(intake.url, "a7551968-d5d6-44b2-9831-815ac9017798")
    assert status.status_code == 200
    assert status.json() == body  # GET answers in the shape the request came in


def test_get_gives_status_and_due_date_never_identifiers(intake):
    accepted = post(intake.url, native("req-1", email=EMAIL, user_id=USER_ID)).json()

    pending = get(intake.url, "req-1")
    assert pending.status_code == 200
    assert pending.json() == accepted
    intake.store.claim(1, "test-run")
    in_progress = get(intake.url, "req-1")

    assert in_progress.json()["status"] == "in_progress"
    assert in_progress.json()["expected_completion_at"] == accepted["expected_completion_at"]
    assert_no_identifiers(pending.text + in_progress.text, "the status answers")


def test_opendsr_status_maps_internal_states(intake):
    post(intake.url, opendsr("dsr-1"))
    intake.store.claim(1, "test-run")
    intake.store.transition("dsr-1", RequestStatus.FAILED, error="test")

    assert get(intake.url, "dsr-1").json()["request_status"] == "in_progress"  # retried later


def test_get_unknown_request_is_404(intake):
    response = get(intake.url, "no-such-request")
    assert response.status_code == 404
    assert response.json()["code"] == "request_not_found"


def test_get_signature_is_bound_to_the_path(intake):
    post(intake.url, native("req-a"))
    post(intake.url, native("req-b"))
    header = signature_header(SECRET, b"GET /v1/requests/req-a")

    stolen = requests.get(f"{intake.url}/v1/requests/req-b", headers={SIGNATURE_HEADER: header}, timeout=10)
    own = requests.get(f"{intake.url}/v1/requests/req-a", headers={SIGNATURE_HEADER: header}, timeout=10)

    assert stolen.status_code == 401
    assert stolen.json()["code"] == "invalid_signature"
    assert own.status_code == 200


# -- authentication ------------------------------------------------------------------------------


def _raw_post(intake, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(f"{intake.url}/v1/requests", data=body, headers=headers, timeout=10)


BODY = encode(native("req-auth"))


# Headers are built when the test runs, not at collection: a signature made at collection time
# is older than the 300 s tolerance by the time a long suite reaches this test, and the
# timestamp check (which comes first) would answer instead of the one under test.
@pytest.mark.parametrize(
    ("headers", "code"),
    [
        pytest.param(lambda: {"Content-Type": "application/json"}, "missing_signature", id="missing"),
        pytest.param(
            lambda: {"Content-Type": "application/json", SIGNATURE_HEADER: ""},
            "missing_signature",
            id="empty",
        ),
        pytest.param(
            lambda: {"Content-Type": "application/json", SIGNATURE_HEADER: "sha256=abc"},
            "malformed_signature",
            id="garbage",
        ),
        pytest.param(
            lambda: {"Content-Type": "application/json", SIGNATURE_HEADER: f"t={int(time.time())}"},
            "malformed_signature",
            id="no-v1",
        ),
        pytest.param(
            lambda: {"Content-Type": "application/json", SIGNATURE_HEADER: f"t=now,v1={'0' * 64}"},
            "malformed_signature",
            id="bad-t",
        ),
        pytest.param(lambda: signed_headers(BODY, OTHER_SECRET), "invalid_signature", id="unknown-secret"),
        pytest.param(lambda: signed_headers(BODY + b" "), "invalid_signature", id="other-body"),
        pytest.param(
            lambda: signed_headers(BODY, timestamp=int(time.time()) + 3600),
            "timestamp_outside_tolerance",
            id="future",
        ),
        pytest.param(
            lambda: signed_headers(BODY, timestamp=int(time.time()) - 3600),
            "timestamp_outside_tolerance",
            id="stale",
        ),
    ],
)
def test_unauthenticated_posts_are_401_and_store_nothing(intake, headers, code):
    response = _raw_post(intake, BODY, headers())

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    assert intake.rows() == 0


def test_timestamp_must_be_signed(intake):
    """Moving ``t`` forward (to dodge the tolerance) breaks the signature."""
    old = int(time.time()) - 1000
    header = signature_header(SECRET, BODY, old).replace(f"t={old}", f"t={int(time.time())}")

    response = _raw_post(intake, BODY, {"Content-Type": "application/json", SIGNATURE_HEADER: header})

    assert response.json()["code"] == "invalid_signature"
    assert intake.rows() == 0


def test_rotation_old_secret_accepted_while_listed_refused_after_removal(intake, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_GDPR_INTAKE", connection_json(SECRET, previous=[OLD_SECRET]))
    assert post(intake.url, native("rot-1"), OLD_SECRET).status_code == 202
    assert post(intake.url, native("rot-2"), SECRET).status_code == 202
    assert post(intake.url, native("rot-3"), [OLD_SECRET, SECRET]).status_code == 202  # client mid-switch

    monkeypatch.setenv("AIRFLOW_CONN_GDPR_INTAKE", connection_json(SECRET))  # old secret removed
    refused = post(intake.url, native("rot-4"), OLD_SECRET)
    assert refused.status_code == 401
    assert refused.json()["code"] == "invalid_signature"
    assert get(intake.url, "rot-1", OLD_SECRET).status_code == 401
    assert post(intake.url, native("rot-5"), [OLD_SECRET, SECRET]).status_code == 202
    assert post(intake.url, native("rot-6"), SECRET).status_code == 202
    assert intake.rows() == 5


def test_without_the_connection_the_intake_refuses_everything(intake, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_GDPR_INTAKE")

    response = post(intake.url, native("req-1"))

    assert response.status_code == 503
    assert response.json()["code"] == "intake_not_configured"
    assert intake.rows() == 0


# -- rejected input ------------------------------------------------------------------------------

LIMIT = 64 * 1024

BAD_BODIES = [
    pytest.param(b'{"request_id": "r1", "email": ', 400, "malformed_json", id="truncated-json"),
    pytest.param(b"\xff\xfe{}", 400, "malformed_json", id="not-utf8"),
    pytest.param(b'{"request_id": "r1", "email": NaN}', 400, "malformed_json", id="nan"),
    pytest.param(
        b'{"request_id": "r1", "email": "a@b.co", "email": "c@d.co"}',
        400,
        "malformed_json",
        id="duplicate-key",
    ),
    pytest.param(b"[" * 50_000, 400, "malformed_json", id="deep-nesting"),
    pytest.param(encode(["r1", EMAIL]), 422, "invalid_type", id="array-body"),
    pytest.param(encode({"request_id": "r1", "email": 42}), 422, "invalid_type", id="email-number"),
    pytest.param(encode({"request_id": 7, "email": EMAIL}), 422, "invalid_type", id="id-number"),
    pytest.param(encode({"request_id": "r1", "phone": [PHONE]}), 422, "invalid_type", id="phone-list"),
    pytest.param(encode({"email": EMAIL}), 422, "missing_field", id="no-request-id"),
    pytest.param(encode({"request_id": "r1"}), 422, "no_identifier", id="no-identifier"),
    pytest.param(
        encode({"request_id": "r1", "email": None, "phone": None}), 422, "no_identifier", id="all-null"
    ),
    pytest.param(
        encode({"request_id": "r1", "email": "Zelda.Leaky.example.org"}), 422, "invalid_email", id="email"
    ),
    pytest.param(
        encode({"request_id": "r1", "email": "a\u0000b@example.org"}),
        422,
        "invisible_character",
        id="email-nul",
    ),
    pytest.param(
        encode({"request_id": "r1", "email": "a" * 250 + "@x.org"}), 422, "invalid_email", id="email-long"
    ),
    pytest.param(
        encode({"request_id": "r1", "phone": "447700900123"}), 422, "invalid_phone", id="phone-no-plus"
    ),
    pytest.param(
        encode({"request_id": "r1", "phone": "+44 7700 900123"}), 422, "invalid_phone", id="phone-spaces"
    ),
    pytest.param(
        encode({"request_id": "r1", "phone": PHONE + "\n"}), 422, "invisible_character", id="phone-newline"
    ),
    pytest.param(
        encode({"request_id": "r1", "email": "Zelda.Leaky@Example.org\u200b"}),
        422,
        "invisible_character",
        id="email-zero-width-space",
    ),
    pytest.param(
        encode({"request_id": "r1", "phone": "\u202a" + PHONE + "\u202c"}),
        422,
        "invisible_character",
        id="phone-bidi-embedding",
    ),
    pytest.param(
        encode({"request_id": "r1", "stripe_customer_id": "LeakTest12345"}),
        422,
        "invalid_stripe_customer_id",
        id="customer",
    ),
    pytest.param(encode({"request_id": "r1", "user_id": "two words"}), 422, "invalid_user_id", id="user-id"),
    pytest.param(
        encode({"request_id": "Zelda.Leaky@Example.org", "phone": PHONE}),
        422,
        "invalid_request_id",
        id="id-email",
    ),
    pytest.param(encode({"request_id": "r1\n", "phone": PHONE}), 422, "invalid_request_id", id="id-newline"),
    pytest.param(
        encode({"request_id": "r1", "e_mail": EMAIL, "phone": PHONE}), 422, "unknown_field", id="typo-field"
    ),
    pytest.param(
        encode({**opendsr("dsr-1"), "subject_request_type": "access"}),
        422,
        "unsupported_request_type",
        id="dsr-access",
    ),
    pytest.param(
        encode(opendsr("dsr-1", [("android_advertising_id", "38400000-8cf0-11bd-b23e-10b96e40000d")])),
        422,
        "unsupported_identity_type",
        id="dsr-identity-type",
    ),
    pytest.param(
        encode(
            {
                **opendsr("dsr-1"),
                "subject_identities": [
                    {"identity_type": "email", "identity_value": "0" * 64, "identity_format": "sha256"}
                ],
            }
        ),
        422,
        "unsupported_identity_format",
        id="dsr-hashed",
    ),
    pytest.param(
        encode(opendsr("dsr-1", [("email", EMAIL), ("email", "zelda2@example.org")])),
        422,
        "duplicate_identity_type",
        id="dsr-two-emails",
    ),
    pytest.param(
        encode({**opendsr("dsr-1"), "submitted_time": "yesterday"}),
        422,
        "invalid_submitted_time",
        id="dsr-time",
    ),
    pytest.param(
        encode({**opendsr("dsr-1"), "subject_identities": []}), 422, "invalid_value", id="dsr-no-identity"
    ),
    pytest.param(
        encode(opendsr("dsr-1", [("phone_number", "07700900123")])), 422, "invalid_phone", id="dsr-phone"
    ),
    pytest.param(b"{" + b" " * (LIMIT + 1) + b"}", 413, "body_too_large", id="too-large"),
]


@pytest.mark.parametrize(("body", "status", "code"), BAD_BODIES)
def test_bad_input_gets_a_clear_4xx_and_stores_nothing(intake, body, status, code):
    response = _raw_post(intake, body, signed_headers(body))

    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == code
    assert problem["status"] == status
    assert problem["type"].endswith(code)
    assert problem["detail"]
    assert_no_identifiers(response.text, "the error answer")
    assert intake.rows() == 0


def test_field_errors_name_the_field_never_the_value(intake):
    body = encode({"request_id": "r1", "email": "Zelda.Leaky.example.org", "phone": "12", CUSTOMER: 1})

    problem = _raw_post(intake, body, signed_headers(body)).json()

    assert {"field": "email", "code": "invalid_email"} in problem["errors"]
    assert {"field": "phone", "code": "invalid_phone"} in problem["errors"]
    assert {"field": "?", "code": "unknown_field"} in problem["errors"]  # a key named after an id
    assert_no_identifiers(json.dumps(problem), "field errors")


def test_chunked_body_over_the_limit_is_413(intake):
    def chunks():
        yield b'{"request_id": "r1", "pad": "'
        for _ in range(20):
            yield b"x" * 8192
        yield b'"}'

    # No Content-Length: the limit is enforced while reading.
    response = requests.post(
        f"{intake.url}/v1/requests",
        data=chunks(),
        headers=signed_headers(b"unused"),
        timeout=10,
    )

    assert response.status_code == 413
    assert response.json()["code"] == "body_too_large"
    assert intake.rows() == 0


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"],
)
def test_wrong_content_type_is_415(intake, content_type):
    body = encode(native("req-ct"))

    response = _raw_post(intake, body, signed_headers(body, content_type=content_type))

    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
    assert intake.rows() == 0


def test_content_type_with_utf8_charset_is_accepted(intake):
    body = encode(native("req-ct"))
    headers = signed_headers(body, content_type="application/json; charset=UTF-8")

    assert _raw_post(intake, body, headers).status_code == 202


def test_query_string_is_refused_and_not_logged(intake):
    body = encode(native("req-q"))
    response = requests.post(
        f"{intake.url}/v1/requests?email={EMAIL}", data=body, headers=signed_headers(body), timeout=10
    )

    assert response.status_code == 400
    assert response.json()["code"] == "query_not_allowed"
    assert intake.rows() == 0
    assert_no_identifiers(intake.log_text(), "the log")


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/requests", 405, "method_not_allowed"),
        ("DELETE", "/v1/requests/req-1", 405, "method_not_allowed"),
        ("POST", "/v2/requests", 404, "not_found"),
        ("GET", "/", 404, "not_found"),
        ("GET", "/openapi.json", 404, "not_found"),
        ("GET", "/docs", 404, "not_found"),
    ],
)
def test_unknown_routes_and_methods_get_problem_answers(intake, method, path, status, code):
    response = requests.request(method, f"{intake.url}{path}", timeout=10)

    assert response.status_code == status
    assert response.json()["code"] == code


# -- logs ----------------------------------------------------------------------------------------


def test_log_names_routes_codes_and_request_ids_never_identifiers(intake):
    post(intake.url, native("log-ok", email=EMAIL, phone=PHONE, stripe_customer_id=CUSTOMER, user_id=USER_ID))
    post(intake.url, native("log-ok", email=EMAIL, phone=PHONE, stripe_customer_id=CUSTOMER, user_id=USER_ID))
    post(intake.url, native("log-conflict"))
    post(intake.url, native("log-conflict", email="zelda3@example.org"))
    post(intake.url, {"request_id": "log-bad", "email": EMAIL[:-4], "phone": PHONE[1:]})
    post(intake.url, {"request_id": "log-bad", EMAIL: PHONE})
    post(intake.url, native("log-unsigned"), OTHER_SECRET)
    get(intake.url, "log-ok")
    requests.get(f"{intake.url}/v1/requests/{EMAIL}", timeout=10)

    text = intake.log_text()
    assert "POST /v1/requests -> 202 request_id=log-ok" in text
    assert "replayed" in text
    assert "-> 409 request_id_conflict" in text
    assert "-> 422 invalid_email" in text
    assert "-> 401 invalid_signature" in text
    assert_no_identifiers(text, "the log")


# -- configuration problems (5xx, never caused by the input) -------------------------------------


def test_repeat_of_a_completed_request_without_the_hash_key_is_503_not_a_guess(intake, monkeypatch):
    ids = SubjectIdentifiers.parse(email=EMAIL)
    post(intake.url, native("req-done", email=EMAIL))
    intake.store.claim(1, "test-run")
    intake.store.transition("req-done", RequestStatus.COMPLETED)
    intake.store.erase_identifiers("req-done", identifiers_hash(load_hash_key(), ids))
    monkeypatch.delenv("AIRFLOW_CONN_GDPR_HASH_KEY")

    response = post(intake.url, native("req-done", email=EMAIL))

    assert response.status_code == 503
    assert response.json()["code"] == "hash_key_unavailable"
    assert intake.rows() == 1


def test_unreachable_store_is_503_and_logged_without_details(intake_connection, caplog):
    caplog.set_level(logging.INFO)
    dead = "postgresql+psycopg2://intake:secret-password@127.0.0.1:9/none?connect_timeout=2"
    app = create_app(IntakeSettings(db_url=dead, secrets_ttl_seconds=0))
    server = ThreadedServer(app).start()
    try:
        response = post(server.url, native("req-1", email=EMAIL, phone=PHONE))
    finally:
        server.stop()

    assert response.status_code == 503
    assert response.json()["code"] == "store_unavailable"
    log = "\n".join(r.getMessage() for r in caplog.records)
    assert "store error on submit (OperationalError)" in log
    assert "secret-password" not in log
    assert_no_identifiers(log + response.text, "the log and answer")


# -- identifier rules: one person, one spelling; nothing invisible ---------------------------------

# The same address spelt with a decomposed diaeresis and in capitals, and as most people type it.
SPELT_DECOMPOSED = "ZOE\u0308.LEAKY@EXAMPLE.ORG"
SPELT_COMPOSED = "zo\u00eb.leaky@example.org"

INVISIBLE_CHARACTERS = [
    pytest.param("\u200b", id="zero-width-space"),
    pytest.param("\u200d", id="zero-width-joiner"),
    pytest.param("\ufeff", id="bom"),
    pytest.param("\u00ad", id="soft-hyphen"),
    pytest.param("\u200f", id="rtl-mark"),
    pytest.param("\u202e", id="rtl-override"),
    pytest.param("\u2067", id="rtl-isolate"),
    pytest.param("\u00a0", id="no-break-space"),
    pytest.param("\u2028", id="line-separator"),
    pytest.param("\u3164", id="hangul-filler"),
    pytest.param("\u0378", id="unassigned"),
    pytest.param("\x7f", id="delete"),
]


def _spoil(value: str, char: str) -> str:
    return value[:5] + char + value[5:]


def _assert_refused_as_invisible(intake, response, field: str, clean_value: str) -> None:
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "invisible_character"
    assert problem["type"].endswith("invisible_character")
    assert problem["errors"] == [{"field": field, "code": "invisible_character"}]
    assert "invisible" in problem["detail"]
    text = response.text + intake.log_text()
    for fragment in (clean_value, clean_value[:5], clean_value[5:], clean_value.lower()):
        assert fragment not in text, "a part of the identifier appears in the answer or the log"
    assert_no_identifiers(text, "the answer and the log")
    assert "-> 422 invisible_character" in intake.log_text()
    assert intake.rows() == 0


@pytest.mark.parametrize("char", INVISIBLE_CHARACTERS)
@pytest.mark.parametrize(
    ("field", "value"),
    [("email", EMAIL), ("phone", PHONE), ("stripe_customer_id", CUSTOMER), ("user_id", USER_ID)],
)
def test_identifier_with_an_invisible_character_is_422_and_stores_nothing(intake, field, value, char):
    response = post(intake.url, {"request_id": "req-invisible", field: _spoil(value, char)})

    _assert_refused_as_invisible(intake, response, field, value)


@pytest.mark.parametrize("char", INVISIBLE_CHARACTERS[:3] + INVISIBLE_CHARACTERS[-2:])
def test_opendsr_identity_with_an_invisible_character_is_422_and_stores_nothing(intake, char):
    identities = [("phone_number", PHONE), ("email", _spoil(EMAIL, char))]
    response = post(intake.url, opendsr("dsr-invisible", identities))

    _assert_refused_as_invisible(intake, response, "subject_identities[1].identity_value", EMAIL)


@pytest.mark.parametrize("char", ["\u200b", "\u00a0", "\ufeff", "\n"])
def test_invisible_character_at_the_end_is_refused_not_trimmed(intake, char):
    response = post(intake.url, native("req-trailing", email=EMAIL + char))

    assert response.status_code == 422
    assert response.json()["code"] == "invisible_character"  # the API trims nothing
    assert intake.rows() == 0


def test_capital_with_accent_that_composes_only_in_lower_case_is_refused(intake):
    """The schema cannot state this rule: the parser answers it, in both shapes, naming the field."""
    native_answer = post(intake.url, native("req-caron", email="J\u030cANE@example.org"))
    dsr_answer = post(
        intake.url, opendsr("dsr-caron", [("phone_number", PHONE), ("email", "J\u030cane@example.org")])
    )

    assert native_answer.status_code == dsr_answer.status_code == 422
    assert native_answer.json()["errors"] == [{"field": "email", "code": "invalid_email"}]
    assert dsr_answer.json()["errors"] == [
        {"field": "subject_identities[1].identity_value", "code": "invalid_email"}
    ]
    assert "lower case" in native_answer.json()["detail"]
    assert "jane" not in (native_answer.text + dsr_answer.text).lower()
    assert intake.rows() == 0


def test_two_spellings_of_one_address_are_one_request(intake):
    first = post(intake.url, native("req-zoe", email=SPELT_DECOMPOSED, phone=PHONE))
    again = post(intake.url, native("req-zoe", email=SPELT_COMPOSED, phone=PHONE))

    assert (first.status_code, again.status_code) == (202, 202)
    assert again.headers["Idempotent-Replayed"] == "true"
    stored = intake.store.get("req-zoe").identifiers
    assert stored.email == SPELT_COMPOSED  # the comparison form: NFC, lower case
    assert stored.email_as_given == "ZO\u00cb.LEAKY@EXAMPLE.ORG"  # the caller's case, NFC
    assert stored == SubjectIdentifiers.parse(email=SPELT_COMPOSED, phone=PHONE)
    assert intake.rows() == 1


def test_repeat_of_a_completed_request_in_another_spelling_matches_its_hash(intake):
    """After completion only the keyed hash is left: the other spelling must hash alike, or the
    repeat would be a false 409 (and a second request for the same person)."""
    assert post(intake.url, native("req-zoe-done", email=SPELT_DECOMPOSED)).status_code == 202
    stored = intake.store.get("req-zoe-done").identifiers
    intake.store.claim(1, "test-run")
    intake.store.transition("req-zoe-done", RequestStatus.COMPLETED)
    assert intake.store.erase_identifiers("req-zoe-done", identifiers_hash(load_hash_key(), stored))

    same_person = post(intake.url, native("req-zoe-done", email="Zo\u00eb.Leaky@Example.org"))
    other_person = post(intake.url, native("req-zoe-done", email="zoe.leaky@example.org"))  # no accent

    assert same_person.status_code == 202
    assert same_person.headers["Idempotent-Replayed"] == "true"
    assert same_person.json()["status"] == "completed"
    assert other_person.status_code == 409
    assert intake.rows() == 1


def test_opendsr_and_native_spellings_of_one_person_are_one_request(intake):
    assert post(intake.url, opendsr("dsr-zoe", [("email", SPELT_DECOMPOSED)])).status_code == 202

    again = post(intake.url, opendsr("dsr-zoe", [("email", SPELT_COMPOSED)]))

    assert again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert intake.rows() == 1
