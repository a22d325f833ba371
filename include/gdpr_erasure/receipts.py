"""Signed erasure receipts: what was erased where, when, and with which evidence, and what the
erasure policy kept and why.

A receipt is self-contained JSON built from a request's ledger entries, signed with Ed25519::

    {"receipt": {...}, "signature": {"algorithm": "Ed25519", "key_id": "...", "value": "<base64>"}}

A request closed ``completed`` or ``completed_with_exemptions`` gets one. Its ``statement`` says
in plain words what was erased and what was kept; ``kept`` lists each object kept (system, kind,
keyed id, action, reason, legal basis, review date or end of retention) as the request's latest
ledger entry states it. When reviews followed the erasure record (a kept customer checked again at
its review date, docs/policy.md), the receipt covers the **latest entry**: its ledger proof is
the inclusion proof of that entry, the earlier ones are named by ``seq`` and ``record_hash``
(``audit`` the erasure record, ``reviews`` each review), and what the reviews erased is merged
into ``erased`` (schema ``gdpr-erasure-receipt/2``; receipts of schema 1 still verify).

The signature covers the canonical JSON of ``receipt`` (sorted keys, no whitespace), so anyone
with the public key can check it offline (``gdpr-erasure receipt verify FILE --public-key PEM``)
and any changed byte of the content fails. A receipt holds no raw identifier, only the keyed
hash, so it can be handed to the requester while the hash key is withheld. The signing key is
the Airflow connection ``gdpr_receipt_key`` (password: PEM private key; login: key id).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gdpr_erasure.ledger.entries import CLOSED_OUTCOMES
from gdpr_erasure.store import AuditEntry
from gdpr_erasure.store.chain import ERASURE, canonical_json

#: Schema 2 (issue 15): ``outcome``, ``statement``, ``kept``, ``policy``, ``reviews``; the ledger
#: proof covers the request's latest entry. Schema 1 receipts verify as before.
RECEIPT_SCHEMA = "gdpr-erasure-receipt/2"
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


def build_receipt(
    entry: AuditEntry, issued_at: datetime | None = None, reviews: Sequence[AuditEntry] = ()
) -> dict[str, Any]:
    """The receipt content for a closed request, from its erasure record and its reviews.

    :param entry: the request's erasure record (``completed`` or ``completed_with_exemptions``).
    :param issued_at: the issue time (now by default).
    :param reviews: the review entries that followed the record, in ledger order
        (:func:`gdpr_erasure.ledger.entries.request_entries`); the latest states what is kept now.
    :raises ReceiptError: the record does not close the request.
    """
    record = entry.record
    if entry.kind != ERASURE or record.get("outcome") not in CLOSED_OUTCOMES:
        raise ReceiptError(f"request {entry.request_id} is not completed")
    latest = reviews[-1].record if reviews else record
    twilio, segment, stripe = record["twilio"], record["segment"], record["stripe"]
    customers = _erased_customers(stripe)
    for review in reviews:
        customers.update(_erased_customers(review.record.get("stripe") or {}, review.record.get("review")))
    kept = [_kept_item(item) for item in latest.get("kept") or []]
    erased = {
        "stripe": {
            "method": stripe.get("method"),
            "customers": dict(sorted(customers.items())),
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
    }
    return {
        "schema": RECEIPT_SCHEMA,
        "request_id": entry.request_id,
        "issued_at": (issued_at or datetime.now(UTC)).isoformat(),
        "received_at": record["received_at"],
        "completed_at": record["completed_at"],
        "outcome": latest.get("outcome") or "completed",
        "statement": [erased_line(erased), *([kept_line(item) for item in kept] or ["Kept: nothing."])],
        "subject": record["subject"],  # keyed hash only
        "erased": erased,
        "kept": kept,
        "policy": latest.get("policy"),
        "reviews": [
            {
                "review": review.record.get("review"),
                "seq": review.seq,
                "record_hash": review.record_hash,
                "prev_hash": review.prev_hash,
                "reviewed_at": review.record.get("reviewed_at"),
                "outcome": review.record.get("outcome"),
            }
            for review in reviews
        ],
        "audit": {"seq": entry.seq, "record_hash": entry.record_hash, "prev_hash": entry.prev_hash},
    }


#: The outcome of a customer the erasure policy kept (no write): not erased, listed under "kept".
_KEPT = "kept"
#: The fields of a kept object a receipt carries, in the audit record's words (docs/policy.md).
KEPT_FIELDS = (
    "system",
    "kind",
    "id",
    "action",
    "cases",
    "reason",
    "legal_basis",
    "review_date",
    "retained_until",
)


def _erased_customers(stripe: dict[str, Any], review: int | None = None) -> dict[str, dict[str, Any]]:
    """The Stripe customers a ledger entry erased, by tag, each with the evidence that proves it;
    ``review`` names the review that erased it (None: the erasure itself)."""
    proofs = (stripe.get("proof") or {}).get("customers") or {}
    erased = {}
    for cid, customer in (stripe.get("customers") or {}).items():
        if customer.get("outcome") == _KEPT:
            continue  # kept by the erasure policy: listed under "kept", never as erased
        erased[cid] = {"outcome": customer.get("outcome"), "deleted_evidence": proofs.get(cid)}
        if review is not None:
            erased[cid]["review"] = review
    return erased


def _kept_item(item: dict[str, Any]) -> dict[str, Any]:
    return {name: item.get(name) for name in KEPT_FIELDS}


def erased_line(erased: dict[str, Any]) -> str:
    """What was erased, in one plain sentence (ids are tags and provider ids, never an identifier)."""
    parts = []
    twilio, segment, stripe = erased["twilio"], erased["segment"], erased["stripe"]
    if twilio.get("memory_profiles"):
        parts.append(f"{len(twilio['memory_profiles'])} Twilio Memory profile(s)")
    history = ", ".join(f"{kind} {n}" for kind, n in (twilio.get("history_deleted") or {}).items() if n)
    if history:
        parts.append(f"Twilio history ({history})")
    if segment.get("regulation_id"):
        parts.append(f"Segment profile (regulation {segment['regulation_id']}, {segment.get('status')})")
    for cid, customer in (stripe.get("customers") or {}).items():
        at_review = f" at review {customer['review']}" if customer.get("review") is not None else ""
        parts.append(f"Stripe customer {cid} ({customer.get('outcome')}{at_review})")
    return "Erased: " + ("; ".join(parts) if parts else "nothing was found to erase") + "."


def kept_line(item: dict[str, Any]) -> str:
    """One kept object in one plain sentence: where, what, why, on which basis, until when."""
    when = (
        f"reviewed again from {item['review_date'][:10]}"
        if item.get("review_date")
        else f"kept until {item['retained_until'][:10]}"
        if item.get("retained_until")
        else "kept until a person decides"
    )
    cases = ", ".join(item.get("cases") or []) or f"the {item.get('kind')} rule"
    basis = f"; legal basis: {item['legal_basis']}" if item.get("legal_basis") else ""
    return (
        f"Kept: {item.get('system')} {item.get('kind')} {item.get('id')}, {item.get('action')} "
        f"({cases}): {item.get('reason')}{basis}; {when}."
    )


def receipt_lines(content: dict[str, Any]) -> list[str]:
    """What ``receipt verify`` prints after the signature and proof checked: the outcome, each
    object kept, and the reviews the receipt covers (a receipt of schema 1 has none of these)."""
    lines = [f"outcome: {content.get('outcome') or 'completed'}"]
    lines += [kept_line(item) for item in content.get("kept") or []]
    for review in content.get("reviews") or []:
        lines.append(
            f"review {review.get('review')} (audit seq {review.get('seq')}, {review.get('reviewed_at')}): "
            f"{review.get('outcome')}"
        )
    return lines


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
