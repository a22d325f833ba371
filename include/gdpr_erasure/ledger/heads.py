"""Signed tree heads: the ledger's size and Merkle root at a moment, signed with Ed25519.

A head is canonical JSON; its signature covers the head without the ``signature`` field::

    {"schema": "gdpr-erasure-tree-head/1", "log": "gdpr-erasure", "tree_size": 42,
     "root_hash": "<hex>", "timestamp": "<ISO 8601 UTC>", "key_id": "ledger-1",
     "signature": "<base64 Ed25519>"}

The key is the Airflow connection ``gdpr_ledger_key`` (password: Ed25519 private key in PEM;
login: key id), apart from the compliance database, so whoever controls that database cannot
sign a head for a rewritten ledger.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gdpr_erasure.receipts import SigningKey, _private_key_from_pem
from gdpr_erasure.store.chain import canonical_json

HEAD_SCHEMA = "gdpr-erasure-tree-head/1"
LOG_NAME = "gdpr-erasure"
LEDGER_KEY_CONN_ID = "gdpr_ledger_key"
#: In a ``public_keys`` mapping: the key for heads of any key id (a PEM given by hand names none).
ANY_KEY_ID = "*"


class LedgerError(Exception):
    """The ledger's evidence does not hold; the message names what broke."""


@dataclass(frozen=True)
class TreeHead:
    tree_size: int
    root_hash: str
    timestamp: str
    key_id: str
    signature: str
    schema: str = HEAD_SCHEMA
    log: str = LOG_NAME

    def signed_part(self) -> bytes:
        body = asdict(self)
        del body["signature"]
        return canonical_json(body).encode()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return canonical_json(self.as_dict())

    @property
    def root(self) -> bytes:
        return bytes.fromhex(self.root_hash)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TreeHead:
        try:
            head = cls(
                tree_size=int(data["tree_size"]),
                root_hash=str(data["root_hash"]),
                timestamp=str(data["timestamp"]),
                key_id=str(data["key_id"]),
                signature=str(data["signature"]),
                schema=str(data.get("schema", "")),
                log=str(data.get("log", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise LedgerError(f"not a tree head: {type(exc).__name__} {exc}") from None
        if head.schema != HEAD_SCHEMA or head.log != LOG_NAME:
            raise LedgerError(f"not a {LOG_NAME} tree head ({head.schema!r})")
        return head

    @classmethod
    def from_json(cls, text: str) -> TreeHead:
        try:
            return cls.from_dict(json.loads(text))
        except ValueError:
            raise LedgerError("a tree head must be JSON") from None


def sign_head(tree_size: int, root: bytes, key: SigningKey, now: datetime | None = None) -> TreeHead:
    unsigned = TreeHead(
        tree_size=tree_size,
        root_hash=root.hex(),
        timestamp=(now or datetime.now(UTC)).isoformat(),
        key_id=key.key_id,
        signature="",
    )
    signature = key.private_key.sign(unsigned.signed_part())
    return TreeHead(**{**unsigned.as_dict(), "signature": base64.b64encode(signature).decode()})


def verify_head(head: TreeHead, public_keys: dict[str, Ed25519PublicKey]) -> None:
    """Raise :class:`LedgerError` unless ``head`` carries a valid signature of a known key."""
    public = public_keys.get(head.key_id) or public_keys.get(ANY_KEY_ID)
    if public is None:
        raise LedgerError(f"tree head of size {head.tree_size}: unknown key id {head.key_id!r}")
    try:
        public.verify(base64.b64decode(head.signature, validate=True), head.signed_part())
    except (InvalidSignature, ValueError):
        raise LedgerError(
            f"tree head of size {head.tree_size}: the signature does not match (altered or forged)"
        ) from None


def load_ledger_key(conn_id: str = LEDGER_KEY_CONN_ID) -> SigningKey | None:
    """The signing key from its Airflow connection, or None when the connection is not defined."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None
    if not conn.password:
        raise LedgerError(f"connection {conn_id} has no private key (password)")
    return SigningKey(conn.login or "ledger", _private_key_from_pem(conn.password))


def public_key_from_pem(pem: str) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, Ed25519PublicKey):
        raise LedgerError("the ledger's public key must be an Ed25519 key")
    return key
