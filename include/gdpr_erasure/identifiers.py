"""The identifiers a person asks us to forget, validated and normalised.

A :class:`SubjectIdentifiers` never shows its values in ``repr`` or ``str``: it travels through
code that logs, and an email in a log line is the very leak this product exists to prevent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields

# Deliberately simple: one @, no spaces, a dot in the domain. Full RFC 5322 parsing accepts
# addresses that no payment or messaging provider stores, and rejects nothing we need.
_EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
_E164_RE = re.compile(r"^\+[1-9]\d{6,14}$")
_STRIPE_CUSTOMER_RE = re.compile(r"^cus_[A-Za-z0-9]{6,250}$")
_USER_ID_RE = re.compile(r"^[\x21-\x7e]{1,255}$")


class InvalidIdentifier(ValueError):
    """An identifier failed validation. The message names the field, never the value."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


def normalise_email(value: str) -> str:
    """Trim and lower-case an email address; raise :class:`InvalidIdentifier` if malformed."""
    email = value.strip()
    if len(email) > 254 or not _EMAIL_RE.match(email):
        raise InvalidIdentifier("email", "not a valid email address")
    return email.lower()


def normalise_phone(value: str) -> str:
    """Validate an E.164 phone number (``+`` and 7 to 15 digits); spaces and dashes are dropped."""
    phone = re.sub(r"[\s\-().]", "", value)
    if not _E164_RE.match(phone):
        raise InvalidIdentifier("phone", "not an E.164 phone number (e.g. +14155550123)")
    return phone


def validate_stripe_customer_id(value: str) -> str:
    customer_id = value.strip()
    if not _STRIPE_CUSTOMER_RE.match(customer_id):
        raise InvalidIdentifier("stripe_customer_id", "not a Stripe customer id (cus_...)")
    return customer_id


def validate_user_id(value: str) -> str:
    user_id = value.strip()
    if not _USER_ID_RE.match(user_id):
        raise InvalidIdentifier("user_id", "must be 1-255 printable characters without spaces")
    return user_id


@dataclass(frozen=True)
class SubjectIdentifiers:
    """What identifies the data subject. At least one field is set.

    ``email`` keeps the caller's spelling in :attr:`email_as_given` because Stripe's
    ``customers.list(email=...)`` is case-sensitive; everything else uses the normalised value.
    """

    email: str | None = None
    phone: str | None = None
    stripe_customer_id: str | None = None
    user_id: str | None = None
    email_as_given: str | None = field(default=None, compare=False)

    @classmethod
    def parse(
        cls,
        *,
        email: str | None = None,
        phone: str | None = None,
        stripe_customer_id: str | None = None,
        user_id: str | None = None,
    ) -> SubjectIdentifiers:
        """Validate raw input. Raises :class:`InvalidIdentifier` naming the first bad field."""
        parsed = cls(
            email=normalise_email(email) if email else None,
            phone=normalise_phone(phone) if phone else None,
            stripe_customer_id=validate_stripe_customer_id(stripe_customer_id)
            if stripe_customer_id
            else None,
            user_id=validate_user_id(user_id) if user_id else None,
            email_as_given=email.strip() if email else None,
        )
        if parsed.is_empty():
            raise InvalidIdentifier(
                "identifiers", "at least one of email, phone, stripe_customer_id, user_id is required"
            )
        return parsed

    def is_empty(self) -> bool:
        return not (self.email or self.phone or self.stripe_customer_id or self.user_id)

    def present(self) -> list[str]:
        """Names (not values) of the identifiers that are set, for logs and summaries."""
        return [f.name for f in fields(self) if f.name != "email_as_given" and getattr(self, f.name)]

    def __repr__(self) -> str:
        return f"SubjectIdentifiers(present={self.present()})"

    __str__ = __repr__
