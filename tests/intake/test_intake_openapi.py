"""The intake's OpenAPI document: committed copy up to date, valid OpenAPI 3.1, and the patterns
it publishes never accept what the identifier parser refuses, except by the two rules that depend
on the Unicode version (unassigned code points; an email whose lower-case form is not NFC)."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate

from gdpr_erasure.identifiers import InvalidIdentifier, SubjectIdentifiers
from gdpr_erasure.intake import models
from gdpr_erasure.intake.app import create_app
from gdpr_erasure.intake.errors import ERRORS
from gdpr_erasure.intake.openapi import build_openapi, openapi_json

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMITTED = REPO_ROOT / "docs" / "intake-openapi.json"


def test_committed_document_matches_the_app():
    assert COMMITTED.read_text(encoding="utf-8") == openapi_json(create_app()), (
        "docs/intake-openapi.json is stale: "
        "run `gdpr-erasure intake openapi --output docs/intake-openapi.json`"
    )


def test_document_is_valid_openapi_3_1():
    document = json.loads(COMMITTED.read_text(encoding="utf-8"))
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert set(document["paths"]) == {"/v1/requests", "/v1/requests/{request_id}"}
    assert document["security"] == [{"gdprSignature": []}]


def test_every_error_code_is_documented_on_some_answer():
    text = json.dumps(build_openapi())
    missing = [
        code
        for code in ERRORS
        if f"`{code}`" not in text and code not in ("not_found", "method_not_allowed", "internal_error")
    ]
    assert missing == []


def test_app_openapi_is_this_document_not_fastapis_guess():
    from gdpr_erasure.intake.openapi import install

    app = install(create_app())
    assert app.openapi() == build_openapi(app)
    assert "requestBody" in app.openapi()["paths"]["/v1/requests"]["post"]


def _fullmatch(pattern: str):
    return st.from_regex(re.compile(pattern.removeprefix("^").removesuffix("$")), fullmatch=True)


@settings(max_examples=150, deadline=None)
@given(
    email=_fullmatch(models.EMAIL_PATTERN).filter(lambda v: len(v) <= models.EMAIL_MAX_LENGTH),
    phone=_fullmatch(models.PHONE_PATTERN),
    customer=_fullmatch(models.STRIPE_CUSTOMER_PATTERN),
    user_id=_fullmatch(models.USER_ID_PATTERN),
)
def test_published_patterns_are_within_what_the_identifier_parser_accepts(email, phone, customer, user_id):
    values = {"email": email, "phone": phone, "stripe_customer_id": customer, "user_id": user_id}
    if schema_cannot_state_why(email):
        with pytest.raises(InvalidIdentifier) as info:
            SubjectIdentifiers.parse(**values)
        assert info.value.field == "email"
        return
    parsed = SubjectIdentifiers.parse(**values)
    assert parsed.phone == phone
    assert parsed.stripe_customer_id == customer


def schema_cannot_state_why(email: str) -> bool:
    """The parser's email rules a pattern cannot state for every Unicode version."""
    lowered = unicodedata.normalize("NFC", email).lower()
    unassigned = any(unicodedata.category(char) == "Cn" for char in email)
    return unassigned or unicodedata.normalize("NFC", lowered) != lowered


def _published_email_pattern() -> re.Pattern:
    document = json.loads(COMMITTED.read_text(encoding="utf-8"))
    schema = document["components"]["schemas"]["EmailIdentity"]["properties"]["identity_value"]
    return re.compile(schema["pattern"])


@pytest.mark.parametrize(
    "char",
    [
        "\u200b",
        "\u200d",
        "\u202e",
        "\u2066",
        "\ufeff",
        "\u00ad",
        "\u00a0",
        "\u3000",
        "\u2028",
        "\x00",
        "\x85",
        "\u3164",
        "\ufe0f",
        "\ue000",
        "\U000e0041",
        "\U000f0000",
        "\t",
        " ",
    ],
)
def test_published_email_pattern_refuses_invisible_characters(char):
    """What the document tells clients (and fuzzers): the pattern itself keeps them out."""
    pattern = _published_email_pattern()
    assert pattern.fullmatch("jane.doe@example.com")
    assert pattern.fullmatch("j\u00f6rg@b\u00fccher.example")
    for spoilt in (
        f"jane{char}.doe@example.com",
        f"jane.doe@example.com{char}",
        f"{char}jane.doe@example.com",
    ):
        assert not pattern.fullmatch(spoilt)
        assert not re.fullmatch(models.EMAIL_PATTERN.removeprefix("^").removesuffix("$"), spoilt)


def test_every_error_code_is_in_the_client_documentation():
    table = (REPO_ROOT / "docs" / "intake.md").read_text(encoding="utf-8")
    for code, (status, _) in ERRORS.items():
        assert f"| {status} | `{code}` |" in table, f"docs/intake.md has no row for {code}"
