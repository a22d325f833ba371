"""Property-based fuzzing of the intake over real HTTP, from its OpenAPI document (schemathesis
generates schema-valid and schema-violating requests), plus raw fuzzing of bytes and headers.

For every request: no 5xx; a rejection is ``application/problem+json`` with a catalogued code and
stores nothing; an acceptance stores exactly one row (none on a replay) and answers in the
documented shape, without identifiers.
"""

from __future__ import annotations

import json
import os
import time
import unicodedata
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from intake_support import SECRET, signed_headers
from schemathesis import GenerationMode

from gdpr_erasure.intake.errors import ERRORS
from gdpr_erasure.intake.models import ErasureRequestState, OpenDsrRequestState
from gdpr_erasure.intake.signature import SIGNATURE_HEADER, signature_header, signed_content

DOC = Path(__file__).resolve().parents[2] / "docs" / "intake-openapi.json"
SCHEMA = schemathesis.openapi.from_path(str(DOC))
SUBMIT = SCHEMA["/v1/requests"]["POST"]
STATUS = SCHEMA["/v1/requests/{request_id}"]["GET"]

FUZZ = settings(
    # A quick run by default; GDPR_FUZZ_EXAMPLES=2000 for a deep one.
    max_examples=int(os.environ.get("GDPR_FUZZ_EXAMPLES", "60")),
    deadline=None,
    database=None,
    # One running server serves every example; rows are counted around each request.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)

# Schema-valid requests the server may still refuse: rules JSON Schema cannot state.
POSITIVE_REFUSALS = {
    "duplicate_identity_type",  # one identity per type (OpenDSR)
    "invalid_submitted_time",  # RFC 3339 forms Python does not parse (e.g. leap seconds)
    "request_id_conflict",  # the fuzzer reused a request id for other identifiers
}
# Refusals the schema cannot state for every Unicode version, allowed only with their cause:
# an unassigned code point (``invisible_character``), an email whose lower case is not NFC.
UNICODE_VERSION_REFUSALS = {"invisible_character", "invalid_email"}


def _identifier_values(document) -> list[str]:
    if not isinstance(document, dict):
        return []
    values = [document.get(name) for name in ("email", "phone", "stripe_customer_id", "user_id")]
    for identity in document.get("subject_identities") or []:
        if isinstance(identity, dict):
            values.append(identity.get("identity_value"))
    return [value for value in values if isinstance(value, str)]


def _unicode_version_cause(body: bytes) -> bool:
    for value in _identifier_values(json.loads(body)):
        lowered = unicodedata.normalize("NFC", value).lower()
        if (
            any(unicodedata.category(c) == "Cn" for c in value)
            or unicodedata.normalize("NFC", lowered) != lowered
        ):
            return True
    return False


def _body_bytes(case) -> bytes:
    body = case.body
    if body is None or type(body).__name__ == "NotSet":
        return b""
    if isinstance(body, bytes):
        return body
    return json.dumps(body).encode()


def _check(intake, response: requests.Response, before: int, *, positive: bool | None = None) -> None:
    after = intake.rows()
    assert response.status_code < 500, response.text
    if response.status_code in (200, 202):
        body = response.json()
        model = OpenDsrRequestState if "subject_request_id" in body else ErasureRequestState
        model.model_validate(body)
        replayed = response.headers.get("Idempotent-Replayed") == "true"
        assert after == before + (0 if replayed or response.status_code == 200 else 1)
        return
    assert after == before, "a rejected request stored a row"
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] in ERRORS
    assert ERRORS[problem["code"]][0] == response.status_code
    if positive:
        body = response.request.body or b""
        assert problem["code"] in POSITIVE_REFUSALS or (
            problem["code"] in UNICODE_VERSION_REFUSALS and _unicode_version_cause(body)
        ), (problem, body)


def _submit(intake, body: bytes) -> requests.Response:
    return requests.post(f"{intake.url}/v1/requests", data=body, headers=signed_headers(body), timeout=10)


@FUZZ
@given(case=SUBMIT.as_strategy(GenerationMode.POSITIVE))
def test_fuzz_schema_valid_submissions_are_accepted(intake, case):
    before = intake.rows()
    _check(intake, _submit(intake, _body_bytes(case)), before, positive=True)


@FUZZ
@given(case=SUBMIT.as_strategy(GenerationMode.NEGATIVE))
def test_fuzz_schema_violating_submissions_are_refused_without_5xx(intake, case):
    before = intake.rows()
    response = _submit(intake, _body_bytes(case))
    _check(intake, response, before)


@FUZZ
@given(case=STATUS.as_strategy(GenerationMode.POSITIVE) | STATUS.as_strategy(GenerationMode.NEGATIVE))
def test_fuzz_status_lookups(intake, case):
    request_id = str(case.path_parameters.get("request_id", ""))
    path = f"/v1/requests/{quote(request_id, safe='')}"
    signed = signed_content("GET", f"/v1/requests/{request_id}", b"")
    before = intake.rows()
    response = requests.get(
        f"{intake.url}{path}", headers={SIGNATURE_HEADER: signature_header(SECRET, signed)}, timeout=10
    )
    _check(intake, response, before)
    assert response.status_code in (200, 401, 404), response.text


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
_field_names = st.sampled_from(
    [
        "request_id",
        "email",
        "phone",
        "stripe_customer_id",
        "user_id",
        "subject_request_id",
        "subject_identities",
    ]
)
_documents = st.dictionaries(_field_names | st.text(max_size=10), _json_values, max_size=6)


@FUZZ
@given(
    body=st.binary(max_size=300) | _documents.map(lambda d: json.dumps(d).encode()),
    sign=st.booleans(),
    skew=st.sampled_from([0, 0, -400, 400]),
    content_type=st.sampled_from(["application/json", "application/json; charset=utf-8", "text/json", ""]),
    extra_header=st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80),
)
def test_fuzz_raw_bodies_and_headers(intake, body, sign, skew, content_type, extra_header):
    headers = {"Content-Type": content_type}
    headers[SIGNATURE_HEADER] = (
        signature_header(SECRET, body, int(time.time()) + skew) if sign else extra_header.strip()
    )  # (requests itself refuses header values with leading spaces)
    before = intake.rows()
    response = requests.post(f"{intake.url}/v1/requests", data=body, headers=headers, timeout=10)
    _check(intake, response, before)


@pytest.mark.parametrize("size", [64 * 1024, 64 * 1024 + 1])
def test_size_limit_is_exact(intake, size):
    prefix = b'{"request_id": "big-1", "email": "a@b.co", "pad": "'
    body = prefix + b"x" * (size - len(prefix) - 2) + b'"}'
    assert len(body) == size

    response = _submit(intake, body)

    assert response.status_code == (422 if size <= 64 * 1024 else 413)  # "pad" is an unknown field
    assert intake.rows() == 0
