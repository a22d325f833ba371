"""The SQLite store's folder and files are private to their owner: pending requests hold emails and
phones, and on SQLite the file permissions are the only access control there is."""

from __future__ import annotations

import logging
import os
import stat
from contextlib import contextmanager
from pathlib import Path

import pytest

from gdpr_erasure.identifiers import SubjectIdentifiers
from gdpr_erasure.store import ComplianceStore
from gdpr_erasure.store.engine import create_store_engine


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextmanager
def umask(value: int):
    """A permissive umask, as a service manager or a shell may leave it."""
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("process_umask", [0o022, 0o002, 0o000])
def test_a_new_store_is_private_to_its_owner(tmp_path, process_umask):
    folder = tmp_path / "airflow" / "gdpr_erasure"
    db = folder / "compliance.db"
    with umask(process_umask):
        store = ComplianceStore(create_store_engine(f"sqlite:///{db}"))
        store.init_db()
        store.submit("r1", SubjectIdentifiers(email="someone@example.com", phone="+15550100"))
        # A reader next to the writer: the -shm index is shared between connections.
        with store.engine.connect() as reader:
            assert store.get("r1").identifiers is not None
            wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
            assert wal.exists() and shm.exists(), "WAL mode keeps both while connections are open"
            assert {p.name: oct(mode(p)) for p in (db, wal, shm)} == {p.name: "0o600" for p in (db, wal, shm)}
            reader.close()
        store.dispose()
    assert oct(mode(folder)) == "0o700"


def test_an_existing_folder_keeps_its_mode(tmp_path):
    """A folder the operator made (shared with a group on purpose) is not changed."""
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o750)
    store = ComplianceStore(create_store_engine(f"sqlite:///{folder / 'compliance.db'}"))
    store.init_db()
    store.dispose()
    assert oct(mode(folder)) == "0o750"
    assert oct(mode(folder / "compliance.db")) == "0o600"


def test_an_existing_readable_store_is_reported_not_changed(tmp_path, caplog):
    db = tmp_path / "compliance.db"
    store = ComplianceStore(create_store_engine(f"sqlite:///{db}"))
    store.init_db()
    store.dispose()
    db.chmod(0o644)  # made by an earlier version, or by hand
    with caplog.at_level(logging.WARNING, logger="gdpr_erasure.store.engine"):
        ComplianceStore(create_store_engine(f"sqlite:///{db}")).dispose()
    assert oct(mode(db)) == "0o644"
    assert "mode 644" in caplog.text and "chmod 600" in caplog.text
    assert "example.com" not in caplog.text
