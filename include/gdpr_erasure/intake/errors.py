"""The intake's errors: one catalogue of machine-readable codes, answered as RFC 9457
``application/problem+json``.

Messages are written here, never taken from a parser or a database driver: those echo the input
(a pydantic message can quote the value, a PostgreSQL error the whole failing row), and the input
is an email address or a phone number. A field is named by its path in the body, never by value,
and only with names the intake knows.
"""

from __future__ import annotations

from dataclasses import dataclass

PROBLEM_CONTENT_TYPE = "application/problem+json"
_TYPE_PREFIX = "urn:gdpr-erasure:intake:error:"

#: code -> (HTTP status, title). docs/intake.md has the same table for clients.
ERRORS: dict[str, tuple[int, str]] = {
    "query_not_allowed": (400, "The intake takes no query parameters"),
    "malformed_json": (400, "The body is not valid JSON"),
    "missing_signature": (401, "The Gdpr-Signature header is missing"),
    "malformed_signature": (401, "The Gdpr-Signature header is malformed"),
    "timestamp_outside_tolerance": (401, "The signature timestamp is outside the tolerance window"),
    "invalid_signature": (401, "The signature does not match"),
    "not_found": (404, "No such endpoint"),
    "request_not_found": (404, "No erasure request with this id"),
    "method_not_allowed": (405, "Method not allowed"),
    "request_id_conflict": (409, "This request id was used for different identifiers"),
    "body_too_large": (413, "The body is too large"),
    "unsupported_media_type": (415, "The body must be application/json"),
    "invalid_type": (422, "A value has the wrong type"),
    "missing_field": (422, "A required field is missing"),
    "unknown_field": (422, "The body has a field the intake does not know"),
    "invalid_value": (422, "A value is not allowed"),
    "invalid_request_id": (422, "Invalid request id"),
    "invalid_email": (422, "Invalid email address"),
    "invalid_phone": (422, "Invalid phone number"),
    "invalid_stripe_customer_id": (422, "Invalid Stripe customer id"),
    "invalid_user_id": (422, "Invalid user id"),
    "invisible_character": (422, "An identifier contains an invisible or control character"),
    "no_identifier": (422, "No identifier given"),
    "unsupported_request_type": (422, "Only erasure requests are accepted"),
    "unsupported_identity_type": (422, "Unsupported identity type"),
    "unsupported_identity_format": (422, "Unsupported identity format"),
    "duplicate_identity_type": (422, "An identity type is given more than once"),
    "invalid_submitted_time": (422, "Invalid submitted_time"),
    "internal_error": (500, "Internal error"),
    "intake_not_configured": (503, "The intake has no signing secret configured"),
    "hash_key_unavailable": (503, "The identifier hash key is not available"),
    "store_unavailable": (503, "The compliance store is not available"),
}


@dataclass(frozen=True)
class FieldError:
    """One problem in the body: where (``subject_identities[0].identity_value``) and which code."""

    field: str
    code: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code}


class IntakeError(Exception):
    """An error answer.

    :param code: a key of :data:`ERRORS`.
    :param detail: human-readable explanation; must never contain input values.
    :param errors: the problems found in the body, if any.
    :param headers: extra response headers.
    """

    def __init__(
        self,
        code: str,
        detail: str | None = None,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if code not in ERRORS:
            raise ValueError(f"unknown intake error code {code!r}")
        super().__init__(code)
        self.code = code
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}

    @property
    def status(self) -> int:
        return ERRORS[self.code][0]

    def body(self) -> dict:
        status, title = ERRORS[self.code]
        problem: dict = {
            "type": _TYPE_PREFIX + self.code,
            "title": title,
            "status": status,
            "code": self.code,
            "detail": self.detail or title,
        }
        if self.errors:
            problem["errors"] = [e.as_dict() for e in self.errors]
        return problem


def field_path(loc: tuple, known: frozenset[str]) -> str:
    """``("subject_identities", 0, "identity_value")`` -> ``subject_identities[0].identity_value``.

    Names not in ``known`` become ``?``: an unknown key is chosen by the caller and may itself be
    an identifier (``{"jane@example.com": ...}``, ``{"cus_Nx...": ...}``).
    """
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            text = part if part in known else "?"
            path += f".{text}" if path else text
    return path or "(body)"
