"""Legal holds: what must not be erased yet, and why (GDPR Art. 17(3): legal claims, litigation).

A hold names one request, or one person by one identifier (an email address or a phone number).
A hold on a person is stored as that identifier's keyed hash, normalised exactly as the intake
normalises it, the same per-identifier hash the audit records carry as
``subject.identifier_hashes``: never the identifier in clear, yet it matches every request that
gave it, present or future.

While a hold is active (not released, and its ``until`` day, if any, not past in UTC):

* ``gdpr-erasure hold place`` puts the requests it names that wait for a run ``on_hold`` at once;
* a run's claim puts the candidates it names ``on_hold`` instead of claiming them, in the
  claim's own transaction (:meth:`~gdpr_erasure.store.ComplianceStore.claim`);
* every erasure step asks again, per request, right before it writes to a provider
  (:class:`~gdpr_erasure.operators.base.ErasureStepOperator`): a hold placed after the claim
  stops the writes still to come, and the request goes ``on_hold``.

``on_hold`` is not a failure: the run stays green, and the steps already done stay recorded.
Releasing the last hold on a request (or its ``until`` passing) sends it back to ``pending``; the
next run resumes where it stopped. Placing and releasing are entries in the audit ledger (kind
``hold``, :func:`hold_record`), so the ledger shows why an erasure waited. docs/holds.md.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from gdpr_erasure.hashing import ALGORITHM, HashKey, identifier_hashes, load_hash_key
from gdpr_erasure.identifiers import InvalidIdentifier, SubjectIdentifiers
from gdpr_erasure.pii import scrub
from gdpr_erasure.store import (
    AuditEntry,
    ComplianceStore,
    LegalHold,
    RequestNotFound,
    RequestStatus,
)
from gdpr_erasure.store.chain import HOLD
from gdpr_erasure.store.types import utcnow

#: The schema of a hold's ledger entry.
HOLD_SCHEMA = "gdpr-erasure-hold/1"
PLACED = "placed"
RELEASED = "released"
#: The identifiers a hold on a person may name (a hold on a Stripe customer id or a user id would
#: need its own rules: no request holds only those in practice).
IDENTIFIER_TYPES = ("email", "phone")
#: Longest reason kept (it goes into the ledger, which keeps it forever).
MAX_REASON = 500
#: Who placed or released a hold: an OS user name or ``--by``.
MAX_BY = 128

# ISO dates are left out of the phone check below: "until 2026-05-01" is not a phone number.
_ISO_DATE = re.compile(r"(?<!\d)\d{4}-\d{2}-\d{2}(?!\d)")


class HoldError(ValueError):
    """A hold that cannot be placed or released as asked: one line, no identifier."""


@dataclass(frozen=True)
class HoldChange:
    """What placing or releasing a hold did.

    :param hold: the hold, as stored after the change.
    :param entry: its entry in the audit ledger.
    :param requests: the requests it put ``on_hold`` (placing) or sent back to ``pending``
        (releasing).
    """

    hold: LegalHold
    entry: AuditEntry
    requests: list[str]


def new_hold_id() -> str:
    return f"hold-{secrets.token_hex(8)}"


def check_reason(text: str | None, *, what: str = "reason") -> str:
    """The reason as kept: one line, trimmed, at most :data:`MAX_REASON` characters, and nothing
    that looks like an email address, a phone number (a run of 7 or more digits) or a Stripe
    customer id: it goes into the audit ledger, which is append-only and kept for years, so an
    identifier there could never be erased. Raises :class:`HoldError` saying what to change.

    :param text: the reason ops gave.
    :param what: its name in the message (``reason``, ``release reason``).
    """
    reason = " ".join((text or "").split())
    if not reason:
        raise HoldError(f"the {what} is empty: say why (a case or ticket reference, a legal basis)")
    if len(reason) > MAX_REASON:
        raise HoldError(f"the {what} is longer than {MAX_REASON} characters: shorten it")
    if any(not char.isprintable() for char in reason):
        raise HoldError(f"the {what} contains a control character: remove it")
    undated = _ISO_DATE.sub("date", reason)
    if scrub(undated) != undated:
        if "@" in undated or "%40" in undated.lower():
            kind = "an email address"
        elif "cus_" in undated:
            kind = "a Stripe customer id"
        else:
            kind = "a phone number (7 or more digits in a row)"
        raise HoldError(
            f"the {what} looks like it contains {kind}; the ledger keeps it forever, so name the "
            "case instead (e.g. LEGAL-1234), never the person"
        )
    return reason


def check_until(until: date | None, today: date | None = None) -> date | None:
    """``until`` if it is today or later (UTC); a hold ending in the past would be no hold."""
    if until is not None and until < (today or utcnow().date()):
        raise HoldError(f"--until {until.isoformat()} is in the past: give today or a later date")
    return until


def identifier_target(key: HashKey, kind: str, value: str) -> str:
    """The keyed hash a hold on a person stores for ``value``: normalised as the intake does
    (:meth:`SubjectIdentifiers.parse`), hashed as the audit records' ``identifier_hashes``.

    :param key: the identifier hash key.
    :param kind: ``email`` or ``phone``.
    :param value: the identifier as ops typed it (never logged, never stored).
    """
    if kind not in IDENTIFIER_TYPES:
        raise HoldError(f"a hold names a request, an email or a phone, not {kind!r}")
    try:
        identifiers = SubjectIdentifiers.parse(**{kind: value})
    except InvalidIdentifier as exc:  # names the field and the problem, never the value
        raise HoldError(str(exc)) from None
    return identifier_hashes(key, identifiers)[kind]


class IdentifierHasher:
    """Each identifier's keyed hash, by field name (what the store matches holds on a person
    with), the key loaded once on first use, safely from a batch's threads. The store calls it
    only while a hold on a person is active, so a pipeline without such holds never loads the key
    for it.

    :param key: the hash key; None loads it (:func:`~gdpr_erasure.hashing.load_hash_key`) when
        first needed.
    """

    def __init__(self, key: HashKey | None = None) -> None:
        self._key = key
        self._lock = threading.Lock()

    def __reduce__(self):
        # Airflow deep-copies operators (a lock cannot be copied); a copy loads its own key.
        return (IdentifierHasher, ())

    def __call__(self, identifiers: SubjectIdentifiers) -> Mapping[str, str]:
        return identifier_hashes(self.key, identifiers)

    @property
    def key(self) -> HashKey:
        with self._lock:
            if self._key is None:
                self._key = load_hash_key()
            return self._key


def holds_on_another_key(holds: list[LegalHold], key: HashKey) -> list[LegalHold]:
    """The holds on people whose hash was made with another key than ``key``: after a rotation of
    ``gdpr_hash_key`` they match no request any more, and must be placed again."""
    return [h for h in holds if h.target_type != "request" and h.hash_key_id != key.key_id]


def hold_record(hold: LegalHold, action: str, at: datetime, reason: str) -> dict[str, Any]:
    """A hold's entry in the audit ledger: the hold, what happened to it, why, and when. Its
    target is a request id or a keyed hash, never an identifier; who placed it stays in the
    ``legal_holds`` table (a person's name does not belong in a record kept forever).

    :param hold: the hold.
    :param action: :data:`PLACED` or :data:`RELEASED`.
    :param at: when.
    :param reason: why it was placed, or why released.
    """
    record: dict[str, Any] = {
        "schema": HOLD_SCHEMA,
        "kind": HOLD,
        "hold_id": hold.hold_id,
        "action": action,
        "target_type": hold.target_type,
        "target": hold.target,
        "reason": reason,
        "until": hold.until.isoformat() if hold.until else None,
        "at": at.isoformat(),
    }
    if hold.target_type != "request":
        record |= {"hash_algorithm": ALGORITHM, "hash_key_id": hold.hash_key_id}
    return record


def place_hold(
    store: ComplianceStore,
    *,
    reason: str,
    placed_by: str,
    request_id: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    until: date | None = None,
    key: HashKey | None = None,
) -> HoldChange:
    """Place a hold on one request or one person (exactly one of ``request_id``, ``email``,
    ``phone``): store it, record it in the ledger and put the requests it names that wait for a
    run ``on_hold``, in one transaction. Raises :class:`HoldError` (one line) when it cannot.

    :param store: the compliance store.
    :param reason: why (:func:`check_reason`).
    :param placed_by: who.
    :param request_id: the request to hold.
    :param email: the person's email address, as given (normalised here, then hashed).
    :param phone: the person's phone number, as given.
    :param until: the hold's last day (UTC); None: until released.
    :param key: the identifier hash key (loaded if None and the hold names a person).
    """
    targets = {"request": request_id, "email": email, "phone": phone}
    given = [kind for kind, value in targets.items() if value]
    if len(given) != 1:
        raise HoldError("name exactly one of --request ID, --email or --phone")
    kind = given[0]
    reason = check_reason(reason)
    until = check_until(until)
    placed_by = _who(placed_by)
    key_id = None
    if kind == "request":
        target = str(request_id)
        try:
            request = store.get(target)
        except RequestNotFound:
            raise HoldError(f"no request {target} in the compliance store") from None
        if request.status is RequestStatus.COMPLETED:
            raise HoldError(f"request {target} is completed: its data is erased already, nothing to hold")
    else:
        key = key or load_hash_key()
        target, key_id = identifier_target(key, kind, str(targets[kind])), key.key_id
    hold = LegalHold(
        hold_id=new_hold_id(),
        target_type=kind,
        target=target,
        reason=reason,
        placed_at=utcnow(),
        placed_by=placed_by,
        until=until,
        hash_key_id=key_id,
    )
    entry, held = store.place_hold(
        hold, hold_record(hold, PLACED, hold.placed_at, reason), hashes_of=IdentifierHasher(key)
    )
    return HoldChange(hold, entry, held)


def release_hold(
    store: ComplianceStore,
    hold_id: str,
    *,
    reason: str,
    released_by: str,
    key: HashKey | None = None,
) -> HoldChange:
    """Release a hold: record it in the ledger and send the ``on_hold`` requests no other active
    hold names back to ``pending``, in one transaction. Raises the store's ``HoldNotFound`` or
    ``HoldNotActive`` for a wrong id, :class:`HoldError` for a bad reason.

    :param store: the compliance store.
    :param hold_id: the hold.
    :param reason: why it is released (:func:`check_reason`).
    :param released_by: who.
    :param key: the identifier hash key (loaded if None and needed: other holds on people).
    """
    reason = check_reason(reason, what="release reason")
    released_by = _who(released_by)
    hold = store.get_hold(hold_id)
    now = utcnow()
    entry, freed = store.release_hold(
        hold_id,
        released_by=released_by,
        reason=reason,
        record=hold_record(hold, RELEASED, now, reason),
        released_at=now,
        hashes_of=IdentifierHasher(key),
    )
    return HoldChange(store.get_hold(hold_id), entry, freed)


def _who(name: str | None) -> str:
    who = " ".join((name or "").split())
    if not who:
        raise HoldError("say who you are: --by NAME")
    if len(who) > MAX_BY:
        raise HoldError(f"--by is longer than {MAX_BY} characters")
    return who
