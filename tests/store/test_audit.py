"""The audit ledger: append-only in the database itself, and a hash chain that exposes edits."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from gdpr_erasure.store import AuditRecordExists
from gdpr_erasure.store.chain import GENESIS_HASH, verify_chain


def _fill(store, n=3):
    return [
        store.append_audit(f"req-{i}", {"outcome": "completed", "stripe": {"ids": [f"cus_{i}"]}})
        for i in range(n)
    ]


def test_records_chain_from_genesis(store):
    entries = _fill(store)
    assert entries[0].prev_hash == GENESIS_HASH
    assert [e.prev_hash for e in entries[1:]] == [e.record_hash for e in entries[:-1]]
    report = store.verify_audit_chain()
    assert (report.ok, report.checked, report.head_hash) == (True, 3, entries[-1].record_hash)


def test_stored_records_read_back_identically(store):
    written = _fill(store)
    assert store.audit_entries() == written
    assert store.audit_entry("req-1") == written[1]
    assert store.audit_entry("req-unknown") is None


def test_one_record_per_request(store):
    store.append_audit("req-1", {"outcome": "completed"})
    with pytest.raises(AuditRecordExists):
        store.append_audit("req-1", {"outcome": "completed", "again": True})
    assert len(store.audit_entries()) == 1


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET record = '{}' WHERE seq = 2",
        "UPDATE audit_log SET record_hash = prev_hash",
        "DELETE FROM audit_log WHERE seq = 3",
        "DELETE FROM audit_log",
    ],
)
def test_database_rejects_update_and_delete(store, statement):
    before = _fill(store)
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.execute(text(statement))
    assert store.audit_entries() == before


def test_database_rejects_truncate(store):
    # SQLite has no TRUNCATE; its equivalent is an unqualified DELETE (the "truncate optimisation"),
    # which SQLite turns off when a DELETE trigger exists.
    statement = "TRUNCATE audit_log" if store.dialect == "postgresql" else "DELETE FROM audit_log"
    _fill(store)
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.execute(text(statement))
    assert len(store.audit_entries()) == 3


def _bypass_triggers(store, statement):
    """What an attacker with owner rights could do: drop the guard, then edit."""
    with store.engine.begin() as conn:
        if store.dialect == "postgresql":
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
            conn.execute(text(statement))
            conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER USER"))
        else:
            conn.execute(text("DROP TRIGGER audit_log_no_update"))
            conn.execute(text("DROP TRIGGER audit_log_no_delete"))
            conn.execute(text(statement))


@pytest.mark.parametrize(
    ("statement", "problem"),
    [
        ("UPDATE audit_log SET record = replace(record, 'cus_1', 'cus_X') WHERE seq = 2", "record altered"),
        ("DELETE FROM audit_log WHERE seq = 2", "a record is missing"),
        ("UPDATE audit_log SET recorded_at = recorded_at WHERE seq = 1", None),  # a no-op edit
    ],
)
def test_chain_exposes_edits_made_around_the_triggers(store, statement, problem):
    _fill(store)
    _bypass_triggers(store, statement)
    report = store.verify_audit_chain()
    if problem is None:
        assert report.ok
    else:
        assert not report.ok
        assert any(problem in p for p in report.problems), report.problems


def test_init_db_restores_dropped_triggers(store):
    _fill(store)
    _bypass_triggers(store, "SELECT 1")
    store.init_db()
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log"))


def test_verify_chain_detects_reordering(store):
    entries = _fill(store)
    report = verify_chain([entries[1], entries[0], entries[2]])
    assert not report.ok
