"""Keyed hashes of identifiers: how the pipeline remembers *that* it erased someone without
remembering *who*.

A plain SHA-256 of an email is still personal data: anyone can hash a guessed address and
compare. HMAC-SHA256 with a secret key cannot be reversed by guessing without the key, so the
audit ledger and the intake table keep only keyed hashes. The key comes only from the password
of the Airflow connection ``gdpr_hash_key`` (login: key id); outside Airflow's components that
is ``AIRFLOW_CONN_GDPR_HASH_KEY`` or a secrets backend. An Airflow *variable* of that name is
refused: Airflow's REST API returns variable values in clear, connection passwords it does not.
The key is registered with the secrets masker so it never shows in a log. Rotate it by adding a
new key id; old records stay verifiable with the old key.

Stripe ``cus_`` ids are identifiers too: the ledger, receipts, exports and task logs hold their
keyed hash, and :func:`stripe_tag` (its first :data:`TAG_LENGTH` hex characters, prefixed
``cus#``) is the short form that ops match with ``gdpr-erasure hash --stripe-customer``.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from dataclasses import dataclass

from gdpr_erasure.identifiers import SubjectIdentifiers

HASH_KEY_CONN_ID = "gdpr_hash_key"
HASH_KEY_VARIABLE = "gdpr_hash_key"  # refused: see load_hash_key
ALGORITHM = "HMAC-SHA256"
#: Hex characters of a Stripe customer's keyed hash shown as its tag (48 bits: no two customers
#: an operator compares will share one).
TAG_LENGTH = 12
STRIPE_TAG_PREFIX = "cus#"


class MissingHashKey(RuntimeError):
    pass


@dataclass(frozen=True)
class HashKey:
    key_id: str
    secret: bytes

    def __repr__(self) -> str:
        return f"HashKey(key_id={self.key_id!r})"


def load_hash_key() -> HashKey:
    """The current key: the password of connection ``gdpr_hash_key`` (login = key id).

    Raises :class:`MissingHashKey` with what to do when there is none, and when the key is still
    in the variable ``gdpr_hash_key`` (which Airflow's REST API returns in clear).
    """
    secret, key_id = _from_connection()
    if not secret:
        if _variable_exists():
            raise MissingHashKey(
                f"the identifier hash key is in the Airflow variable {HASH_KEY_VARIABLE!r}, which "
                f"Airflow's REST API returns in clear: move it into the password of the connection "
                f"{HASH_KEY_CONN_ID!r} (login: its key id) and delete the variable"
            )
        raise MissingHashKey(
            f"no identifier hash key: set the password of the Airflow connection {HASH_KEY_CONN_ID!r} "
            f"(outside Airflow: AIRFLOW_CONN_{HASH_KEY_CONN_ID.upper()})"
        )
    if len(secret) < 32:
        raise MissingHashKey("the identifier hash key must be at least 32 characters")
    try:
        from airflow.sdk.log import mask_secret

        mask_secret(secret)
    except ImportError:  # pragma: no cover
        pass
    return HashKey(key_id=key_id or "default", secret=secret.encode())


def _from_connection() -> tuple[str | None, str | None]:
    try:
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException
    except ImportError:  # pragma: no cover
        return None, None
    try:
        conn = BaseHook.get_connection(HASH_KEY_CONN_ID)
    except AirflowNotFoundException:
        return None, None
    return conn.password, conn.login


def _variable_exists() -> bool:
    """Whether the refused variable is set (only asked when the connection is missing, to say
    what to do; its value is never used)."""
    try:
        from airflow.sdk import Variable

        return Variable.get(HASH_KEY_VARIABLE, default=None) is not None
    except Exception:  # cannot tell: the "no key" message still says where the key belongs
        return False


def keyed_hash(key: HashKey, value: str) -> str:
    return hmac.new(key.secret, value.encode("utf-8"), hashlib.sha256).hexdigest()


def stripe_tag(key: HashKey, customer_id: str) -> str:
    """The short tag of a Stripe customer id: ``cus#`` and the first :data:`TAG_LENGTH` hex
    characters of its keyed hash (the full hash is in the audit record next to it). A value
    that is already a tag is returned as it is, so tagging twice changes nothing."""
    if customer_id.startswith(STRIPE_TAG_PREFIX):
        return customer_id
    return tag_of_hmac(keyed_hash(key, customer_id))


class StripeTagger:
    """``stripe_tag`` with the key loaded once, on first use, safely from a batch's threads (a
    task tags many customers; each key lookup is a round trip to the API server)."""

    def __init__(self) -> None:
        self._key: HashKey | None = None
        self._lock = threading.Lock()

    def __reduce__(self):
        # Airflow deep-copies operators (a lock cannot be copied); a copy loads its own key, so
        # the key is never copied or pickled either.
        return (StripeTagger, ())

    def __call__(self, customer_id: str) -> str:
        with self._lock:
            if self._key is None:
                self._key = load_hash_key()
        return stripe_tag(self._key, customer_id)


def tag_of_hmac(full_hash: str) -> str:
    """The tag of a Stripe customer whose full keyed hash is ``full_hash``."""
    return STRIPE_TAG_PREFIX + full_hash[:TAG_LENGTH]


def identifiers_hash(key: HashKey, identifiers: SubjectIdentifiers) -> str:
    """One hash over all normalised identifiers, in a fixed order with field names, so the same
    person's request always hashes the same and no two field combinations collide."""
    parts = [
        f"email={identifiers.email or ''}",
        f"phone={identifiers.phone or ''}",
        f"stripe_customer_id={identifiers.stripe_customer_id or ''}",
        f"user_id={identifiers.user_id or ''}",
    ]
    return keyed_hash(key, "\n".join(parts))


def identifier_hashes(key: HashKey, identifiers: SubjectIdentifiers) -> dict[str, str]:
    """The keyed hash of each identifier on its own (:func:`identifiers_hash` of a subject with
    only that identifier), by field name: what lets "was this person erased?" find a request by
    any one of the identifiers it gave, not only by all of them together."""
    return {
        name: identifiers_hash(key, SubjectIdentifiers(**{name: getattr(identifiers, name)}))
        for name in ("email", "phone", "stripe_customer_id", "user_id")
        if getattr(identifiers, name)
    }
