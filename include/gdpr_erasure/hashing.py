"""Keyed hashes of identifiers: how the pipeline remembers *that* it erased someone without
remembering *who*.

A plain SHA-256 of an email is still personal data: anyone can hash a guessed address and
compare. HMAC-SHA256 with a secret key cannot be reversed by guessing without the key, so the
audit ledger and the intake table keep only keyed hashes. The key comes from the Airflow
connection ``gdpr_hash_key`` (its password) or, failing that, the Airflow variable
``gdpr_hash_key``; it is registered with the secrets masker so it never shows in a log.
Rotate it by adding a new key id; old records stay verifiable with the old key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from gdpr_erasure.identifiers import SubjectIdentifiers

HASH_KEY_CONN_ID = "gdpr_hash_key"
HASH_KEY_VARIABLE = "gdpr_hash_key"
HASH_KEY_ENV = "GDPR_HASH_KEY"  # for the standalone intake and scripts outside Airflow
ALGORITHM = "HMAC-SHA256"


class MissingHashKey(RuntimeError):
    pass


@dataclass(frozen=True)
class HashKey:
    key_id: str
    secret: bytes

    def __repr__(self) -> str:
        return f"HashKey(key_id={self.key_id!r})"


def load_hash_key() -> HashKey:
    """The current key: connection ``gdpr_hash_key`` (login = key id), variable, or env var."""
    secret, key_id = _from_airflow()
    if not secret:
        secret, key_id = os.environ.get(HASH_KEY_ENV), os.environ.get(f"{HASH_KEY_ENV}_ID", "default")
    if not secret:
        raise MissingHashKey(
            f"no identifier hash key: set the Airflow connection {HASH_KEY_CONN_ID!r} (password) "
            f"or variable {HASH_KEY_VARIABLE!r}"
        )
    if len(secret) < 32:
        raise MissingHashKey("the identifier hash key must be at least 32 characters")
    try:
        from airflow.sdk.log import mask_secret

        mask_secret(secret)
    except ImportError:  # pragma: no cover
        pass
    return HashKey(key_id=key_id or "default", secret=secret.encode())


def _from_airflow() -> tuple[str | None, str | None]:
    try:
        from airflow.sdk import BaseHook, Variable
        from airflow.sdk.exceptions import AirflowNotFoundException
    except ImportError:  # pragma: no cover
        return None, None
    try:
        conn = BaseHook.get_connection(HASH_KEY_CONN_ID)
        return conn.password, conn.login
    except AirflowNotFoundException:
        pass
    return Variable.get(HASH_KEY_VARIABLE, default=None), None


def keyed_hash(key: HashKey, value: str) -> str:
    return hmac.new(key.secret, value.encode("utf-8"), hashlib.sha256).hexdigest()


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
