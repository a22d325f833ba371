"""The ledger against its own database's owner: every attack of the review, run as the table
owner with the triggers out of the way and the hash chain recomputed, is caught by the Merkle
tree and the signed heads published to the witness, and ``verify`` names what broke."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from gdpr_erasure.identifiers import SubjectIdentifiers
from gdpr_erasure.ledger.heads import LedgerError, TreeHead
from gdpr_erasure.ledger.log import Ledger
from gdpr_erasure.ledger.merkle import verify_consistency, verify_inclusion
from gdpr_erasure.store import RequestStatus
from gdpr_erasure.store.chain import GENESIS_HASH, canonical_json, chain_hash
from gdpr_erasure.store.schema import audit_log


def complete(store, count: int, start: int = 0) -> list[str]:
    ids = []
    for i in range(start, start + count):
        rid = f"req-{i:04d}"
        store.submit(rid, SubjectIdentifiers.parse(email=f"p{i}@example.com"))
        store.claim(1, "test-run", request_ids=[rid])
        store.append_audit(rid, {"request_id": rid, "outcome": "completed", "n": i})
        store.transition(rid, RequestStatus.COMPLETED)
        ids.append(rid)
    return ids


def keys(signing_key):
    key, _pem = signing_key
    return key, {key.key_id: key.private_key.public_key()}


class Owner:
    """The database's owner: gets the triggers out of the way, then rewrites the hash chain so
    the old check (``verify_audit_chain``) passes again."""

    def __init__(self, store):
        self.store = store

    def __enter__(self):
        self.conn = self.store.engine.connect()
        if self.store.dialect == "postgresql":
            self.conn.exec_driver_sql("ALTER TABLE audit_log DISABLE TRIGGER USER")
        else:
            for name in ("audit_log_no_update", "audit_log_no_delete"):
                self.conn.exec_driver_sql(f"DROP TRIGGER {name}")
        return self.conn

    def __exit__(self, *exc):
        prev = GENESIS_HASH
        rows = self.conn.execute(select(audit_log).order_by(audit_log.c.seq)).all()
        # Renumber and re-chain: move every row aside (UNIQUE seq and hashes), then rewrite them
        # in order. The result passes the hash-chain check.
        for row in rows:
            self.conn.execute(
                update(audit_log)
                .where(audit_log.c.request_id == row.request_id)
                .values(seq=row.seq + 1_000_000, prev_hash=f"p{row.seq}", record_hash=f"r{row.seq}")
            )
        for seq, row in enumerate(rows, start=1):
            digest = chain_hash(seq, prev, row.recorded_at, row.record)
            self.conn.execute(
                update(audit_log)
                .where(audit_log.c.request_id == row.request_id)
                .values(seq=seq, prev_hash=prev, record_hash=digest)
            )
            prev = digest
        if self.store.dialect == "postgresql":
            self.conn.exec_driver_sql("ALTER TABLE audit_log ENABLE TRIGGER USER")
        self.conn.commit()
        self.conn.close()
        self.store.init_db()  # recreates dropped triggers: "no trace"
        assert self.store.verify_audit_chain().ok  # the old check is fooled


def test_heads_are_signed_incrementally_stored_and_published(store, key, witness):
    key, public = keys(key)
    ledger = Ledger(store)
    complete(store, 5)
    first = ledger.sign_new_head(key, witness)
    assert first.tree_size == 5
    assert ledger.sign_new_head(key, witness) is None  # nothing new
    complete(store, 3, start=5)
    second = ledger.sign_new_head(key, witness)
    assert second.tree_size == 8
    assert [h.tree_size for h in witness.heads()] == [5, 8]
    verify_consistency(5, 8, first.root, second.root, ledger.consistency(5, 8))
    index, proof, head = ledger.inclusion("req-0002")
    assert (index, head) == (2, first)
    verify_inclusion(ledger.leaves()[2], index, head.tree_size, proof, head.root)
    report = ledger.verify(public, witness.heads())
    assert report.ok, report.problems
    assert (report.records, report.stored_heads, report.published_heads) == (8, 2, 2)


def _attacked(store, key, witness, attack) -> list[str]:
    key, public = keys(key)
    ledger = Ledger(store)
    complete(store, 6)
    ledger.sign_new_head(key, witness)
    with Owner(store) as conn:
        attack(conn)
    report = ledger.verify(public, witness.heads())
    assert not report.ok
    return report.problems


def test_an_edited_record_is_caught(store, key, witness):
    def edit(conn):
        record = canonical_json({"request_id": "req-0003", "outcome": "completed", "n": 999})
        conn.execute(update(audit_log).where(audit_log.c.request_id == "req-0003").values(record=record))

    problems = _attacked(store, key, witness, edit)
    assert any("first 6 records do not match the published signed head" in p for p in problems), problems


def test_deleted_newest_records_are_caught(store, key, witness):
    problems = _attacked(
        store, key, witness, lambda conn: conn.execute(audit_log.delete().where(audit_log.c.seq >= 5))
    )
    assert any("covers more records than the ledger holds (4)" in p for p in problems), problems
    assert any("completed but has no audit record" in p for p in problems), problems


def test_a_deleted_record_in_the_middle_is_caught(store, key, witness):
    problems = _attacked(
        store, key, witness, lambda conn: conn.execute(audit_log.delete().where(audit_log.c.seq == 2))
    )
    assert any("published head of size 6 covers more records" in p for p in problems), problems


def test_reordered_records_are_caught(store, key, witness):
    def swap(conn):
        conn.execute(update(audit_log).where(audit_log.c.seq == 2).values(seq=100))
        conn.execute(update(audit_log).where(audit_log.c.seq == 3).values(seq=2))
        conn.execute(update(audit_log).where(audit_log.c.seq == 100).values(seq=3))

    problems = _attacked(store, key, witness, swap)
    assert any("do not match the published signed head" in p for p in problems), problems


def test_an_inserted_record_is_caught(store, key, witness):
    def insert(conn):
        conn.execute(update(audit_log).where(audit_log.c.seq >= 3).values(seq=audit_log.c.seq + 10))
        row = conn.execute(select(audit_log).where(audit_log.c.seq == 13)).one()
        conn.execute(
            audit_log.insert().values(
                seq=3,
                request_id="req-forged",
                recorded_at=row.recorded_at,
                record="{}",
                prev_hash="p",
                record_hash="r",
            )
        )

    problems = _attacked(store, key, witness, insert)
    assert any("do not match the published signed head" in p for p in problems), problems
    assert any("req-forged has no completed request" in p for p in problems), problems


def test_a_rewritten_head_table_is_caught_by_the_witness(store, key, witness):
    """The owner also deletes the stored heads and signs nothing (it has no key): the published
    heads still name the old tree."""
    key, public = keys(key)
    ledger = Ledger(store)
    complete(store, 4)
    ledger.sign_new_head(key, witness)
    with Owner(store) as conn:
        conn.execute(audit_log.delete().where(audit_log.c.seq == 4))
        if store.dialect == "postgresql":
            conn.exec_driver_sql("ALTER TABLE ledger_heads DISABLE TRIGGER USER")
        else:
            conn.exec_driver_sql("DROP TRIGGER ledger_heads_no_delete")
        conn.exec_driver_sql("DELETE FROM ledger_heads")
        if store.dialect == "postgresql":
            conn.exec_driver_sql("ALTER TABLE ledger_heads ENABLE TRIGGER USER")
    report = ledger.verify(public, witness.heads())
    assert any("missing from ledger_heads" in p for p in report.problems), report.problems
    assert any("covers more records than the ledger holds (3)" in p for p in report.problems)


def test_a_forged_head_signature_is_caught(store, key, witness):
    key, public = keys(key)
    ledger = Ledger(store)
    complete(store, 2)
    head = ledger.sign_new_head(key, witness)
    forged = TreeHead(**{**head.as_dict(), "root_hash": "00" * 32})
    report = ledger.verify(public, [forged])
    assert any("signature does not match" in p for p in report.problems), report.problems


def test_no_head_is_signed_over_a_gap(store, key):
    key, _ = keys(key)
    complete(store, 3)
    with store.engine.begin() as conn:
        if store.dialect == "postgresql":
            conn.exec_driver_sql("ALTER TABLE audit_log DISABLE TRIGGER USER")
        else:
            conn.exec_driver_sql("DROP TRIGGER audit_log_no_delete")
        conn.execute(audit_log.delete().where(audit_log.c.seq == 2))
        if store.dialect == "postgresql":
            conn.exec_driver_sql("ALTER TABLE audit_log ENABLE TRIGGER USER")
    with pytest.raises(LedgerError, match="no record seq 2"):
        Ledger(store).sign_new_head(key)


def test_the_witness_refuses_a_second_head_for_a_size(store, key, witness):
    key, _ = keys(key)
    complete(store, 2)
    head = Ledger(store).sign_new_head(key, witness)
    assert witness.publish(head) is False  # the same head again: nothing to do
    rewritten = TreeHead(**{**head.as_dict(), "root_hash": "11" * 32})
    with pytest.raises(LedgerError, match="forked"):
        witness.publish(rewritten)
    assert witness.heads() == [head]


def test_a_head_stored_but_not_published_is_published_by_the_next_call(store, key, witness):
    """A task that stored its head and died before publishing: the retry publishes it."""
    key, _ = keys(key)
    complete(store, 3)
    ledger = Ledger(store)
    head = ledger.sign_new_head(key)  # no witness: stored only
    assert witness.heads() == []
    assert ledger.sign_new_head(key, witness) is None  # nothing new to sign...
    assert witness.heads() == [head]  # ...but the stored head reached the witness


# -- legal holds: entries of their own kind ------------------------------------------------------


def _with_holds(store):
    """Six completed requests, and a hold placed on a seventh and released: two hold entries."""
    from gdpr_erasure.holds import place_hold, release_hold

    complete(store, 3)
    store.submit("req-held", SubjectIdentifiers.parse(email="held@example.com"))
    hold = place_hold(store, reason="LEGAL-9 dispute", placed_by="ops", request_id="req-held").hold
    complete(store, 3, start=3)
    release_hold(store, hold.hold_id, reason="LEGAL-9 closed", released_by="ops")
    return hold


def test_hold_entries_are_leaves_and_links_and_verify_matches_them_to_their_holds(store, key, witness):
    signing, public = keys(key)
    ledger = Ledger(store)
    hold = _with_holds(store)
    head = ledger.sign_new_head(signing, witness)
    assert head.tree_size == 8
    report = ledger.verify(public, witness.heads())
    assert report.ok, report.problems
    assert report.records == 8
    kinds = [(e.kind, e.request_id) for e in store.audit_entries()]
    assert kinds[3] == ("hold", f"{hold.hold_id}/placed") and kinds[-1] == (
        "hold",
        f"{hold.hold_id}/released",
    )
    index, proof, _ = ledger.inclusion(f"{hold.hold_id}/placed")
    verify_inclusion(ledger.leaves()[index], index, head.tree_size, proof, head.root)


def test_an_edited_hold_entry_is_caught(store, key, witness):
    signing, public = keys(key)
    ledger = Ledger(store)
    hold = _with_holds(store)
    ledger.sign_new_head(signing, witness)
    entry = store.audit_entry(f"{hold.hold_id}/placed")
    record = canonical_json({**entry.record, "reason": "no reason"})
    with Owner(store) as conn:  # the owner rewrites the hold's reason in its ledger entry
        conn.execute(
            update(audit_log).where(audit_log.c.request_id == entry.request_id).values(record=record)
        )
    problems = ledger.verify(public, witness.heads()).problems
    assert any("first 8 records do not match the published signed head" in p for p in problems), problems
    assert any(f"legal hold {hold.hold_id} differs from its placed entry" in p for p in problems), problems


def test_a_hold_changed_behind_the_ledgers_back_is_caught(store, key, witness):
    """The legal_holds table is not append-only (a release updates a row): a row whose target is
    swapped, or a hold released without its entry, no longer matches the ledger."""
    from gdpr_erasure.holds import place_hold
    from gdpr_erasure.store.schema import legal_holds

    _, public = keys(key)
    hold = _with_holds(store)
    store.submit("req-other", SubjectIdentifiers.parse(email="other@example.com"))
    other = place_hold(store, reason="LEGAL-10", placed_by="ops", request_id="req-other").hold
    with store.engine.begin() as conn:
        conn.execute(
            update(legal_holds).where(legal_holds.c.hold_id == hold.hold_id).values(target="req-0002")
        )
        conn.execute(
            update(legal_holds)
            .where(legal_holds.c.hold_id == other.hold_id)
            .values(released_at=other.placed_at, release_reason="quietly")
        )
    problems = Ledger(store).verify(public).problems
    assert f"legal hold {hold.hold_id} differs from its placed entry (seq 4): target" in problems
    assert f"legal hold {other.hold_id} is released but the ledger has no released entry" in problems
