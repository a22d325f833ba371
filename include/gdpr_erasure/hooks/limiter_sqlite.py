"""The limiter's local fallback: one SQLite file that every process on the host shares.

The LocalExecutor runs each task in its own process, and the triggerer checks proofs in
another; without Redis they still call the same provider accounts. ``limits`` has no storage
that processes share without a server, so :class:`SQLiteStorage` is one: it registers the
``sqlite`` scheme with ``limits`` (``storage_from_string("sqlite:////path/limits.db")``) and
implements the moving window its :class:`~limits.strategies.MovingWindowRateLimiter` uses.
:class:`SQLiteState` keeps the adaptive rate and the concurrency leases next to it.

Every change is one ``BEGIN IMMEDIATE`` transaction (SQLite's write lock on the file), so a
read-modify-write is atomic across processes, as the Lua scripts are in Redis. The file holds
hashed account tags and timestamps only; it is rebuilt from nothing if deleted, so it needs no
durability (``synchronous=OFF``). Times are the host's clock, which every process shares.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from limits.storage import MovingWindowSupport, Storage

#: Seconds a process waits for another's write lock on the file before the call fails transient.
BUSY_TIMEOUT = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS window_events (key TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS window_events_key_at ON window_events (key, at);
CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS budgets (
    key TEXT PRIMARY KEY, rate REAL, successes INTEGER NOT NULL DEFAULT 0,
    decreased REAL, touched REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (key TEXT NOT NULL, token TEXT PRIMARY KEY, expires REAL NOT NULL);
"""
#: A lowered rate is forgotten after this long without 429s or successes (as in Redis).
RATE_MEMORY = 3600.0


def path_of(uri: str) -> Path:
    """The file of ``sqlite:////abs/path`` (or ``sqlite:///relative``)."""
    parts = urlsplit(uri)
    if parts.scheme != "sqlite" or not parts.path.strip("/"):
        raise ValueError(f"a sqlite limiter URL names a file: sqlite:////path/to/limits.db, got {uri!r}")
    return Path(parts.path[1:] if parts.path.startswith("//") else parts.path.lstrip("/"))


class _File:
    """One connection per process to the shared file, used under a lock (sqlite3 objects are not
    for concurrent threads), with transactions that take the file's write lock at once."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            str(path), timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        path.chmod(0o600)
        # Switching to WAL answers "locked" at once, without the busy handler, when another
        # process opens the new file at the same moment: retry it like a write.
        _while_locked(lambda: self._db.execute("PRAGMA journal_mode=WAL"), pause=(0.001, 0.01))
        self._db.execute("PRAGMA synchronous=OFF")
        with self.write() as db:
            for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                db.execute(statement)

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._begin()
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _begin(self) -> None:
        # Our own busy loop for the write lock, not SQLite's: its handler backs off to 100 ms sleeps,
        # so a process that collides once keeps losing freed slots to one that did not. Reads and
        # the schema keep SQLite's handler (the connection's timeout).
        self._db.execute("PRAGMA busy_timeout = 0")
        try:
            _while_locked(lambda: self._db.execute("BEGIN IMMEDIATE"), pause=(0.0001, 0.001))
        finally:
            self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")

    def read(self, sql: str, *args: object) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()


def _while_locked(statement, pause: tuple[float, float]) -> None:
    """Run ``statement`` again after a short random pause while another process holds the file's
    lock, for :data:`BUSY_TIMEOUT` at most."""
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            statement()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(random.uniform(*pause))


_files: dict[Path, _File] = {}
_files_lock = threading.Lock()


def shared_file(path: Path) -> _File:
    """The process's one connection to ``path``."""
    path = path.resolve()
    with _files_lock:
        if path not in _files:
            _files[path] = _File(path)
        return _files[path]


class SQLiteStorage(Storage, MovingWindowSupport):
    """``limits`` storage in a SQLite file: the moving window (and fixed-window counters, which
    ``limits`` requires of every storage) shared by the processes of one host."""

    STORAGE_SCHEME = ["sqlite"]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: object) -> None:
        self.file = shared_file(path_of(uri or ""))
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    @property
    def base_exceptions(self) -> type[Exception]:
        return sqlite3.Error

    # -- the moving window -----------------------------------------------------------------

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        now = time.time()
        with self.file.write() as db:
            db.execute("DELETE FROM window_events WHERE key = ? AND at <= ?", (key, now - expiry))
            (taken,) = db.execute("SELECT count(*) FROM window_events WHERE key = ?", (key,)).fetchone()
            if taken + amount > limit:
                return False
            db.executemany("INSERT INTO window_events (key, at) VALUES (?, ?)", [(key, now)] * amount)
            return True

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        now = time.time()
        oldest, count = self.file.read(
            "SELECT min(at), count(*) FROM window_events WHERE key = ? AND at > ?", key, now - expiry
        )[0]
        return (oldest, count) if count else (now, 0)

    # -- fixed-window counters (unused by the limiter, required by Storage) ----------------

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = time.time()
        with self.file.write() as db:
            db.execute("DELETE FROM counters WHERE key = ? AND expires <= ?", (key, now))
            db.execute(
                "INSERT INTO counters (key, value, expires) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
                (key, amount, now + expiry),
            )
            return db.execute("SELECT value FROM counters WHERE key = ?", (key,)).fetchone()[0]

    def get(self, key: str) -> int:
        rows = self.file.read("SELECT value FROM counters WHERE key = ? AND expires > ?", key, time.time())
        return rows[0][0] if rows else 0

    def get_expiry(self, key: str) -> float:
        rows = self.file.read("SELECT expires FROM counters WHERE key = ?", key)
        return rows[0][0] if rows else time.time()

    def check(self) -> bool:
        try:
            self.file.read("SELECT 1")
        except sqlite3.Error:
            return False
        return True

    def reset(self) -> int | None:
        with self.file.write() as db:
            removed = db.execute("DELETE FROM window_events").rowcount
            removed += db.execute("DELETE FROM counters").rowcount
        return removed

    def clear(self, key: str) -> None:
        with self.file.write() as db:
            db.execute("DELETE FROM window_events WHERE key = ?", (key,))
            db.execute("DELETE FROM counters WHERE key = ?", (key,))


class SQLiteState:
    """The adaptive rate and the concurrency leases of one budget in the shared file.

    :param file: the process's connection to the file (:func:`shared_file`)
    :param key: the budget's key (provider and hashed account)
    """

    def __init__(self, file: _File, key: str) -> None:
        self.file = file
        self.key = key

    def rate(self, ceiling: float) -> float:
        rows = self.file.read(
            "SELECT rate FROM budgets WHERE key = ? AND touched > ?", self.key, time.time() - RATE_MEMORY
        )
        stored = rows[0][0] if rows and rows[0][0] is not None else ceiling
        return min(ceiling, stored)

    def throttled(self, ceiling: float, floor: float, cooldown: float) -> float:
        now = time.time()
        with self.file.write() as db:
            rate, _, decreased = self._row(db, ceiling, now)
            if decreased is None or now - decreased >= cooldown:
                rate, decreased = max(floor, rate / 2), now
            self._store(db, rate, 0, decreased, now)
        return rate

    def succeeded(self, ceiling: float, recover_after: int, step: float) -> float:
        now = time.time()
        rate = self.rate(ceiling)
        if rate >= ceiling:
            return rate  # the common case: no write at all
        with self.file.write() as db:
            rate, successes, decreased = self._row(db, ceiling, now)
            successes += 1
            if successes >= recover_after:
                rate, successes = min(ceiling, rate + step), 0
            self._store(db, rate, successes, decreased, now)
        return rate

    def lease(self, limit: int, ttl: float, token: str) -> float | None:
        """Take a slot: None when leased, else the seconds until the oldest lease expires."""
        now = time.time()
        with self.file.write() as db:
            db.execute("DELETE FROM leases WHERE key = ? AND expires <= ?", (self.key, now))
            held, first = db.execute(
                "SELECT count(*), min(expires) FROM leases WHERE key = ?", (self.key,)
            ).fetchone()
            if held < limit:
                db.execute(
                    "INSERT INTO leases (key, token, expires) VALUES (?, ?, ?)", (self.key, token, now + ttl)
                )
                return None
            return max(0.0, first - now)

    def release(self, token: str) -> None:
        with self.file.write() as db:
            db.execute("DELETE FROM leases WHERE token = ?", (token,))

    def _row(self, db: sqlite3.Connection, ceiling: float, now: float) -> tuple[float, int, float | None]:
        row = db.execute(
            "SELECT rate, successes, decreased FROM budgets WHERE key = ? AND touched > ?",
            (self.key, now - RATE_MEMORY),
        ).fetchone()
        if row is None or row[0] is None:
            return ceiling, 0, None
        return min(ceiling, row[0]), row[1], row[2]

    def _store(
        self, db: sqlite3.Connection, rate: float, successes: int, decreased: float | None, now: float
    ) -> None:
        db.execute(
            "INSERT INTO budgets (key, rate, successes, decreased, touched) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET rate = excluded.rate, successes = excluded.successes, "
            "decreased = excluded.decreased, touched = excluded.touched",
            (self.key, rate, successes, decreased, now),
        )
