"""What the intake accepts and answers: the native shape, the OpenDSR 2.0 shape, and validation.

The pydantic models are the contract: the OpenAPI document is generated from them, and the body
of a request is validated against them (strict types, unknown fields refused in the native shape,
the exact patterns below). Validation errors are turned into our own codes and field paths
(:func:`parse_submission`); pydantic's messages are never shown, because they can quote input.

Patterns are those of :mod:`gdpr_erasure.identifiers` or stricter (ASCII digits only, no
surrounding spaces), so what the API accepts passes :meth:`SubjectIdentifiers.parse`, and the
OpenAPI document states what is accepted: E.164 without spaces, a ``cus_`` id, an email address of
at most 254 characters without invisible or control characters. Two rules of the parser depend on
the Unicode version and are not in the patterns: unassigned code points are refused
(``invisible_character``), and so is an email whose lower-case form is not NFC (``invalid_email``).

Every identifier is first checked for invisible, control and unassigned characters, so such a
value is answered ``invisible_character`` (naming the field) rather than a format error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from gdpr_erasure.identifiers import (
    INVISIBLE_CHARACTER,
    REFUSED_RANGES,
    InvalidIdentifier,
    SubjectIdentifiers,
    refused_character,
)
from gdpr_erasure.intake.errors import FieldError, IntakeError, field_path
from gdpr_erasure.store.status import RequestStatus

#: GDPR Art. 12(3): answer "without undue delay and in any event within one month of receipt".
COMPLETION_PERIOD = timedelta(days=30)
OPENDSR_API_VERSION = "2.0"

# Opaque caller ids: no '@', '+' or spaces, so an id cannot be an email or an E.164 number
# (paths carry ids, and access logs print paths).
REQUEST_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"


def _refused_class() -> str:
    """The code points of :data:`REFUSED_RANGES` as a character-class body, written as the
    characters themselves: ``\\u{...}`` and ``\\U...`` are not understood alike by ECMA (JSON
    Schema), Python and Rust regular expressions, the characters are (ECMA with the ``u`` flag for
    those beyond U+FFFF). None of them is special inside a class."""
    return "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}" for a, b in REFUSED_RANGES)


# Email characters: not '@', not the ASCII space, none of the refused characters (controls,
# format characters, other spaces and separators, invisible ones, private use). Listing every
# space explicitly rather than writing '\s' keeps ECMA, Python and Rust in agreement.
_EMAIL_CHAR = f"[^@ {_refused_class()}]"
EMAIL_PATTERN = rf"^{_EMAIL_CHAR}{{1,64}}@{_EMAIL_CHAR}+\.{_EMAIL_CHAR}{{2,}}$"
EMAIL_MAX_LENGTH = 254
PHONE_PATTERN = r"^\+[1-9][0-9]{6,14}$"
STRIPE_CUSTOMER_PATTERN = r"^cus_[A-Za-z0-9]{6,250}$"
USER_ID_PATTERN = r"^[\x21-\x7e]{1,255}$"

SOURCE_NATIVE = "webhook"
SOURCE_OPENDSR = "opendsr"

# pydantic's default regex engine (Rust): '$' is the end of the text, whereas Python's re also
# matches before a final newline, which would let "req-1\n" through.
_STRICT = ConfigDict(strict=True, extra="forbid")
_LENIENT = ConfigDict(strict=True, extra="ignore")

RequestId = Annotated[
    str,
    Field(
        pattern=REQUEST_ID_PATTERN,
        max_length=64,
        description="The caller's idempotency key: 1-64 of A-Z a-z 0-9 . _ : - (a UUID fits). "
        "Never derive it from the person's identifiers.",
    ),
]


def _visible(value: Any) -> Any:
    """Refuse an identifier holding a character nobody can see (before its pattern is checked,
    so the answer says so). Not a string: left to the type check."""
    if isinstance(value, str) and refused_character(value) is not None:
        raise PydanticCustomError(INVISIBLE_CHARACTER, "invisible or control character")
    return value


# Field first, then the validator: the other order drops the pattern from the JSON schema.
Email = Annotated[
    str,
    Field(pattern=EMAIL_PATTERN, max_length=EMAIL_MAX_LENGTH),
    BeforeValidator(_visible),
]
Phone = Annotated[
    str,
    Field(pattern=PHONE_PATTERN, max_length=16, description="E.164, e.g. +14155550123"),
    BeforeValidator(_visible),
]
StripeCustomerId = Annotated[
    str, Field(pattern=STRIPE_CUSTOMER_PATTERN, max_length=254), BeforeValidator(_visible)
]
UserId = Annotated[str, Field(pattern=USER_ID_PATTERN, max_length=255), BeforeValidator(_visible)]


# -- requests ------------------------------------------------------------------------------------


class ErasureRequestBody(BaseModel):
    """The native request: the identifiers to erase and the caller's request id."""

    model_config = ConfigDict(
        **_STRICT,
        json_schema_extra={
            # At least one identifier, as a schema rule (null counts as absent).
            "anyOf": [
                {"required": [name], "properties": {name: {"type": "string"}}}
                for name in ("email", "phone", "stripe_customer_id", "user_id")
            ],
            "examples": [{"request_id": "7d9f2c1e-2b41-4c55-9d1e-0c5b8f3a6e21", "email": "jane@example.com"}],
        },
    )

    request_id: RequestId
    email: Email | None = Field(
        None,
        description="Email address as the person gave it. Compared after Unicode NFC normalisation "
        "and in lower case; no invisible, control or unassigned characters (docs/intake.md, "
        "Identifier rules).",
    )
    phone: Phone | None = None
    stripe_customer_id: StripeCustomerId | None = Field(None, description="Stripe customer id, cus_...")
    user_id: UserId | None = Field(None, description="Your user id (Segment userId), printable ASCII")

    @model_validator(mode="after")
    def _one_identifier(self) -> ErasureRequestBody:
        if not (self.email or self.phone or self.stripe_customer_id or self.user_id):
            raise PydanticCustomError("no_identifier", "no identifier")
        return self


class _Identity(BaseModel):
    model_config = _LENIENT
    identity_format: Literal["raw"] = Field(
        "raw", description="Only raw values: a hash cannot be looked up in Stripe, Twilio or Segment"
    )


class EmailIdentity(_Identity):
    identity_type: Literal["email"]
    identity_value: Email


class PhoneIdentity(_Identity):
    identity_type: Literal["phone_number"]
    identity_value: Phone


class ControllerCustomerIdentity(_Identity):
    """OpenDSR's ``controller_customer_id``: your user id (the Segment ``userId``)."""

    identity_type: Literal["controller_customer_id"]
    identity_value: UserId


class StripeCustomerIdentity(_Identity):
    """An extension identity type of this intake: a Stripe customer id."""

    identity_type: Literal["stripe_customer_id"]
    identity_value: StripeCustomerId


Identity = Annotated[
    EmailIdentity | PhoneIdentity | ControllerCustomerIdentity | StripeCustomerIdentity,
    Field(discriminator="identity_type"),
]

#: OpenDSR identity_type -> field of :class:`SubjectIdentifiers`.
IDENTITY_FIELDS = {
    "email": "email",
    "phone_number": "phone",
    "controller_customer_id": "user_id",
    "stripe_customer_id": "stripe_customer_id",
}


class OpenDsrRequestBody(BaseModel):
    """An OpenDSR 2.0 request (``subject_request_type`` must be ``erasure``).

    ``status_callback_urls`` and ``extensions`` are accepted and ignored: poll
    ``GET /v1/requests/{id}`` for the status. Fields OpenDSR may add later are ignored.
    """

    model_config = ConfigDict(
        **_LENIENT,
        json_schema_extra={
            "examples": [
                {
                    "subject_request_id": "a7551968-d5d6-44b2-9831-815ac9017798",
                    "subject_request_type": "erasure",
                    "submitted_time": "2026-01-02T15:00:00Z",
                    "subject_identities": [
                        {
                            "identity_type": "email",
                            "identity_value": "jane@example.com",
                            "identity_format": "raw",
                        }
                    ],
                    "api_version": "2.0",
                }
            ]
        },
    )

    subject_request_id: RequestId
    subject_request_type: Literal["erasure"]
    submitted_time: str = Field(json_schema_extra={"format": "date-time"}, max_length=64)
    subject_identities: list[Identity] = Field(
        min_length=1, max_length=4, description="One identity per type; at least one"
    )
    api_version: str | None = Field(None, max_length=16)
    property_id: str | None = Field(None, max_length=255)
    status_callback_urls: list[Annotated[str, Field(max_length=2048)]] | None = Field(None, max_length=10)
    extensions: dict[str, Any] | None = None

    @field_validator("submitted_time")
    @classmethod
    def _rfc3339(cls, value: str) -> str:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None or "T" not in value.upper():
            raise PydanticCustomError("invalid_submitted_time", "not an RFC 3339 date-time")
        return value

    @model_validator(mode="after")
    def _one_per_type(self) -> OpenDsrRequestBody:
        types = [identity.identity_type for identity in self.subject_identities]
        if len(types) != len(set(types)):
            raise PydanticCustomError("duplicate_identity_type", "an identity type is repeated")
        return self


# -- answers -------------------------------------------------------------------------------------


class KeptObject(BaseModel):
    """One object the erasure policy kept (GDPR Art. 17(3)), as the request's latest audit entry
    lists it (docs/policy.md). No identifier: a Stripe customer is named by its keyed tag
    (``cus#`` and 12 hex of its keyed hash), never by its ``cus_`` id."""

    model_config = ConfigDict(extra="forbid")

    system: str = Field(description="Where it is kept, e.g. stripe")
    kind: str = Field(description="What it is, e.g. stripe.customer")
    id: str = Field(description="Its keyed id, e.g. cus#0f58afa1ab99 (never the provider's id)")
    action: str = Field(description="What the policy did: withhold, retain, hold_for_review or redact")
    reason: str = Field(description="Why it is kept, in one line")
    legal_basis: str | None = Field(description="The legal basis for keeping it")
    review_date: datetime | None = Field(description="When it is checked again (then erased if it may be)")
    retained_until: datetime | None = Field(description="Until when its data is kept (retention period)")


_KEPT = (
    "each object the erasure policy kept, why, on which legal basis and until when: the request is "
    "done except for these (status completed_with_exemptions, or while a review of them runs)"
)


class ErasureRequestState(BaseModel):
    """A request's state, native shape. Never carries the identifiers."""

    model_config = ConfigDict(extra="forbid")

    request_id: str
    status: RequestStatus
    received_at: datetime
    expected_completion_at: datetime = Field(description="received_at + 30 days (GDPR Art. 12(3))")
    completed_at: datetime | None
    kept: list[KeptObject] | None = Field(None, description=f"Present when something is kept: {_KEPT}")


#: The key of this processor's extension in OpenDSR answers (OpenDSR 2.0, section 7.1.2, keys
#: extensions by processor; this intake has no OpenDSR processor domain, so it uses its name).
OPENDSR_EXTENSION = "gdpr-erasure"


class OpenDsrStateExtension(BaseModel):
    """What this processor adds to an OpenDSR status answer."""

    model_config = ConfigDict(extra="forbid")

    kept: list[KeptObject] = Field(description=_KEPT.capitalize())


class OpenDsrStateExtensions(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    gdpr_erasure: OpenDsrStateExtension = Field(alias=OPENDSR_EXTENSION)


class OpenDsrRequestState(BaseModel):
    """A request's state, OpenDSR 2.0 shape. Never carries the identifiers (nor
    ``encoded_request``, which would echo them).

    OpenDSR 2.0's status answer (section 8.3) has no field for what a processor kept: a request
    done except for what the erasure policy kept is ``completed`` (it was fulfilled, with the
    exemptions Art. 17(3) allows), and the objects kept are in ``extensions``, keyed by this
    processor as the spec keys a request's extensions (section 7.1.2). ``results_url`` and
    ``results_count`` are an access request's results, not what an erasure kept."""

    model_config = ConfigDict(extra="forbid")

    controller_id: str
    subject_request_id: str
    request_status: Literal["pending", "in_progress", "completed", "cancelled"]
    received_time: datetime
    expected_completion_time: datetime
    api_version: Literal["2.0"]
    extensions: OpenDsrStateExtensions | None = Field(
        None, description=f"Under {OPENDSR_EXTENSION!r}: what the erasure policy kept, when anything is"
    )


class ProblemField(BaseModel):
    field: str = Field(description="Path of the field in the body, e.g. subject_identities[0].identity_value")
    code: str


class Problem(BaseModel):
    """RFC 9457 problem details. ``code`` is the machine-readable error."""

    type: str
    title: str
    status: int
    code: str
    detail: str
    errors: list[ProblemField] | None = None


# -- parsing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Submission:
    """A valid request: who to forget, under which id, and in which shape to answer."""

    request_id: str
    identifiers: SubjectIdentifiers
    opendsr: bool

    @property
    def source(self) -> str:
        return SOURCE_OPENDSR if self.opendsr else SOURCE_NATIVE


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # {"email": "a@x.io", "email": "b@y.io"}: which one did the caller mean? Refuse to guess.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _DuplicateKey
    return result


def _no_constants(_name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def load_json(body: bytes) -> Any:
    """Strict JSON: UTF-8, no duplicate keys, no NaN/Infinity. Raises ``malformed_json``."""
    try:
        return json.loads(
            body.decode("utf-8"), object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants
        )
    except _DuplicateKey:
        raise IntakeError("malformed_json", "the body repeats a key") from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise IntakeError("malformed_json", "the body is not valid UTF-8 JSON") from None


def is_opendsr(document: dict[str, Any]) -> bool:
    return any(
        key in document for key in ("subject_request_id", "subject_request_type", "subject_identities")
    )


def parse_submission(body: bytes) -> Submission:
    """Validate a request body (either shape); raise :class:`IntakeError` with field errors."""
    document = load_json(body)
    if not isinstance(document, dict):
        raise IntakeError(
            "invalid_type", "the body must be a JSON object", [FieldError("(body)", "invalid_type")]
        )
    opendsr = is_opendsr(document)
    model = OpenDsrRequestBody if opendsr else ErasureRequestBody
    try:
        parsed = model.model_validate(document)
    except ValidationError as exc:
        errors = _field_errors(exc)
        raise IntakeError(errors[0].code, _DETAILS.get(errors[0].code), errors) from None
    if isinstance(parsed, OpenDsrRequestBody):
        request_id = parsed.subject_request_id
        values = {IDENTITY_FIELDS[i.identity_type]: i.identity_value for i in parsed.subject_identities}
        paths = {
            IDENTITY_FIELDS[identity.identity_type]: f"subject_identities[{index}].identity_value"
            for index, identity in enumerate(parsed.subject_identities)
        }
    else:
        request_id = parsed.request_id
        values = parsed.model_dump(include={"email", "phone", "stripe_customer_id", "user_id"})
        paths = {}
    try:
        identifiers = SubjectIdentifiers.parse(**values)
    except InvalidIdentifier as exc:  # rules the patterns cannot state (see the module docstring)
        code = (
            INVISIBLE_CHARACTER
            if exc.kind == INVISIBLE_CHARACTER
            else _VALUE_CODES.get(exc.field, "invalid_value")
        )
        raise IntakeError(code, str(exc), [FieldError(paths.get(exc.field, exc.field), code)]) from None
    return Submission(request_id, identifiers, opendsr)


_VALUE_CODES = {
    "request_id": "invalid_request_id",
    "subject_request_id": "invalid_request_id",
    "email": "invalid_email",
    "phone": "invalid_phone",
    "stripe_customer_id": "invalid_stripe_customer_id",
    "user_id": "invalid_user_id",
    "identifiers": "no_identifier",
}
_TAG_CODES = {tag: _VALUE_CODES[name] for tag, name in IDENTITY_FIELDS.items()}
_LITERAL_CODES = {
    "subject_request_type": "unsupported_request_type",
    "identity_format": "unsupported_identity_format",
}
_CUSTOM_CODES = {"no_identifier", "duplicate_identity_type", "invalid_submitted_time", INVISIBLE_CHARACTER}

_DETAILS = {
    "no_identifier": "give at least one of email, phone, stripe_customer_id, user_id",
    "invalid_email": "not a valid email address (at most 254 characters)",
    "invalid_phone": "not an E.164 phone number, e.g. +14155550123 (no spaces)",
    "invalid_stripe_customer_id": "not a Stripe customer id (cus_...)",
    "invalid_user_id": "a user id is 1-255 printable ASCII characters without spaces",
    INVISIBLE_CHARACTER: "an identifier contains an invisible or control character (a zero-width "
    "space or joiner, a bidi mark, a byte order mark, a soft hyphen, a no-break or other non-ASCII "
    "space...) or an unassigned or private-use code point; such characters usually come with a "
    "copy and paste: remove them and send the request again",
    "invalid_request_id": "a request id is 1-64 of A-Z a-z 0-9 . _ : - and starts with a letter or digit",
    "unsupported_request_type": "subject_request_type must be 'erasure'",
    "unsupported_identity_type": "identity_type must be email, phone_number, controller_customer_id "
    "or stripe_customer_id",
    "unsupported_identity_format": "identity_format must be 'raw'",
    "duplicate_identity_type": "give each identity_type once (send one request per email address)",
    "invalid_submitted_time": "submitted_time must be an RFC 3339 date-time with a time zone",
    "unknown_field": "the body has a field the intake does not know",
    "missing_field": "a required field is missing",
    "invalid_type": "a value has the wrong JSON type",
}


#: Field names that may appear in an error's path (anything else is shown as ``?``).
KNOWN_FIELDS = frozenset(
    name
    for model in (
        ErasureRequestBody,
        OpenDsrRequestBody,
        EmailIdentity,
        PhoneIdentity,
        ControllerCustomerIdentity,
        StripeCustomerIdentity,
    )
    for name in model.model_fields
)


def _field_errors(exc: ValidationError) -> list[FieldError]:
    errors = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        loc, kind = tuple(error["loc"]), error["type"]
        tag = None
        # Discriminated unions put the tag in the path: subject_identities.0.email.identity_value
        if len(loc) >= 3 and loc[0] == "subject_identities" and loc[2] in IDENTITY_FIELDS:
            tag, loc = loc[2], loc[:2] + loc[3:]
        errors.append(FieldError(field_path(loc, KNOWN_FIELDS), _code(kind, loc, tag)))
    return errors or [FieldError("(body)", "invalid_value")]


def _code(kind: str, loc: tuple, tag: str | None) -> str:
    name = loc[-1] if loc and isinstance(loc[-1], str) else None
    if kind in _CUSTOM_CODES:
        return kind
    if kind in ("missing", "union_tag_not_found"):
        return "missing_field"
    if kind == "extra_forbidden":
        return "unknown_field"
    if kind == "union_tag_invalid":
        return "unsupported_identity_type"
    if kind == "literal_error":
        return _LITERAL_CODES.get(name, "invalid_value")
    if kind.endswith("_type"):
        return "invalid_type"
    if kind.startswith("string_"):
        if tag is not None:
            return _TAG_CODES[tag]
        return _VALUE_CODES.get(name, "invalid_value")
    return "invalid_value"


# -- answers, built ------------------------------------------------------------------------------


def rfc3339(value: datetime) -> str:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


_OPENDSR_STATUS = {
    RequestStatus.PENDING: "pending",
    RequestStatus.COMPLETED: "completed",
    # Done: what the erasure policy kept (and why) is the intake's to list, not a status.
    RequestStatus.COMPLETED_WITH_EXEMPTIONS: "completed",
}


def state_body(
    request, *, opendsr: bool, controller_id: str, kept: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The answer for ``request`` (an :class:`~gdpr_erasure.store.ErasureRequest`): ids, status
    and dates, and what the erasure policy kept, if anything.

    :param kept: the ``kept`` list of the request's latest audit entry (keyed ids only); None or
        empty leaves the field out, so answers without exemptions are as before.
    """
    due = request.received_at + COMPLETION_PERIOD
    listed = [kept_answer(item) for item in kept or []]
    if opendsr:
        body = {
            "controller_id": controller_id,
            "subject_request_id": request.id,
            # in_progress, verifying, failed (retried) and needs_attention (a person is on it)
            # are all "in progress" to the requester.
            "request_status": _OPENDSR_STATUS.get(request.status, "in_progress"),
            "received_time": rfc3339(request.received_at),
            "expected_completion_time": rfc3339(due),
            "api_version": OPENDSR_API_VERSION,
        }
        if listed:
            body["extensions"] = {OPENDSR_EXTENSION: {"kept": listed}}
        return body
    body = {
        "request_id": request.id,
        "status": request.status.value,
        "received_at": rfc3339(request.received_at),
        "expected_completion_at": rfc3339(due),
        "completed_at": rfc3339(request.completed_at) if request.completed_at else None,
    }
    if listed:
        body["kept"] = listed
    return body


def kept_answer(item: dict[str, Any]) -> dict[str, Any]:
    """A kept object of an audit entry in the answer's terms: where, what, which keyed id, what the
    policy did, why, on which basis, until when. The entry's policy ``cases`` are left out (the
    reason says them in words), and dates are RFC 3339 like the answer's others."""

    def moment(value: Any) -> str | None:
        return rfc3339(datetime.fromisoformat(value)) if value else None

    return {
        "system": item.get("system"),
        "kind": item.get("kind"),
        "id": item.get("id"),
        "action": item.get("action"),
        "reason": item.get("reason"),
        "legal_basis": item.get("legal_basis"),
        "review_date": moment(item.get("review_date")),
        "retained_until": moment(item.get("retained_until")),
    }
