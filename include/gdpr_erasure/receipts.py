"""Signed erasure receipts: what was erased where, when, and with which evidence.

A receipt is self-contained JSON built from a request's audit record, signed with Ed25519::

    {"receipt": {...}, "signature": {"algorithm": "Ed25519", "key_id": "...", "value": "<base64>"}}

The signature covers the canonical JSON of ``receipt`` (sorted keys, no whitespace), so anyone
with the public key can check it offline (``gdpr-erasure receipt verify FILE --public-key PEM``)
and any changed byte of the content fails. A receipt holds no raw identifier, only the keyed
hash, so it can be handed to the requester while the hash key is withheld. The signing key is
the Airflow connection ``gdpr_receipt_key`` (password: PEM private key; login: key id).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gdpr_erasure.store import AuditEntry
from gdpr_erasure.store.chain import canonical_json

RECEIPT_SCHEMA = "gdpr-erasure-receipt/1"
RECEIPT_KEY_CONN_ID = "gdpr_receipt_key"


class ReceiptError(Exception):
    pass


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    private_key: Ed25519PrivateKey

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"

    def public_pem(self) -> str:
        return (
            self.private_key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )


def generate_signing_key(key_id: str = "receipts-1") -> tuple[SigningKey, str]:
    """A new key and its private PEM (for the ``gdpr_receipt_key`` connection's password)."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return SigningKey(key_id, private), pem


def load_signing_key(conn_id: str = RECEIPT_KEY_CONN_ID) -> SigningKey:
    """The signing key from the Airflow connection (password: PEM; login: key id)."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    if not conn.password:
        raise ReceiptError(f"connection {conn_id} has no private key (password)")
    return SigningKey(conn.login or "receipts", _private_key_from_pem(conn.password))


def _private_key_from_pem(pem: str) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ReceiptError("the receipt key must be an Ed25519 private key")
    return key


def build_receipt(entry: AuditEntry, issued_at: datetime | None = None) -> dict[str, Any]:
    """The receipt content for a completed request, taken from its audit record."""
    record = entry.record
    if record.get("outcome") != "completed":
        raise ReceiptError(f"request {entry.request_id} is not completed")
    twilio, segment, stripe = record["twilio"], record["segment"], record["stripe"]
    return {
        "schema": RECEIPT_SCHEMA,
        "request_id": entry.request_id,
        "issued_at": (issued_at or datetime.now(UTC)).isoformat(),
        "received_at": record["received_at"],
        "completed_at": record["completed_at"],
        "subject": record["subject"],  # keyed hash only
        "erased": {
            "stripe": {
                "method": stripe.get("method"),
                "customers": {
                    cid: {
                        "outcome": c.get("outcome"),
                        "deleted_evidence": (stripe.get("proof") or {}).get("customers", {}).get(cid),
                    }
                    for cid, c in (stripe.get("customers") or {}).items()
                },
                "redaction_job_id": stripe.get("redaction_job_id"),
                "outcome": stripe.get("purge"),
            },
            "twilio": {
                "memory_profiles": twilio.get("memory_profile_ids", []),
                "memory_profiles_gone": (twilio.get("profile_proof") or {}).get("gone_at"),
                "history_deleted": twilio.get("history_deleted", {}),
            },
            "segment": {
                "regulation_id": segment.get("regulation_id"),
                "regulation_type": segment.get("regulation_type"),
                "status": (segment.get("proof") or {}).get("status") or segment.get("purge"),
                "finished_at": (segment.get("proof") or {}).get("finished_at"),
                "reason": segment.get("reason"),
            },
        },
        "audit": {"seq": entry.seq, "record_hash": entry.record_hash, "prev_hash": entry.prev_hash},
    }


def sign_receipt(content: dict[str, Any], key: SigningKey) -> dict[str, Any]:
    signature = key.private_key.sign(canonical_json(content).encode())
    return {
        "receipt": content,
        "signature": {
            "algorithm": "Ed25519",
            "key_id": key.key_id,
            "value": base64.b64encode(signature).decode(),
        },
    }


def verify_receipt(document: dict[str, Any], public_pem: str) -> dict[str, Any]:
    """Check the signature offline; returns the receipt content or raises :class:`ReceiptError`."""
    try:
        content, signature = document["receipt"], document["signature"]
        if signature.get("algorithm") != "Ed25519":
            raise ReceiptError(f"unsupported algorithm {signature.get('algorithm')!r}")
        public = serialization.load_pem_public_key(public_pem.encode())
        if not isinstance(public, Ed25519PublicKey):
            raise ReceiptError("the public key is not an Ed25519 key")
        public.verify(base64.b64decode(signature["value"], validate=True), canonical_json(content).encode())
    except InvalidSignature:
        raise ReceiptError(
            "signature does not match the receipt: it was altered or signed by another key"
        ) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ReceiptError(f"not a receipt: {type(exc).__name__}") from None
    return content


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"
