""" "Was this person erased?": an email or phone in, the matching audit records out.

The input is personal data the ledger exists not to keep, so it is handled like a secret:

* it arrives only in a POST body (a URL lands in access logs, the browser's history and Referer
  headers), read here and nowhere else: no form parser or validation model that could echo it
  in an error (FastAPI's 422 answers include the input);
* it is normalised exactly as the intake does (:meth:`SubjectIdentifiers.parse`) and turned
  into keyed hashes at once; nothing stores, logs or returns it, and every error raised on the
  way names the field, never the value (:class:`LookupRefused`, ``from None``);
* records hold each identifier's own keyed hash (``identifier_hashes``) and one over all of them
  (``identifiers_hash``); each combination of the identifiers entered is hashed and matched
  against both, so any one identifier finds a record that has per-identifier hashes, and an
  older record (one hash over all) is found when every identifier it gave is entered.

Lookups are rate limited per user (:class:`RateLimiter`), and the form carries a token bound
to the session cookie on top of a same-origin check (:func:`csrf_refusal`), because a browser
sends the cookie with a cross-site POST too.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from gdpr_erasure.hashing import HashKey, identifiers_hash
from gdpr_erasure.identifiers import InvalidIdentifier, SubjectIdentifiers
from gdpr_erasure.store import AuditEntry, ComplianceStore, ErasureRequest, RequestStatus

#: What the form takes; email and phone are what an auditor usually has. A request is hashed over
#: every identifier it gave, so the other two help find one that also gave them.
FIELDS = ("email", "phone", "stripe_customer_id", "user_id")
CSRF_FIELD = "csrf"
#: A form with an email and a phone is far smaller; a larger body is refused unread.
MAX_BODY = 4096
DEFAULT_PER_MINUTE = 10
_CSRF_CONTEXT = b"gdpr-audit-lookup/1"


class LookupRefused(Exception):
    """The lookup cannot be answered; ``status`` and a message that never holds the input."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


class RateLimiter:
    """A token bucket per user, in this process: ``per_minute`` lookups, refilled evenly.

    :param per_minute: the bucket's size and refill per minute.
    :param clock: seconds, monotonic (tests pass their own).
    """

    def __init__(self, per_minute: int = DEFAULT_PER_MINUTE, clock: Callable[[], float] = time.monotonic):
        self.per_minute = per_minute
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # user -> (tokens, at)

    def take(self, user: str) -> int:
        """Spend one lookup of ``user``'s; 0 if allowed, else the seconds until the next one."""
        now = self.clock()
        rate = self.per_minute / 60.0
        with self._lock:
            tokens, at = self._buckets.get(user, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - at) * rate)
            if tokens >= 1:
                self._buckets[user] = (tokens - 1, now)
                return 0
            self._buckets[user] = (tokens, now)
            return max(1, math.ceil((1 - tokens) / rate)) if rate > 0 else 60


def csrf_token(session: str | None) -> str:
    """The form's token: an HMAC of a fixed context keyed with the session's token (the ``_token``
    cookie), which a cross-site page cannot read; empty without a cookie session. Every API
    server process derives the same one, so no secret needs sharing between them."""
    if not session:
        return ""
    return hmac.new(session.encode(), _CSRF_CONTEXT, hashlib.sha256).hexdigest()


def csrf_refusal(headers: Mapping[str, str], session: str | None, form_token: str | None) -> str | None:
    """Why this POST must be refused as possibly cross-site, or None.

    The ``Origin`` header (or, without it, ``Referer``) must name this server's host (``Host`` or
    ``X-Forwarded-Host``: a form cannot set either). A cookie session also needs the form's
    token. A caller with a bearer header and no cookie is not a browser acting for someone else.
    """
    hosts = {headers.get("host", "").lower()}
    forwarded = headers.get("x-forwarded-host", "").split(",")[0].strip().lower()
    if forwarded:
        hosts.add(forwarded)
    source = headers.get("origin") or headers.get("referer")
    if source and source != "null":
        if urlsplit(source).netloc.lower() not in hosts:
            return "refused: the form was sent from another site"
    elif session:
        return "refused: the browser sent neither Origin nor Referer with this form"
    if session and not hmac.compare_digest(form_token or "", csrf_token(session)):
        return "refused: the form is out of date or not from this page; reload the page and try again"
    return None


def read_form(body: bytes) -> dict[str, str]:
    """The urlencoded form's fields (first value of each). Raises :class:`LookupRefused` with a
    message that never quotes the body."""
    if len(body) > MAX_BODY:
        raise LookupRefused(413, f"the form is larger than {MAX_BODY} bytes")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise LookupRefused(400, "the form is not UTF-8 urlencoded") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        form.setdefault(name, value)
    return form


def hashes_of(key: HashKey, form: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """The keyed hashes to look for, and the names of the fields entered.

    One hash per non-empty combination of the entered identifiers, each normalised as the intake
    does: a request that gave only the email, only the phone, or both, is found.
    """
    given = {name: form.get(name, "") for name in FIELDS}
    entered = [name for name in FIELDS if given[name].strip()]
    if not entered:
        raise LookupRefused(400, "enter an email address or a phone number (or another identifier)")
    try:
        parsed = SubjectIdentifiers.parse(**{name: given[name] for name in entered})
    except InvalidIdentifier as exc:  # its message names the field and the rule, not the value
        raise LookupRefused(400, str(exc)) from None
    hashes = []
    for size in range(1, len(entered) + 1):
        for names in itertools.combinations(entered, size):
            subset = SubjectIdentifiers(**{name: getattr(parsed, name) for name in names})
            hashes.append(identifiers_hash(key, subset))
    return hashes, entered


@dataclass
class LookupAnswer:
    """What the ledger and the intake table hold for the entered identifiers.

    :param entries: audit records whose identifiers hash matches (completed erasures).
    :param unfinished: requests whose identifiers were replaced by a matching hash without an
        audit record (unresolved past their retention: ``needs_attention``).
    :param fields: the names of the fields entered (never their values).
    :param key_id: the hash key's id the hashes were computed with.
    """

    entries: list[AuditEntry]
    unfinished: list[ErasureRequest]
    fields: list[str]
    key_id: str


def look_up(store: ComplianceStore, key: HashKey, form: Mapping[str, str]) -> LookupAnswer:
    """The matching records for the identifiers in ``form`` (see the module docstring)."""
    hashes, entered = hashes_of(key, form)
    entries = store.audit_entries_by_identifiers_hash(hashes)
    audited = {entry.request_id for entry in entries}
    requests = store.requests_by_identifiers_hash(hashes)
    unfinished = [r for r in requests if r.id not in audited and r.status is not RequestStatus.COMPLETED]
    return LookupAnswer(entries, unfinished, entered, key.key_id)
