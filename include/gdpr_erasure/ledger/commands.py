"""The ledger's command line: ``audit head``, ``audit verify``, and receipts with their ledger proof.

Every error is one line and a non-zero exit; nothing here prints an identifier (records hold
keyed hashes only).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from gdpr_erasure.ledger.entries import request_entries, review_ledger_key
from gdpr_erasure.ledger.heads import (
    ANY_KEY_ID,
    LEDGER_KEY_CONN_ID,
    LedgerError,
    TreeHead,
    load_ledger_key,
    public_key_from_pem,
    verify_head,
)
from gdpr_erasure.ledger.log import Ledger, leaf_of
from gdpr_erasure.ledger.merkle import ProofError, verify_consistency, verify_inclusion
from gdpr_erasure.ledger.witness import Witness, witness_from_connection
from gdpr_erasure.receipts import KEPT_FIELDS, ReceiptError, SigningKey, build_receipt, sign_receipt
from gdpr_erasure.store import AuditEntry
from gdpr_erasure.store.chain import REVIEW, chain_hash


def head_document(ledger: Ledger, from_size: int | None = None) -> dict[str, Any]:
    """The latest signed head, and with ``from_size`` the proof that it extends that size."""
    head = ledger.latest_head()
    if head is None:
        raise LedgerError("no signed tree head yet: a run's write_ledger_record signs one (gdpr_ledger_key)")
    document: dict[str, Any] = {"head": head.as_dict()}
    if from_size is not None:
        proof = ledger.consistency(from_size, head.tree_size)
        document["consistency"] = {"from_size": from_size, "proof": [p.hex() for p in proof]}
    return document


def read_head_file(path: str) -> tuple[TreeHead, dict[str, Any] | None]:
    """A head from a file: a bare head, or ``audit head``'s ``{"head", "consistency"?}``."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise LedgerError(f"cannot read the head file {path}: {type(exc).__name__}") from None
    if isinstance(data, dict) and "head" in data:
        return TreeHead.from_dict(data["head"]), data.get("consistency")
    return TreeHead.from_dict(data), None


def public_keys(pem_path: str | None) -> dict[str, Any]:
    """The ledger's public key: from ``--public-key``, else derived from the signing connection."""
    if pem_path:
        # A PEM names no key id: it is the key for any id the heads carry.
        return {ANY_KEY_ID: public_key_from_pem(Path(pem_path).read_text())}
    signing = load_ledger_key()
    if signing is None:
        raise LedgerError(f"no --public-key and no {LEDGER_KEY_CONN_ID} connection to derive it from")
    return {signing.key_id: signing.private_key.public_key()}


def cmd_audit_head(args: argparse.Namespace, store) -> int:
    document = head_document(Ledger(store), args.from_size)
    print(json.dumps(document, indent=2, sort_keys=True))
    return 0


def cmd_audit_verify(args: argparse.Namespace, store) -> int:
    ledger = Ledger(store)
    published: list[TreeHead] = []
    witness = Witness(args.witness) if args.witness else witness_from_connection()
    if witness is not None:
        published += witness.heads()
    for path in args.head or []:
        published.append(read_head_file(path)[0])
    keys = public_keys(args.public_key) if (ledger.latest_head() or published) else {}
    report = ledger.verify(keys, published)
    if report.problems:
        print(f"audit ledger BROKEN ({report.records} record(s) checked):", file=sys.stderr)
        for problem in report.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    newest = report.newest_head
    print(
        f"audit ledger intact: {report.records} record(s), hash chain head {report.chain_head}; "
        f"{report.stored_heads} stored and {report.published_heads} published head(s) verified"
        + (f"; newest head size {newest.tree_size}, root {newest.root_hash}" if newest else "")
    )
    for note in report.notes:
        print(f"note: {note}")
    return 0


# -- receipts ------------------------------------------------------------------------------


def issue_receipt(store, record: AuditEntry, key: SigningKey) -> dict[str, Any]:
    """The signed receipt of a closed request (``gdpr-erasure receipt issue``, the auditor page's
    download): built from its erasure record and the reviews that followed it, with the inclusion
    proof of its latest entry (:func:`ledger_section`).

    :param store: the compliance store.
    :param record: the request's erasure record.
    :param key: the receipt signing key.
    :raises ReceiptError: the request is not closed.
    :raises LedgerError: no signed head covers its latest entry, and none can be signed here.
    """
    entries = request_entries(store, record.request_id)
    if entries is None:
        raise ReceiptError(f"request {record.request_id} has no audit record")
    content = build_receipt(entries.record, reviews=entries.reviews)
    content["ledger"] = ledger_section(store, entries.latest)
    return sign_receipt(content, key)


def ledger_section(store, entry: AuditEntry) -> dict[str, Any]:
    """What a receipt carries so it verifies offline: the entry as hashed into the tree, its
    inclusion proof, and the signed head that covers it (signed now if none does yet). ``entry``
    is the request's latest entry: its erasure record, or the review that followed it last."""
    ledger = Ledger(store)
    try:
        index, proof, head = ledger.inclusion(entry.request_id)
    except LedgerError:
        key = load_ledger_key()
        if key is None:
            raise
        ledger.sign_new_head(key, witness_from_connection())
        index, proof, head = ledger.inclusion(entry.request_id)
    return {
        "leaf": {
            "seq": entry.seq,
            "request_id": entry.request_id,
            "recorded_at": entry.recorded_at.isoformat(),
            "record_json": entry.record_json,
        },
        "leaf_index": index,
        "inclusion_proof": [p.hex() for p in proof],
        "tree_head": head.as_dict(),
    }


def verify_receipt_ledger(content: dict[str, Any], keys: dict[str, Any], later: str | None) -> str:
    """Check the receipt's latest entry is in its signed head, that it is the entry the receipt
    names (its chain hash), that it states what the receipt states (outcome, kept), that a review
    follows the receipt's erasure record, and that a later head extends the receipt's."""
    section = content.get("ledger")
    if not section:
        raise LedgerError("the receipt carries no ledger proof (issued before signed heads)")
    try:
        leaf = section["leaf"]
        entry = AuditEntry(
            seq=int(leaf["seq"]),
            request_id=str(leaf["request_id"]),
            recorded_at=datetime.fromisoformat(leaf["recorded_at"]),
            record=json.loads(leaf["record_json"]),
            record_json=str(leaf["record_json"]),
            prev_hash="",
            record_hash="",
        )
        head = TreeHead.from_dict(section["tree_head"])
        proof = [bytes.fromhex(p) for p in section["inclusion_proof"]]
        index = int(section["leaf_index"])
        named = _named_entry(content, entry)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise LedgerError(f"the receipt's ledger proof is malformed: {type(exc).__name__}") from None
    if named is None or index != entry.seq - 1:
        raise LedgerError("the receipt's ledger proof is about another record")
    if chain_hash(entry.seq, str(named.get("prev_hash")), entry.recorded_at, entry.record_json) != named.get(
        "record_hash"
    ):
        raise LedgerError(f"the receipt's ledger entry {entry.seq} does not hash to the record hash it names")
    _states_the_same(content, entry.record)
    verify_head(head, keys)
    try:
        verify_inclusion(leaf_of(entry), index, head.tree_size, proof, head.root)
    except ProofError as exc:
        raise LedgerError(f"the record is not in the receipt's signed head: {exc}") from None
    if entry.kind == REVIEW:
        summary = (
            f"its latest entry, review {entry.record.get('review')} (seq {entry.seq}), is in the signed "
            f"head of size {head.tree_size} and follows record {content['audit']['seq']}"
        )
    else:
        summary = f"record {entry.seq} is in the signed head of size {head.tree_size}"
    if later is None:
        return summary
    newer, consistency = read_head_file(later)
    verify_head(newer, keys)
    if newer.tree_size < head.tree_size:
        raise LedgerError(
            f"the given head ({newer.tree_size}) is older than the receipt's ({head.tree_size})"
        )
    if newer.tree_size == head.tree_size:
        proof = []
    elif consistency is None or int(consistency.get("from_size", -1)) != head.tree_size:
        raise LedgerError(
            f"the given head carries no consistency proof from size {head.tree_size}: "
            f"make it with gdpr-erasure audit head --from-size {head.tree_size}"
        )
    else:
        proof = [bytes.fromhex(p) for p in consistency.get("proof", [])]
    try:
        verify_consistency(head.tree_size, newer.tree_size, head.root, newer.root, proof)
    except ProofError as exc:
        raise LedgerError(
            f"the later head (size {newer.tree_size}) does not extend the receipt's (size "
            f"{head.tree_size}): the ledger was rewritten after this receipt ({exc})"
        ) from None
    return f"{summary}, and the later head of size {newer.tree_size} extends it"


def _named_entry(content: dict[str, Any], entry: AuditEntry) -> dict[str, Any] | None:
    """Where the receipt names the entry its proof is about (``seq``, ``record_hash``,
    ``prev_hash``): ``audit`` for the erasure record, the last of ``reviews`` for a review, which
    must be the request's and follow the record ``audit`` names. None: another entry."""
    rid, audit = content.get("request_id"), content["audit"]
    if entry.kind == REVIEW:
        reviews = content.get("reviews") or []
        record = entry.record
        follows = record.get("follows") or {}
        if (
            not reviews
            or record.get("request_id") != rid
            or entry.request_id != review_ledger_key(str(rid), record.get("review"))
            or (follows.get("seq"), follows.get("record_hash")) != (audit["seq"], audit["record_hash"])
        ):
            return None
        named = reviews[-1]
    elif entry.request_id == rid:
        named = audit
    else:
        return None
    return named if int(named["seq"]) == entry.seq else None


def _states_the_same(content: dict[str, Any], record: dict[str, Any]) -> None:
    """A receipt of schema 2 states the outcome and what is kept as its latest entry does."""
    if "kept" not in content:
        return  # schema 1: completed requests only, nothing kept to compare
    if (content.get("outcome"), content.get("kept")) != (
        record.get("outcome") or "completed",
        [{name: item.get(name) for name in KEPT_FIELDS} for item in record.get("kept") or []],
    ):
        raise LedgerError("the receipt states another outcome or other kept objects than its ledger entry")
