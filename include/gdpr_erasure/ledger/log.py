"""The ledger as a transparency log: leaves from the audit records, signed heads, verification.

Leaf ``i`` (0-based) is the audit record with ``seq = i + 1``, encoded with its position, request
id and time, so that moving, renaming or re-dating a record changes its leaf. After each batch of
records ``write_ledger_record`` calls :meth:`Ledger.sign_new_head`: the new head extends the last one's
compact range with the records appended since (no full rebuild), is stored in ``ledger_heads``
and published to the witness. :meth:`Ledger.verify` recomputes the whole tree and checks it
against every stored and published head: an edited, inserted, deleted or reordered record, or a
truncated tail, changes the root at some signed size and is named.

The ledger holds three kinds of entries (:func:`gdpr_erasure.store.chain.entry_kind`): requests'
erasure records, the placing and release of legal holds (:mod:`gdpr_erasure.holds`), and the
reviews of what the erasure policy kept of a request closed with exemptions. All are leaves of the
tree and links of the chain alike; :meth:`Ledger.verify` matches the erasure records to the
closed requests, the hold entries to the ``legal_holds`` table, and each review to its request's
erasure record.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import exc, func, select

from gdpr_erasure.ledger.heads import LedgerError, TreeHead, sign_head, verify_head
from gdpr_erasure.ledger.merkle import CompactRange, consistency_proof, inclusion_proof, leaf_hash
from gdpr_erasure.ledger.witness import Witness
from gdpr_erasure.receipts import SigningKey
from gdpr_erasure.store import AuditEntry, ComplianceStore, LegalHold, RequestStatus
from gdpr_erasure.store.chain import ERASURE, HOLD, REVIEW, verify_chain
from gdpr_erasure.store.schema import audit_log, erasure_requests, ledger_heads

LEAF_DOMAIN = "gdpr-erasure-ledger-leaf/1"
_BATCH = 5000


def leaf_of(entry: AuditEntry) -> bytes:
    """The Merkle leaf hash of an audit record (its canonical JSON is already stored)."""
    material = "\n".join(
        [LEAF_DOMAIN, str(entry.seq), entry.request_id, entry.recorded_at.isoformat(), entry.record_json]
    )
    return leaf_hash(material.encode("utf-8"))


@dataclass
class LedgerReport:
    """What :meth:`Ledger.verify` found; ``ok`` is False when anything broke."""

    records: int = 0
    stored_heads: int = 0
    published_heads: int = 0
    newest_head: TreeHead | None = None
    chain_head: str = ""
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class Ledger:
    """:param store: the compliance store holding ``audit_log`` and ``ledger_heads``."""

    def __init__(self, store: ComplianceStore) -> None:
        self.store = store

    # -- reading ---------------------------------------------------------------------------

    def entries(self, after_seq: int = 0) -> Iterator[AuditEntry]:
        while True:
            chunk = self.store.audit_entries(after_seq=after_seq, limit=_BATCH)
            if not chunk:
                return
            yield from chunk
            after_seq = chunk[-1].seq

    def stored_heads(self) -> list[TreeHead]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(ledger_heads.c.head).order_by(ledger_heads.c.tree_size)).all()
        return [TreeHead.from_json(row.head) for row in rows]

    def latest_head(self) -> TreeHead | None:
        heads = self._latest_rows(1)
        return TreeHead.from_json(heads[0].head) if heads else None

    def _latest_rows(self, limit: int):
        with self.store.engine.connect() as conn:
            return conn.execute(
                select(ledger_heads).order_by(ledger_heads.c.tree_size.desc()).limit(limit)
            ).all()

    def leaves(self, upto: int | None = None) -> list[bytes]:
        leaves: list[bytes] = []
        for entry in self.entries():
            if upto is not None and entry.seq > upto:
                break
            leaves.append(leaf_of(entry))
        return leaves

    # -- writing ---------------------------------------------------------------------------

    def sign_new_head(self, key: SigningKey, witness: Witness | None = None) -> TreeHead | None:
        """Sign, store and publish a head over every record appended so far; None when the
        latest head already covers them. Refuses to sign a ledger with a gap (a deleted record)."""
        rows = self._latest_rows(1)
        if rows:
            previous = rows[0]
            compact = CompactRange(previous.tree_size, [bytes.fromhex(p) for p in json.loads(previous.peaks)])
        else:
            compact = CompactRange()
        for entry in self.entries(after_seq=compact.size):
            if entry.seq != compact.size + 1:
                raise LedgerError(
                    f"the ledger has no record seq {compact.size + 1} (next is {entry.seq}): "
                    "not signing a head over a gap; run gdpr-erasure audit verify"
                )
            compact.append(leaf_of(entry))
        if rows and compact.size == rows[0].tree_size:
            # Nothing new. Publish the latest head again (a no-op when the witness has it): a
            # run that stored it and died before publishing must not leave the witness behind.
            if witness is not None:
                witness.publish(TreeHead.from_json(rows[0].head))
            return None
        if compact.size == 0:
            return None
        head = sign_head(compact.size, compact.root(), key)
        values = {
            "tree_size": head.tree_size,
            "root_hash": head.root_hash,
            "signed_at": datetime.fromisoformat(head.timestamp),
            "key_id": head.key_id,
            "head": head.to_json(),
            "peaks": json.dumps([p.hex() for p in compact.peaks]),
        }
        try:
            with self.store.engine.begin() as conn:
                conn.execute(ledger_heads.insert().values(**values))
        except exc.IntegrityError:  # another batch signed this very size first: theirs stands
            return None
        if witness is not None:
            witness.publish(head)
        return head

    # -- proofs ----------------------------------------------------------------------------

    def inclusion(self, request_id: str) -> tuple[int, list[bytes], TreeHead]:
        """The record's leaf index, its audit path, and the first stored head that covers it."""
        entry = self.store.audit_entry(request_id)
        if entry is None:
            raise LedgerError(f"request {request_id} has no audit record")
        with self.store.engine.connect() as conn:
            row = conn.execute(
                select(ledger_heads.c.head)
                .where(ledger_heads.c.tree_size >= entry.seq)
                .order_by(ledger_heads.c.tree_size)
                .limit(1)
            ).one_or_none()
        if row is None:
            raise LedgerError(f"no signed tree head covers record {entry.seq} yet: sign one first")
        head = TreeHead.from_json(row.head)
        leaves = self.leaves(upto=head.tree_size)
        return entry.seq - 1, inclusion_proof(leaves, entry.seq - 1, head.tree_size), head

    def consistency(self, old_size: int, new_size: int) -> list[bytes]:
        return consistency_proof(self.leaves(upto=new_size), old_size, new_size)

    # -- verification ----------------------------------------------------------------------

    def verify(
        self,
        public_keys: dict[str, Ed25519PublicKey],
        published: Iterable[TreeHead] = (),
    ) -> LedgerReport:
        """Recompute the tree from the records and check it against every stored head and every
        published (or given) head; check requests and records match one to one."""
        report = LedgerReport()
        stored = self.stored_heads()
        published = sorted(published, key=lambda h: h.tree_size)
        report.stored_heads, report.published_heads = len(stored), len(published)
        for head in [*stored, *published]:
            try:
                verify_head(head, public_keys)
            except LedgerError as error:
                report.problems.append(str(error))

        roots: dict[int, bytes] = {}
        wanted = {h.tree_size for h in [*stored, *published]}
        compact = CompactRange()
        record_ids: list[str] = []
        hold_entries: list[AuditEntry] = []
        review_entries: list[AuditEntry] = []
        outcomes: dict[str, str] = {}  # request -> outcome of its latest erasure record or review

        def tree(entries: Iterable[AuditEntry]) -> Iterator[AuditEntry]:
            # One pass over the records feeds both the Merkle tree and the hash chain's check.
            gap = False
            for entry in entries:
                if not gap and entry.seq != compact.size + 1:
                    report.problems.append(
                        f"record seq {compact.size + 1} is missing (the next is seq {entry.seq}): deleted"
                    )
                    gap = True
                if not gap:
                    compact.append(leaf_of(entry))
                    if entry.kind == ERASURE:
                        record_ids.append(entry.request_id)
                        outcomes[entry.request_id] = str(entry.record.get("outcome") or "")
                    elif entry.kind == HOLD:
                        hold_entries.append(entry)
                    elif entry.kind == REVIEW:
                        review_entries.append(entry)
                        outcomes[str(entry.record.get("request_id"))] = str(entry.record.get("outcome") or "")
                    else:
                        report.problems.append(f"record seq {entry.seq} has an unknown kind {entry.kind!r}")
                    if compact.size in wanted:
                        roots[compact.size] = compact.root()
                yield entry

        chain = verify_chain(tree(self.entries()))
        report.chain_head = chain.head_hash
        report.problems.extend(f"hash chain: {p}" for p in chain.problems)
        report.records = compact.size

        by_size = {h.tree_size: h for h in stored}
        unique = {h.to_json(): h for h in [*stored, *published]}.values()
        for head in sorted(unique, key=lambda h: h.tree_size):
            where = "published" if head in published else "stored"
            if head.tree_size > report.records:
                report.problems.append(
                    f"the {where} head of size {head.tree_size} covers more records than the ledger holds "
                    f"({report.records}): records were deleted from the tail"
                )
            elif roots.get(head.tree_size) != head.root:
                report.problems.append(
                    f"the ledger's first {head.tree_size} records do not match the {where} signed head of "
                    "that size: a record was edited, inserted, deleted or reordered"
                )
        for head in published:
            twin = by_size.get(head.tree_size)
            if twin is None:
                report.problems.append(
                    f"the published head of size {head.tree_size} is missing from ledger_heads"
                )
            elif twin != head:
                report.problems.append(
                    f"the stored head of size {head.tree_size} differs from the published one"
                )
        newest = max([*stored, *published], key=lambda h: h.tree_size, default=None)
        report.newest_head = newest
        if newest is None:
            report.notes.append("no signed tree head yet: only the hash chain protects the ledger")
        elif newest.tree_size < report.records:
            report.notes.append(
                f"{report.records - newest.tree_size} record(s) after the newest head (size "
                f"{newest.tree_size}) are not signed yet"
            )
        if not published:
            report.notes.append(
                "no published head was checked: pass --witness or --head for a proof that the "
                "database's owner cannot rewrite"
            )
        self._match_requests(record_ids, report, outcomes)
        self._match_holds(hold_entries, report)
        self._match_reviews(review_entries, record_ids, report)
        return report

    def _match_requests(self, record_ids: list[str], report: LedgerReport, outcomes: dict[str, str]) -> None:
        """Every completed request has exactly one record and every record a completed request.

        Completed here means closed once: ``completed``, ``completed_with_exemptions``, or claimed
        again since for the review of what the erasure policy kept (it keeps its ``completed_at``).
        A request's status agrees with its latest entry: ``completed`` is never left with a last
        entry that says something is still kept, nor ``completed_with_exemptions`` with one that
        says nothing is."""
        duplicates = [rid for rid, n in Counter(record_ids).items() if n > 1]
        for rid in sorted(duplicates):
            report.problems.append(f"request {rid} has more than one audit record")
        closed_statuses = [RequestStatus.COMPLETED.value, RequestStatus.COMPLETED_WITH_EXEMPTIONS.value]
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                select(erasure_requests.c.id, erasure_requests.c.status).where(
                    erasure_requests.c.status.in_(closed_statuses)
                    | erasure_requests.c.completed_at.is_not(None)
                )
            ).all()
            total_records = conn.execute(select(func.count()).select_from(audit_log)).scalar_one()
        completed = {row.id for row in rows}
        for row in rows:
            said = outcomes.get(row.id)
            if row.status in closed_statuses and said in closed_statuses and said != row.status:
                report.problems.append(
                    f"request {row.id} is {row.status} but its latest ledger entry says {said}"
                )
        recorded = set(record_ids)
        for rid in sorted(completed - recorded)[:20]:
            report.problems.append(f"request {rid} is completed but has no audit record")
        for rid in sorted(recorded - completed)[:20]:
            report.problems.append(f"audit record of {rid} has no completed request")
        if total_records != report.records and not report.problems:
            report.problems.append(
                f"the ledger holds {total_records} records but only {report.records} are in sequence"
            )

    def _match_holds(self, entries: list[AuditEntry], report: LedgerReport) -> None:
        """Every legal hold has its ``placed`` entry, every released one its ``released`` entry,
        each stating what the ``legal_holds`` row states; and every hold entry has its row. The
        rows are not append-only (a release updates one): this is what shows a row changed
        behind the ledger's back, e.g. a hold's target swapped to let a person's erasure through."""
        holds = {h.hold_id: h for h in self.store.list_holds(include_inactive=True)}
        seen: set[tuple[str, str]] = set()
        for entry in entries:
            record = entry.record
            hold_id, action = str(record.get("hold_id")), record.get("action")
            if entry.request_id != f"{hold_id}/{action}" or action not in ("placed", "released"):
                report.problems.append(f"hold entry seq {entry.seq} is filed as {entry.request_id!r}")
                continue
            seen.add((hold_id, action))
            hold = holds.get(hold_id)
            if hold is None:
                report.problems.append(
                    f"hold entry seq {entry.seq} ({hold_id} {action}) has no legal_holds row"
                )
                continue
            differs = _hold_differs(hold, record, action)
            if differs:
                report.problems.append(
                    f"legal hold {hold_id} differs from its {action} entry (seq {entry.seq}): "
                    + ", ".join(differs)
                )
        for hold_id, hold in sorted(holds.items()):
            if (hold_id, "placed") not in seen:
                report.problems.append(f"legal hold {hold_id} has no placed entry in the ledger")
            if hold.released_at is not None and (hold_id, "released") not in seen:
                report.problems.append(
                    f"legal hold {hold_id} is released but the ledger has no released entry"
                )

    def _match_reviews(self, entries: list[AuditEntry], record_ids: list[str], report: LedgerReport) -> None:
        """Every review entry is filed under ``<request id>/review/<attempt>`` and follows its
        request's erasure record (by ``seq`` and ``record_hash``), which the ledger holds."""
        first = {
            rid: self.store.audit_entry(rid) for rid in {str(e.record.get("request_id")) for e in entries}
        }
        for entry in entries:
            record = entry.record
            rid, attempt = str(record.get("request_id")), record.get("review")
            if entry.request_id != f"{rid}/review/{attempt}":
                report.problems.append(f"review entry seq {entry.seq} is filed as {entry.request_id!r}")
                continue
            erasure = first.get(rid)
            follows = record.get("follows") or {}
            if rid not in record_ids or erasure is None:
                report.problems.append(
                    f"review entry seq {entry.seq} of {rid}: the request has no audit record"
                )
            elif (follows.get("seq"), follows.get("record_hash")) != (erasure.seq, erasure.record_hash):
                report.problems.append(
                    f"review entry seq {entry.seq} of {rid} does not follow its audit record "
                    f"(seq {erasure.seq})"
                )


def _hold_differs(hold: LegalHold, record: dict, action: str) -> list[str]:
    """The fields of a ``legal_holds`` row that its ledger entry states otherwise."""
    stated = {
        "target_type": hold.target_type,
        "target": hold.target,
        "until": hold.until.isoformat() if hold.until else None,
        "reason": hold.reason if action == "placed" else hold.release_reason,
    }
    if hold.target_type != "request":
        stated["hash_key_id"] = hold.hash_key_id
    if action == "released" and hold.released_at is None:
        return ["the row is not released"]
    return sorted(name for name, value in stated.items() if record.get(name) != value)
