"""Keeping identifiers out of logs, exceptions and error messages.

The first line of defence is not handing emails and phones around at all (tasks pass request
ids). This module is the second: it scrubs provider error text that might echo an identifier,
and turns down third-party loggers that write request URLs (which carry emails and phones in
query strings and Profile API paths) at INFO level.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"

_EMAIL = re.compile(r"[^\s@'\"<>(),;:]+@[^\s@'\"<>(),;:]+\.[A-Za-z]{2,}")
_EMAIL_ENCODED = re.compile(r"[^\s@'\"<>(),;:/?&=]+%40[^\s'\"<>(),;:/?&=]+", re.IGNORECASE)
# Standalone phone-like digit runs (optionally +, or %2B URL-encoded); SIDs such as SM0123...
# are not matched because the digits are glued to letters.
_PHONE = re.compile(r"(?<![A-Za-z0-9])(?:\+|%2[Bb])?\d[\d\s\-().]{5,}\d(?![A-Za-z0-9])")
# Stripe customer ids link to charges that keep PII ("No such customer: 'cus_...'" in Stripe's
# errors): identifiers too. Other provider ids (SM..., mem_profile_..., regulation ids) stay.
_STRIPE_CUSTOMER = re.compile(r"(?<![A-Za-z0-9])cus_[A-Za-z0-9]{6,}")

# Loggers that write full request URLs or bodies at INFO/DEBUG.
_NOISY_LOGGERS = ("stripe", "twilio.http_client", "urllib3.connectionpool", "httpx", "httpcore")


def scrub(text: str | None) -> str:
    """Replace anything that looks like an email address, a phone number or a Stripe customer id."""
    if not text:
        return ""
    text = _STRIPE_CUSTOMER.sub(REDACTED, text)
    text = _EMAIL.sub(REDACTED, text)
    text = _EMAIL_ENCODED.sub(REDACTED, text)
    return _PHONE.sub(REDACTED, text)


def quiet_identifier_loggers() -> None:
    """Raise third-party loggers that print request URLs to WARNING."""
    for name in _NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)


def mask_identifiers(*values: str | None) -> None:
    """Register values with Airflow's secrets masker, when running under Airflow."""
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - outside Airflow there is no task log to mask
        return
    for value in values:
        if value:
            mask_secret(value)
