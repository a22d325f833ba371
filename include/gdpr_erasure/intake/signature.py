"""The intake's request signature: HMAC-SHA256 over a timestamp and the raw body.

Modelled on Stripe's webhook signatures. The client sends one header::

    Gdpr-Signature: t=1767225600,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd

* ``t`` - Unix time in seconds when the client signed;
* ``v1`` - lower-case hex HMAC-SHA256, keyed with a signing secret, of the *signed payload*:
  ``t``, a full stop, then the *signed content*. For a POST the content is the raw request body,
  byte for byte as sent. A GET has no body, so its content is the method, a space and the path
  below the intake's root (``GET /v1/requests/<id>``): the signature then names the one request
  it may read and cannot be reused for another.

Several ``v1`` entries may be given (a client signing with both secrets during a rotation); the
request is authentic if any of them matches any active secret. Other schemes (``v0``...) are
ignored. The server checks the signature before it parses the body, compares digests in constant
time, and refuses timestamps more than the tolerance (5 minutes) away from its clock, in the past
or the future.

This module has no web framework in it: the server and :mod:`gdpr_erasure.intake.client` share it.

Not stripe-python's ``WebhookSignature.verify_header``, though the scheme is Stripe's (Airflow
ships nothing for inbound webhooks): its ``SignatureVerificationError`` carries the body, which
holds identifiers, to whoever logs it; it decodes the body as UTF-8 first, so a stray byte is an
exception rather than a 401; it accepts any timestamp in the future (a signature dated next year
replays until then); it takes one secret, so rotation would loop and stop at the first match;
and it puts no bound on the header it parses.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SIGNATURE_HEADER = "Gdpr-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300
# Bounds on what the parser will look at, so a hostile header costs nothing to reject.
MAX_HEADER_LENGTH = 1024
MAX_SIGNATURES = 8
_HEX_DIGITS = frozenset("0123456789abcdef")


class SignatureError(Exception):
    """The request is not authentic. ``code`` is the machine-readable reason."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class ParsedSignature:
    timestamp: int
    signatures: tuple[str, ...]


def signed_content(method: str, path: str, body: bytes) -> bytes:
    """What the signature covers after ``t.``: the body of a POST, ``GET <path>`` for a GET.

    :param method: the HTTP method.
    :param path: the path below the intake's root, e.g. ``/v1/requests/req-1`` (no ``/gdpr``
        prefix, no query string), so one signature works mounted and standalone.
    :param body: the raw request body.
    """
    if method.upper() == "GET":
        return f"GET {path}".encode()
    return body


def compute_signature(secret: str | bytes, timestamp: int, content: bytes) -> str:
    """Hex HMAC-SHA256 of ``b"<timestamp>." + content`` keyed with ``secret``."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, f"{timestamp}.".encode() + content, hashlib.sha256).hexdigest()


def signature_header(
    secrets: str | bytes | Sequence[str | bytes], content: bytes, timestamp: int | None = None
) -> str:
    """The ``Gdpr-Signature`` value for ``content``, with one ``v1`` per secret given."""
    if isinstance(secrets, str | bytes):
        secrets = [secrets]
    t = int(time.time()) if timestamp is None else int(timestamp)
    return ",".join([f"t={t}", *(f"{SCHEME}={compute_signature(s, t, content)}" for s in secrets)])


def parse_header(value: str | None) -> ParsedSignature:
    """Parse ``t=...,v1=...``; raise :class:`SignatureError` if missing or malformed."""
    if value is None or not value.strip():
        raise SignatureError("missing_signature", f"the {SIGNATURE_HEADER} header is required")
    if len(value) > MAX_HEADER_LENGTH:
        raise SignatureError("malformed_signature", f"the {SIGNATURE_HEADER} header is too long")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in value.split(","):
        key, sep, val = item.strip().partition("=")
        if not sep:
            raise SignatureError("malformed_signature", f"{SIGNATURE_HEADER}: expected key=value pairs")
        if key == "t":
            if timestamp is not None or not (val.isascii() and val.isdigit()) or len(val) > 12:
                raise SignatureError("malformed_signature", f"{SIGNATURE_HEADER}: t must be one Unix time")
            timestamp = int(val)
        elif key == SCHEME:
            sig = val.lower()
            if len(sig) != 64 or not _HEX_DIGITS.issuperset(sig):
                raise SignatureError("malformed_signature", f"{SIGNATURE_HEADER}: v1 must be 64 hex digits")
            signatures.append(sig)
    if timestamp is None:
        raise SignatureError("malformed_signature", f"{SIGNATURE_HEADER}: t is missing")
    if not signatures:
        raise SignatureError("malformed_signature", f"{SIGNATURE_HEADER}: no v1 signature")
    if len(signatures) > MAX_SIGNATURES:
        raise SignatureError("malformed_signature", f"{SIGNATURE_HEADER}: too many v1 signatures")
    return ParsedSignature(timestamp, tuple(signatures))


def verify(
    header: str | None,
    content: bytes,
    secrets: Iterable[bytes],
    *,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> int:
    """Check a request's signature; return its timestamp or raise :class:`SignatureError`.

    :param header: the ``Gdpr-Signature`` value as received.
    :param content: the signed content (:func:`signed_content`).
    :param secrets: every active secret (current first, then the ones still accepted).
    :param tolerance: most seconds between ``t`` and now, either way.
    """
    parsed = parse_header(header)
    current = time.time() if now is None else now
    if abs(current - parsed.timestamp) > tolerance:
        raise SignatureError(
            "timestamp_outside_tolerance",
            f"the signature timestamp is more than {tolerance} s away from the server's clock",
        )
    matched = False
    for secret in secrets:
        expected = compute_signature(secret, parsed.timestamp, content)
        for candidate in parsed.signatures:
            # compare_digest takes the same time wherever the strings differ; no early exit
            # either, so timing does not tell which secret or which entry matched.
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureError("invalid_signature", "no signature matches an active signing secret")
    return parsed.timestamp
