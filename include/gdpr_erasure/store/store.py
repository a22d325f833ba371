"""The compliance store: intake of erasure requests, their progress, and the audit ledger.

SQLAlchemy Core on one schema for SQLite and PostgreSQL. Every state change is a single
conditional UPDATE (compare-and-set on ``status``), so two workers can never both move a request,
and claiming is atomic: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite.
A request may carry a ``not_before`` time (``deferred``: a provider's quota is spent until then):
no run claims it earlier. Each step's row says where it ran (:class:`TaskTry`), and each request
when and into which batch it was last claimed, so its task logs can be found. Legal holds
(:class:`LegalHold`, schema 6) keep the requests they name ``on_hold``: a claim diverts them in
its own transaction, and each erasure step asks again before it writes
(:meth:`ComplianceStore.hold_before_write`).
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cached_property
from typing import Any

from sqlalchemy import (
    JSON,
    Connection,
    Engine,
    and_,
    case,
    exc,
    func,
    insert,
    or_,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

from gdpr_erasure.identifiers import SubjectIdentifiers
from gdpr_erasure.store import migrations, schema
from gdpr_erasure.store.chain import (
    GENESIS_HASH,
    AuditEntry,
    ChainReport,
    canonical_json,
    chain_hash,
    verify_chain,
)
from gdpr_erasure.store.engine import create_store_engine, resolve_db_url
from gdpr_erasure.store.status import ALLOWED_SOURCES, CLAIMABLE, CLOSED, RequestStatus, StepStatus
from gdpr_erasure.store.types import utcnow

#: The PostgreSQL advisory lock that serialises ledger appends ("gdpraudi" as a bigint).
AUDIT_APPEND_LOCK = int.from_bytes(b"gdpraudi", "big")

R = schema.erasure_requests
STEPS = schema.erasure_steps
AUDIT = schema.audit_log
HOLDS = schema.legal_holds

DEFAULT_LEASE = timedelta(hours=6)


class StoreError(Exception):
    """Base class of the store's errors. Messages carry request ids, never identifiers."""


class StoreMissing(StoreError):
    """There is no initialised compliance store where the URL points; the message says where
    it looked (password hidden) and how to point elsewhere."""


class RequestNotFound(StoreError):
    pass


class InvalidTransition(StoreError):
    def __init__(self, request_id: str, current: str, target: str) -> None:
        super().__init__(f"request {request_id}: cannot move from {current} to {target}")
        self.request_id = request_id
        self.current = current
        self.target = target


class AuditRecordExists(StoreError):
    """The request already has its audit record; the ledger holds one per request."""


class SchemaTooNew(StoreError):
    """The store was created by a newer version of this package; this one must not touch it."""


class HoldNotFound(StoreError):
    """No legal hold has that id."""


class HoldNotActive(StoreError):
    """The legal hold was released already."""


@dataclass(frozen=True)
class ErasureRequest:
    """A row of the intake table. ``repr`` shows which identifiers exist, not their values."""

    id: str
    status: RequestStatus
    attempts: int
    failures: int
    source: str
    received_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    claimed_by: str | None
    lease_expires_at: datetime | None
    last_error: str | None
    identifiers: SubjectIdentifiers | None
    identifiers_hash: str | None
    pii_erased_at: datetime | None
    #: ``deferred`` until then: a provider's quota is spent (None: claimable now).
    not_before: datetime | None = None
    #: When the latest claim was made (None: never claimed, or claimed before schema 5).
    claimed_at: datetime | None = None
    #: The map index of the batch (the mapped ``erase_batch`` group) the latest claim put it in.
    claimed_map_index: int | None = None

    def __repr__(self) -> str:
        present = self.identifiers.present() if self.identifiers else []
        return f"ErasureRequest(id={self.id!r}, status={self.status.value}, identifiers={present})"


@dataclass(frozen=True)
class TaskTry:
    """One try of one Airflow task instance: where a step ran, hence where its log is (the UI's
    task instance page, the REST API's ``.../taskInstances/{task_id}/logs/{try_number}`` with
    ``map_index``).

    :param dag_id: the DAG.
    :param task_id: the full task id (``erase_batch.erase_stripe``).
    :param run_id: the DAG run.
    :param map_index: the mapped task instance (-1: not mapped).
    :param try_number: the try (None: not known).
    """

    dag_id: str
    task_id: str
    run_id: str
    map_index: int = -1
    try_number: int | None = None


@dataclass(frozen=True)
class StepResult:
    step: str
    status: StepStatus
    result: dict[str, Any]
    attempts: int
    updated_at: datetime
    #: The task instance and try that last worked on the step (None: written before schema 5 or
    #: outside a task).
    ran_in: TaskTry | None = None


@dataclass(frozen=True)
class SubmitResult:
    request: ErasureRequest
    created: bool


#: A request's identifiers to the keyed hash of each, by field name (``hashing.identifier_hashes``
#: with the key: :class:`gdpr_erasure.holds.IdentifierHasher`): how the store matches holds on a
#: person without holding the hash key, or keeping any identifier in clear.
HashesOf = Callable[[SubjectIdentifiers], Mapping[str, str]]
#: What a request held by a hold says in ``last_error``: the hold, never its target.
ON_HOLD_REASON = "on hold: {hold_id}"


@dataclass(frozen=True)
class LegalHold:
    """A row of ``legal_holds``: a request, or one identifier of a person by its keyed hash, that
    must not be erased while the hold is active (not released, ``until`` not past). ``repr``
    shows the target's type and a hash prefix only.

    :param hold_id: ``hold-`` and random hex.
    :param target_type: ``request``, ``email`` or ``phone``.
    :param target: the request id, or the identifier's keyed hash (64 hex).
    :param reason: why, from ops (no identifier: :func:`gdpr_erasure.holds.check_reason`).
    :param placed_at: when it was placed.
    :param placed_by: who placed it (OS user or ``--by``).
    :param until: its last active day (UTC); None: until released.
    :param hash_key_id: the hash key of an identifier's hash (None for a request).
    """

    hold_id: str
    target_type: str
    target: str
    reason: str
    placed_at: datetime
    placed_by: str
    until: date | None = None
    hash_key_id: str | None = None
    released_at: datetime | None = None
    released_by: str | None = None
    release_reason: str | None = None

    def is_active(self, today: date | None = None) -> bool:
        return self.released_at is None and (self.until is None or self.until >= (today or utcnow().date()))

    def state(self, today: date | None = None) -> str:
        """``active``, ``expired`` (``until`` has passed) or ``released``."""
        if self.released_at is not None:
            return "released"
        return "active" if self.is_active(today) else "expired"

    @property
    def target_label(self) -> str:
        """The request id, or the identifier's type and the first 12 hex of its keyed hash."""
        return self.target if self.target_type == "request" else f"{self.target_type} #{self.target[:12]}"

    def __repr__(self) -> str:
        return f"LegalHold(hold_id={self.hold_id!r}, target={self.target_label!r}, state={self.state()})"


def _row_to_request(row) -> ErasureRequest:
    m = row._mapping
    identifiers = None
    if m["pii_erased_at"] is None and any(m[k] for k in ("email", "phone", "stripe_customer_id", "user_id")):
        # Rows written before emails were NFC-normalised at intake may hold a decomposed spelling:
        # normalise on the way out, so the comparison form and the keyed hash are the same.
        given = unicodedata.normalize("NFC", m["email"]) if m["email"] else None
        identifiers = SubjectIdentifiers(
            email=given.lower() if given else None,
            phone=m["phone"],
            stripe_customer_id=m["stripe_customer_id"],
            user_id=m["user_id"],
            email_as_given=given,
        )
    return ErasureRequest(
        id=m["id"],
        status=RequestStatus(m["status"]),
        attempts=m["attempts"],
        failures=m["failures"],
        source=m["source"],
        received_at=m["received_at"],
        updated_at=m["updated_at"],
        completed_at=m["completed_at"],
        claimed_by=m["claimed_by"],
        lease_expires_at=m["lease_expires_at"],
        last_error=m["last_error"],
        identifiers=identifiers,
        identifiers_hash=m["identifiers_hash"],
        pii_erased_at=m["pii_erased_at"],
        not_before=m["not_before"],
        claimed_at=m["claimed_at"],
        claimed_map_index=m["claimed_map_index"],
    )


def _row_to_step(row) -> StepResult:
    ran_in = None
    if row.dag_id and row.task_id and row.run_id:
        map_index = row.map_index if row.map_index is not None else -1
        ran_in = TaskTry(row.dag_id, row.task_id, row.run_id, map_index, row.try_number)
    return StepResult(
        row.step, StepStatus(row.status), json.loads(row.result), row.attempts, row.updated_at, ran_in
    )


def _row_to_hold(row) -> LegalHold:
    m = row._mapping
    return LegalHold(**{name: m[name] for name in (c.name for c in HOLDS.c)})


def _row_to_audit_entry(row) -> AuditEntry:
    return AuditEntry(
        seq=row.seq,
        request_id=row.request_id,
        recorded_at=row.recorded_at,
        record=json.loads(row.record),
        record_json=row.record,
        prev_hash=row.prev_hash,
        record_hash=row.record_hash,
    )


class ComplianceStore:
    """Access to the compliance database.

    :param engine: an engine from :func:`gdpr_erasure.store.engine.create_store_engine`.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open_existing(cls, url: str | None = None, *, pre_ping: bool = True) -> ComplianceStore:
        """The store at ``url`` (resolved like :meth:`from_url`) if it was initialised; raise
        :class:`StoreMissing` otherwise. Never creates anything: reading commands and the
        preflight use it, so a wrong place gives one clear line instead of a new empty store."""
        resolved = resolve_db_url(url)
        parsed = make_url(resolved)
        where = parsed.render_as_string(hide_password=True)
        hint = (
            f"no compliance store at {where}: run gdpr-erasure db init there, or point elsewhere "
            "with --db-url, $GDPR_COMPLIANCE_DB_URL or the compliance_db connection"
        )
        database = parsed.database
        sqlite_file = parsed.get_backend_name() == "sqlite" and database not in (None, "", ":memory:")
        if sqlite_file and not os.path.exists(database):
            raise StoreMissing(hint)
        store = cls(create_store_engine(resolved, pre_ping=pre_ping))
        try:
            version = store.schema_version()
        except exc.DBAPIError as error:  # unreachable, or no store_meta table: name the type only
            store.dispose()
            raise StoreMissing(f"{hint} ({type(error.orig).__name__})") from None
        if version is None:
            store.dispose()
            raise StoreMissing(hint)
        return store

    @classmethod
    def from_url(cls, url: str | None = None, *, pre_ping: bool = True) -> ComplianceStore:
        """Open the store at ``url`` or, if None, wherever :func:`resolve_db_url` points.

        :param pre_ping: test each pooled connection before use (PostgreSQL). Right for
            long-lived processes (the intake); a task process that lives for one task skips it,
            as it doubled the round trips of every short transaction.
        """
        return cls(create_store_engine(resolve_db_url(url), pre_ping=pre_ping))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def dispose(self) -> None:
        self.engine.dispose()

    # -- schema ----------------------------------------------------------------------------

    def init_db(self) -> list[str]:
        """Create tables, indexes and the append-only triggers, or migrate a store of an earlier
        schema version in place (:mod:`gdpr_erasure.store.migrations`). Safe to run any number
        of times. Refuses a store of a newer version than this package's. Returns the migration
        steps applied (empty for a new or current store)."""
        found = migrations.stored_version(self.engine)
        if found is not None and found > schema.SCHEMA_VERSION:
            raise SchemaTooNew(
                f"the compliance store has schema version {found}; this package knows "
                f"{schema.SCHEMA_VERSION}: upgrade the package, do not downgrade the store"
            )
        migrated = migrations.upgrade(self.engine, found)
        with self.engine.begin() as conn:
            schema.metadata.create_all(conn, checkfirst=True)
            ddl = schema.POSTGRES_TRIGGERS if self.dialect == "postgresql" else schema.SQLITE_TRIGGERS
            for statement in ddl:
                conn.exec_driver_sql(statement)
            self._upsert(
                conn,
                schema.store_meta,
                {"key": "schema_version", "value": str(schema.SCHEMA_VERSION)},
                ["key"],
            )
        return migrated

    def schema_version(self) -> int | None:
        with self.engine.connect() as conn:
            value = conn.execute(
                select(schema.store_meta.c.value).where(schema.store_meta.c.key == "schema_version")
            ).scalar_one_or_none()
        return int(value) if value is not None else None

    # -- intake ----------------------------------------------------------------------------

    def submit(
        self,
        request_id: str,
        identifiers: SubjectIdentifiers,
        *,
        received_at: datetime | None = None,
        source: str = "api",
    ) -> SubmitResult:
        """Add a pending request. The same ``request_id`` again returns the stored one unchanged."""
        now = utcnow()
        values = {
            "id": request_id,
            "email": identifiers.email_as_given or identifiers.email,
            "phone": identifiers.phone,
            "stripe_customer_id": identifiers.stripe_customer_id,
            "user_id": identifiers.user_id,
            "source": source,
            "status": RequestStatus.PENDING.value,
            "attempts": 0,
            "failures": 0,
            "received_at": received_at or now,
            "updated_at": now,
        }
        # One round trip in the common case (a new id): the insert returns the row it wrote. The
        # intake calls this on every webhook, so it is the throughput path.
        with self.engine.begin() as conn:
            row = conn.execute(self._submit_statement, values).one_or_none()
            if row is not None:
                return SubmitResult(_row_to_request(row), True)
            row = conn.execute(select(R).where(R.c.id == request_id)).one()
        return SubmitResult(_row_to_request(row), False)

    @cached_property
    def _submit_statement(self):
        """INSERT ... ON CONFLICT (id) DO NOTHING RETURNING *, built once (the values are bound
        per call), so submitting does not recompile the statement every time."""
        return self._insert_for()(R).on_conflict_do_nothing(index_elements=["id"]).returning(*R.c)

    def get(self, request_id: str) -> ErasureRequest:
        with self.engine.connect() as conn:
            row = conn.execute(select(R).where(R.c.id == request_id)).one_or_none()
        if row is None:
            raise RequestNotFound(f"request {request_id} not found")
        return _row_to_request(row)

    def list_requests(
        self, statuses: Iterable[RequestStatus] | None = None, limit: int = 1000
    ) -> list[ErasureRequest]:
        query = select(R).order_by(R.c.received_at, R.c.id).limit(limit)
        if statuses is not None:
            query = query.where(R.c.status.in_([s.value for s in statuses]))
        with self.engine.connect() as conn:
            return [_row_to_request(row) for row in conn.execute(query)]

    def open_requests_received_before(self, cutoff: datetime, limit: int = 1000) -> list[ErasureRequest]:
        """Requests not yet completed that arrived before ``cutoff`` (deadline reporting). Requests
        ``on_hold`` are left out: a legal hold suspends their erasure (GDPR Art. 17(3)). So are
        requests closed once (``completed_at``): one ``completed_with_exemptions`` was answered in
        time, and the review of what the policy kept that a later run does is not overdue."""
        open_statuses = [s.value for s in RequestStatus if s not in (*CLOSED, RequestStatus.ON_HOLD)]
        query = (
            select(R)
            .where(R.c.status.in_(open_statuses), R.c.received_at < cutoff, R.c.completed_at.is_(None))
            .order_by(R.c.received_at)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_row_to_request(row) for row in conn.execute(query)]

    def counts_by_status(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(R.c.status, func.count()).group_by(R.c.status)).all()
        return {status: count for status, count in rows}

    # -- claiming and state ----------------------------------------------------------------

    def claim(
        self,
        limit: int,
        claimed_by: str,
        *,
        lease: timedelta = DEFAULT_LEASE,
        request_ids: Sequence[str] | None = None,
        batch_size: int | Callable[[int], int] | None = None,
        hashes_of: HashesOf | None = None,
    ) -> list[str]:
        """Atomically move up to ``limit`` claimable requests to ``in_progress``; return their ids.

        Claimable: ``pending``, ``failed`` (retry), ``verifying`` (re-check what is still
        pending), ``deferred`` whose ``not_before`` has passed (a provider's quota was reset),
        ``completed_with_exemptions`` whose ``not_before`` (its review date) has passed (what the
        erasure policy kept is checked again; one without a review date is never claimed), or
        ``in_progress`` whose lease has expired (its run died). A request whose ``not_before`` is
        still ahead is left alone. Oldest first. Concurrent callers never receive the same request.
        Each claimed request records the claim's time (``claimed_at``) and run (``claimed_by``).
        A candidate that an active legal hold names goes ``on_hold`` instead, in the same
        transaction (:meth:`_divert_held`).

        :param batch_size: when the caller splits the returned ids, in order, into batches of this
            size (one mapped task group each), each request also records its batch's position
            (``claimed_map_index``: the map index of the tasks that will work on it). A function
            of the number claimed gives the size when it depends on it (``batch_size: auto``).
        :param hashes_of: each identifier's keyed hash, to match holds on a person; needed only
            while such a hold is active (without it the claim then fails rather than claim blindly).
        """
        if limit <= 0:
            return []
        now = utcnow()
        # A request closed with exemptions is due only at its review date: without one it waits
        # for a person (NULL <= now is not true).
        due = or_(
            and_(R.c.not_before.is_(None), R.c.status != RequestStatus.COMPLETED_WITH_EXEMPTIONS.value),
            R.c.not_before <= now,
        )
        claimable = or_(
            and_(R.c.status.in_([s.value for s in CLAIMABLE]), due),
            and_(R.c.status == RequestStatus.IN_PROGRESS.value, R.c.lease_expires_at < now),
        )
        candidates = select(R.c.id).where(claimable)
        if request_ids is not None:
            candidates = candidates.where(R.c.id.in_(list(request_ids)))
        # SKIP LOCKED: a second claimer passes over rows the first has locked instead of waiting
        # and then double-claiming. SQLAlchemy leaves the clause out on SQLite, where BEGIN
        # IMMEDIATE (see engine.py) serialises claimers instead.
        candidates = (
            candidates.order_by(R.c.received_at, R.c.id).limit(limit).with_for_update(skip_locked=True)
        )
        statement = (
            update(R)
            .where(R.c.id.in_(candidates.scalar_subquery()))
            .values(
                status=RequestStatus.IN_PROGRESS.value,
                claimed_by=claimed_by,
                claimed_at=now,
                claimed_map_index=None,
                lease_expires_at=now + lease,
                attempts=R.c.attempts + 1,
                not_before=None,  # it is due: the step that waited runs again in this run
                updated_at=now,
            )
            .returning(R.c.id, R.c.received_at)
        )
        with self.engine.begin() as conn:
            if self._any_active_hold(conn, now):
                statement = statement.where(R.c.id.in_(self._divert_held(conn, candidates, hashes_of, now)))
            rows = conn.execute(statement).all()
            ids = [row.id for row in sorted(rows, key=lambda r: (r.received_at, r.id))]
            size = batch_size(len(ids)) if callable(batch_size) else batch_size
            if size:
                # One statement per batch (at most [core] max_map_length), in the claim's transaction.
                for index, start in enumerate(range(0, len(ids), size)):
                    conn.execute(
                        update(R).where(R.c.id.in_(ids[start : start + size])).values(claimed_map_index=index)
                    )
        return ids

    def transition(
        self,
        request_id: str,
        target: RequestStatus,
        *,
        error: str | None = None,
        expected: Iterable[RequestStatus] | None = None,
        not_before: datetime | None = None,
    ) -> ErasureRequest:
        """Move a request to ``target`` if the state machine allows it from its current status.

        :param error: reason to record (for ``failed`` / ``needs_attention`` / ``deferred``); must
            hold no PII.
        :param expected: narrow the allowed source statuses further (compare-and-set).
        :param not_before: for ``deferred`` (required): no run claims the request before then; for
            ``completed_with_exemptions``: the earliest review date of what the policy kept (None:
            nothing kept is reviewed automatically, no run claims it again).
        """
        sources = set(ALLOWED_SOURCES[target])
        if expected is not None:
            sources &= set(expected)
        now = utcnow()
        values: dict[str, Any] = {"status": target.value, "updated_at": now}
        if target is RequestStatus.COMPLETED:
            values |= {"completed_at": now, "lease_expires_at": None, "last_error": None, "not_before": None}
        elif target is RequestStatus.COMPLETED_WITH_EXEMPTIONS:
            # completed_at: when it was first closed (a review keeps it: the answer was given then).
            values |= {
                "completed_at": func.coalesce(R.c.completed_at, now),
                "lease_expires_at": None,
                "last_error": None,
                "not_before": not_before,
            }
        elif target in (RequestStatus.FAILED, RequestStatus.NEEDS_ATTENTION):
            values |= {"last_error": error, "lease_expires_at": None}
        elif target is RequestStatus.DEFERRED:
            if not_before is None:
                raise ValueError("a deferred request needs the time it is due (not_before)")
            values |= {"last_error": error, "lease_expires_at": None, "not_before": not_before}
        elif target is RequestStatus.PENDING:
            values |= {
                "claimed_by": None,
                "claimed_at": None,
                "claimed_map_index": None,
                "lease_expires_at": None,
                "not_before": None,
            }
        statement = (
            update(R)
            .where(R.c.id == request_id, R.c.status.in_([s.value for s in sources]))
            .values(**values)
            .returning(*R.c)
        )
        with self.engine.begin() as conn:
            row = conn.execute(statement).one_or_none()
            if row is None:
                current = conn.execute(select(R.c.status).where(R.c.id == request_id)).scalar_one_or_none()
                if current is None:
                    raise RequestNotFound(f"request {request_id} not found")
                raise InvalidTransition(request_id, current, target.value)
        return _row_to_request(row)

    def erase_identifiers(
        self, request_id: str, identifiers_hash: str, *, unresolved_reason: str | None = None
    ) -> bool:
        """Replace a request's identifiers in the intake table by their keyed hash. Idempotent;
        True if identifiers were erased now, False if they were already gone.

        Normally for ``completed`` (or ``completed_with_exemptions``) requests. With
        ``unresolved_reason``, for a ``failed`` or
        ``needs_attention`` request kept past its limit: it moves to ``needs_attention``
        without identifiers, and the reason says why.
        """
        now = utcnow()
        values: dict[str, Any] = {
            "email": None,
            "phone": None,
            "stripe_customer_id": None,
            "user_id": None,
            "identifiers_hash": identifiers_hash,
            "pii_erased_at": now,
            "updated_at": now,
        }
        if unresolved_reason is None:
            allowed = [s.value for s in CLOSED]
        else:
            allowed = [RequestStatus.FAILED.value, RequestStatus.NEEDS_ATTENTION.value]
            values |= {"status": RequestStatus.NEEDS_ATTENTION.value, "last_error": unresolved_reason}
        statement = (
            update(R)
            .where(R.c.id == request_id, R.c.status.in_(allowed), R.c.pii_erased_at.is_(None))
            .values(**values)
        )
        with self.engine.begin() as conn:
            erased = conn.execute(statement).rowcount == 1
        if erased:
            self._flush_sqlite_journal()
        return erased

    def identifiers_due_for_erasure(
        self, *, completed_before: datetime, unresolved_before: datetime, limit: int = 1000
    ) -> list[ErasureRequest]:
        """Requests still holding identifiers although their retention is over: completed (with or
        without exemptions) before ``completed_before``, or failed / needs_attention and received
        before ``unresolved_before``."""
        query = (
            select(R)
            .where(
                R.c.pii_erased_at.is_(None),
                or_(
                    and_(R.c.status.in_([s.value for s in CLOSED]), R.c.completed_at <= completed_before),
                    and_(
                        R.c.status.in_([RequestStatus.FAILED.value, RequestStatus.NEEDS_ATTENTION.value]),
                        R.c.received_at <= unresolved_before,
                    ),
                ),
            )
            .order_by(R.c.received_at)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_row_to_request(row) for row in conn.execute(query)]

    def _flush_sqlite_journal(self) -> None:
        """Copy the WAL back into the database and truncate it: erased values must not linger in
        the write-ahead log (secure_delete covers the database file's free pages)."""
        if self.dialect != "sqlite":
            return
        raw = self.engine.raw_connection()
        try:
            raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()

    def record_failure(self, request_id: str, reason: str, *, max_failures: int) -> ErasureRequest:
        """End this attempt as ``failed`` (a later run retries it) or, at the ``max_failures``-th
        failure, as ``needs_attention`` (a person must look). ``reason`` holds no PII."""
        sources = [s.value for s in ALLOWED_SOURCES[RequestStatus.FAILED]]
        now = utcnow()
        failures = R.c.failures + 1
        statement = (
            update(R)
            .where(R.c.id == request_id, R.c.status.in_(sources))
            .values(
                failures=failures,
                status=case(
                    (failures >= max_failures, RequestStatus.NEEDS_ATTENTION.value),
                    else_=RequestStatus.FAILED.value,
                ),
                last_error=reason,
                lease_expires_at=None,
                updated_at=now,
            )
            .returning(*R.c)
        )
        with self.engine.begin() as conn:
            row = conn.execute(statement).one_or_none()
            if row is None:
                current = conn.execute(select(R.c.status).where(R.c.id == request_id)).scalar_one_or_none()
                if current is None:
                    raise RequestNotFound(f"request {request_id} not found")
                raise InvalidTransition(request_id, current, RequestStatus.FAILED.value)
        return _row_to_request(row)

    def defer(self, request_id: str, not_before: datetime, reason: str) -> ErasureRequest:
        """End this attempt as ``deferred`` until ``not_before``: a provider asked us to wait
        longer than a task should (Segment's monthly regulation quota). Not a failure: the
        failure count is unchanged, and the first run after ``not_before`` claims it again.
        ``reason`` holds no PII."""
        return self.transition(
            request_id,
            RequestStatus.DEFERRED,
            error=reason,
            not_before=not_before,
            expected=[RequestStatus.IN_PROGRESS],
        )

    def deferred_requests(
        self,
        *,
        received_since: datetime | None = None,
        received_until: datetime | None = None,
        limit: int = 1000,
    ) -> list[ErasureRequest]:
        """``deferred`` requests (received in ``[received_since, received_until)`` if given),
        soonest due first: what waits for a provider's quota, and until when."""
        query = (
            select(R)
            .where(R.c.status == RequestStatus.DEFERRED.value)
            .order_by(R.c.not_before, R.c.received_at, R.c.id)
            .limit(limit)
        )
        if received_since is not None:
            query = query.where(R.c.received_at >= received_since)
        if received_until is not None:
            query = query.where(R.c.received_at < received_until)
        with self.engine.connect() as conn:
            return [_row_to_request(row) for row in conn.execute(query)]

    def requeue(self, request_id: str) -> ErasureRequest:
        """Ops: send a ``needs_attention``, ``failed``, ``deferred`` or ``completed_with_exemptions``
        request back to ``pending`` with a fresh failure count (and no ``not_before``: the next run
        takes it; for one closed with exemptions, it checks what the policy kept again now); its
        recorded steps stay, so work already done is not repeated. Not an ``on_hold`` request: only
        releasing its hold (:meth:`release_hold`) does that."""
        sources = ALLOWED_SOURCES[RequestStatus.PENDING] - {RequestStatus.ON_HOLD}
        request = self.transition(request_id, RequestStatus.PENDING, expected=sources)
        with self.engine.begin() as conn:
            conn.execute(update(R).where(R.c.id == request_id).values(failures=0))
        return self.get(request.id)

    # -- step results ----------------------------------------------------------------------

    def record_step(
        self,
        request_id: str,
        step: str,
        status: StepStatus,
        result: dict[str, Any] | None = None,
        *,
        ran_in: TaskTry | None = None,
    ) -> None:
        """Record (or overwrite) the outcome of one step; ``result`` is JSON without PII.

        :param ran_in: the task instance and try working on the step, recorded with it. None
            keeps what the row holds: a rewrite that is not the step's work (``write_ledger_record``
            replacing ids by tags) must not move where the step ran.
        """
        now = utcnow()
        values = {
            "request_id": request_id,
            "step": step,
            "status": status.value,
            "result": canonical_json(result or {}),
            "attempts": 1,
            "updated_at": now,
        }
        changes: dict[str, Any] = {
            "status": values["status"],
            "result": values["result"],
            "updated_at": now,
            "attempts": STEPS.c.attempts + 1,
        }
        if ran_in is not None:
            where = {
                "dag_id": ran_in.dag_id,
                "task_id": ran_in.task_id,
                "run_id": ran_in.run_id,
                "map_index": ran_in.map_index,
                "try_number": ran_in.try_number,
            }
            values |= where
            changes |= where
        with self.engine.begin() as conn:
            self._upsert(conn, STEPS, values, ["request_id", "step"], update=changes)

    def steps(self, request_id: str) -> dict[str, StepResult]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(STEPS).where(STEPS.c.request_id == request_id)).all()
        return {row.step: _row_to_step(row) for row in rows}

    # -- audit ledger ----------------------------------------------------------------------

    def append_audit(self, request_id: str, record: dict[str, Any]) -> AuditEntry:
        """Append the request's audit record to the chain. Raises :class:`AuditRecordExists`
        if it already has one, so a rerun can never write a second record."""
        with self.engine.begin() as conn:
            return self._append_entry(conn, request_id, record)

    def _append_entry(self, conn: Connection, key: str, record: dict[str, Any]) -> AuditEntry:
        """Append one entry to the chain in the caller's transaction. ``key`` is the ledger's
        ``request_id`` column: a request id, or a hold entry's ``<hold id>/<action>``."""
        record_json = canonical_json(record)
        if self.dialect == "postgresql":
            # Appends must be serial for the chain to be linear; readers are not blocked. An
            # advisory lock needs no privilege (LOCK TABLE would need UPDATE on the ledger).
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_APPEND_LOCK})
        if conn.execute(select(AUDIT.c.seq).where(AUDIT.c.request_id == key)).first():
            raise AuditRecordExists(f"request {key} already has an audit record")
        head = conn.execute(
            select(AUDIT.c.seq, AUDIT.c.record_hash).order_by(AUDIT.c.seq.desc()).limit(1)
        ).first()
        seq, prev_hash = (head.seq + 1, head.record_hash) if head else (1, GENESIS_HASH)
        recorded_at = utcnow()
        entry = AuditEntry(
            seq=seq,
            request_id=key,
            recorded_at=recorded_at,
            record=json.loads(record_json),
            record_json=record_json,
            prev_hash=prev_hash,
            record_hash=chain_hash(seq, prev_hash, recorded_at, record_json),
        )
        conn.execute(
            insert(AUDIT).values(
                seq=entry.seq,
                request_id=key,
                recorded_at=recorded_at,
                record=record_json,
                prev_hash=prev_hash,
                record_hash=entry.record_hash,
            )
        )
        return entry

    def audit_entries(self, after_seq: int = 0, limit: int | None = None) -> list[AuditEntry]:
        query = select(AUDIT).where(AUDIT.c.seq > after_seq).order_by(AUDIT.c.seq)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_row_to_audit_entry(row) for row in conn.execute(query)]

    def audit_entries_between(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> list[AuditEntry]:
        """Audit records written in ``[since, until)``, in chain order."""
        query = select(AUDIT).order_by(AUDIT.c.seq)
        if since is not None:
            query = query.where(AUDIT.c.recorded_at >= since)
        if until is not None:
            query = query.where(AUDIT.c.recorded_at < until)
        with self.engine.connect() as conn:
            return [_row_to_audit_entry(row) for row in conn.execute(query)]

    def received_between(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> dict[str, int]:
        """Requests received in ``[since, until)``, counted by their current status."""
        query = select(R.c.status, func.count()).group_by(R.c.status)
        if since is not None:
            query = query.where(R.c.received_at >= since)
        if until is not None:
            query = query.where(R.c.received_at < until)
        with self.engine.connect() as conn:
            return {status: count for status, count in conn.execute(query).all()}

    def audit_entry(self, request_id: str) -> AuditEntry | None:
        """The request's audit record, or None if it has none yet."""
        with self.engine.connect() as conn:
            row = conn.execute(select(AUDIT).where(AUDIT.c.request_id == request_id)).one_or_none()
        return _row_to_audit_entry(row) if row is not None else None

    # -- the auditor's reads: pages, lookups, charts ---------------------------------------------

    def audit_page(
        self,
        *,
        after_seq: int | None = None,
        before_seq: int | None = None,
        limit: int = 50,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[AuditEntry]:
        """Up to ``limit`` audit records written in ``[since, until)``, in chain order: the first
        ones after ``after_seq``, or the last ones before ``before_seq`` (the page before a page).

        Keyset pagination on ``seq`` (the primary key): every page costs an index range read, the
        last page of 100,000 records as little as the first, where OFFSET would skip every row
        before it. Records appended between two pages never shift a page.

        :param after_seq: records with a larger ``seq`` (the next page); the default is the start.
        :param before_seq: records with a smaller ``seq``, the last ``limit`` of them (the previous
            page); with ``after_seq`` as well, records strictly between the two.
        :param limit: the page size; ask for one more to learn whether another page follows.
        """
        query = select(AUDIT)
        if after_seq is not None:
            query = query.where(AUDIT.c.seq > after_seq)
        if before_seq is not None:
            query = query.where(AUDIT.c.seq < before_seq)
        if since is not None:
            query = query.where(AUDIT.c.recorded_at >= since)
        if until is not None:
            query = query.where(AUDIT.c.recorded_at < until)
        backwards = before_seq is not None and after_seq is None
        query = query.order_by(AUDIT.c.seq.desc() if backwards else AUDIT.c.seq).limit(limit)
        with self.engine.connect() as conn:
            entries = [_row_to_audit_entry(row) for row in conn.execute(query)]
        return entries[::-1] if backwards else entries

    def audit_count(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        before_seq: int | None = None,
    ) -> int:
        """How many audit records were written in ``[since, until)`` (with ``before_seq``: how
        many of them come before that ``seq``, a page's position)."""
        query = select(func.count()).select_from(AUDIT)
        if since is not None:
            query = query.where(AUDIT.c.recorded_at >= since)
        if until is not None:
            query = query.where(AUDIT.c.recorded_at < until)
        if before_seq is not None:
            query = query.where(AUDIT.c.seq < before_seq)
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one()

    def audit_tip(self) -> tuple[int, str] | None:
        """The newest record's ``seq`` and ``record_hash`` (None for an empty ledger): what
        changes whenever the ledger grows."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(AUDIT.c.seq, AUDIT.c.record_hash).order_by(AUDIT.c.seq.desc()).limit(1)
            ).first()
        return (row.seq, row.record_hash) if row is not None else None

    def audit_completion_times(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> list[tuple[int, str, str | None, str | None]]:
        """``(seq, request_id, received_at, completed_at)`` of the erasure records written in
        ``[since, until)``, in chain order, the times as the records state them (ISO 8601).

        The database extracts the two fields from the record's JSON: charts and deadline figures
        over 100,000 records need them and not the records, which take seconds to parse.
        """
        # SQLite has no JSON type to cast to (CAST AS JSON yields a number): its JSON functions
        # read the text as it is. PostgreSQL needs the cast.
        record = (
            AUDIT.c.record.cast(JSON) if self.dialect == "postgresql" else type_coerce(AUDIT.c.record, JSON)
        )
        query = select(
            AUDIT.c.seq,
            AUDIT.c.request_id,
            record["received_at"].as_string(),
            record["completed_at"].as_string(),
        ).order_by(AUDIT.c.seq)
        query = query.where(record["kind"].as_string().is_(None))  # erasure records, not hold entries
        if since is not None:
            query = query.where(AUDIT.c.recorded_at >= since)
        if until is not None:
            query = query.where(AUDIT.c.recorded_at < until)
        with self.engine.connect() as conn:
            return [(row[0], row[1], row[2], row[3]) for row in conn.execute(query)]

    def audit_exemption_entries(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> list[AuditEntry]:
        """The erasure records written in ``[since, until)`` whose ``outcome`` is
        ``completed_with_exemptions``, and the review entries written since ``since`` (a review
        follows its record, so none before; any after may say what is kept now), in chain order.

        As :meth:`audit_completion_times`, the database reads the fields it selects on, so only
        these entries are parsed: the period's report counts what the erasure policy kept.
        """
        record = (
            AUDIT.c.record.cast(JSON) if self.dialect == "postgresql" else type_coerce(AUDIT.c.record, JSON)
        )
        kind = record["kind"].as_string()
        exempted = and_(kind.is_(None), record["outcome"].as_string() == "completed_with_exemptions")
        if since is not None:
            exempted = and_(exempted, AUDIT.c.recorded_at >= since)
        if until is not None:
            exempted = and_(exempted, AUDIT.c.recorded_at < until)
        reviews = kind == "review"
        if since is not None:
            reviews = and_(reviews, AUDIT.c.recorded_at >= since)
        # Records are canonical JSON (no spaces): a text match first spares nearly every record
        # the JSON parse (PostgreSQL's cast of 100,000 records takes a second or more).
        text_match = or_(
            AUDIT.c.record.like('%"outcome":"completed_with_exemptions"%'),
            AUDIT.c.record.like('%"kind":"review"%'),
        )
        query = select(AUDIT).where(and_(text_match, or_(exempted, reviews))).order_by(AUDIT.c.seq)
        with self.engine.connect() as conn:
            return [_row_to_audit_entry(row) for row in conn.execute(query)]

    def audit_entries_by_identifiers_hash(self, hashes: Iterable[str]) -> list[AuditEntry]:
        """The audit records whose subject's ``identifiers_hash``, or one of its per-identifier
        ``identifier_hashes`` (records written since they exist), is one of ``hashes`` (keyed
        hashes, 64 hex characters), in chain order.

        The hashes live inside the record's canonical JSON as quoted strings (``"<hex>"``), which
        one scan of the ledger matches; each match is then checked on the parsed record.
        """
        wanted = {h for h in hashes if len(h) == 64 and all(c in "0123456789abcdef" for c in h)}
        if not wanted:
            return []
        # Only hex reaches the pattern: no LIKE wildcard can be smuggled in.
        query = (
            select(AUDIT)
            .where(or_(*(AUDIT.c.record.like(f'%"{h}"%') for h in sorted(wanted))))
            .order_by(AUDIT.c.seq)
        )
        with self.engine.connect() as conn:
            entries = [_row_to_audit_entry(row) for row in conn.execute(query)]

        def matches(entry: AuditEntry) -> bool:
            subject = entry.record.get("subject") or {}
            each = subject.get("identifier_hashes") or {}
            return subject.get("identifiers_hash") in wanted or any(h in wanted for h in each.values())

        return [e for e in entries if matches(e)]

    def requests_by_identifiers_hash(self, hashes: Iterable[str]) -> list[ErasureRequest]:
        """Requests whose identifiers were replaced by one of these keyed hashes (completed ones,
        and unresolved ones kept past their limit), oldest first."""
        wanted = sorted(set(hashes))
        if not wanted:
            return []
        query = select(R).where(R.c.identifiers_hash.in_(wanted)).order_by(R.c.received_at, R.c.id)
        with self.engine.connect() as conn:
            return [_row_to_request(row) for row in conn.execute(query)]

    def verify_audit_chain(self, batch: int = 1000) -> ChainReport:
        """Verify the whole ledger, reading it in batches so memory stays flat."""

        def entries():
            after = 0
            while True:
                chunk = self.audit_entries(after_seq=after, limit=batch)
                if not chunk:
                    return
                yield from chunk
                after = chunk[-1].seq

        return verify_chain(entries())

    # -- legal holds -------------------------------------------------------------------------
    # The rules (what a hold names, when it is active, the ledger entries) are in
    # gdpr_erasure.holds; here the table, and the request moves that must share a transaction.

    def place_hold(
        self, hold: LegalHold, record: dict[str, Any], *, hashes_of: HashesOf | None = None
    ) -> tuple[AuditEntry, list[str]]:
        """Store ``hold``, append its ``placed`` entry (``record``) to the ledger, and put the
        requests it names that wait for a run (``pending``, ``failed``, ``verifying``,
        ``deferred``) ``on_hold``, in one transaction: a hold never exists without its ledger entry.
        Requests ``in_progress`` are left to the run working on them: each erasure step asks
        :meth:`hold_before_write` before it writes. Returns the entry and the requests put on hold.

        :param hashes_of: each identifier's keyed hash (for a hold on a person).
        """
        now = utcnow()
        values = {name: getattr(hold, name) for name in (c.name for c in HOLDS.c)}
        with self.engine.begin() as conn:
            conn.execute(insert(HOLDS).values(**values))
            entry = self._append_entry(conn, f"{hold.hold_id}/placed", record)
            waiting = [
                s for s in ALLOWED_SOURCES[RequestStatus.ON_HOLD] if s is not RequestStatus.IN_PROGRESS
            ]
            rows = conn.execute(self._hold_candidates([hold], waiting)).all()
            held = self._put_on_hold(conn, _matching_holds(rows, [hold], hashes_of), waiting, now)
        return entry, held

    def release_hold(
        self,
        hold_id: str,
        *,
        released_by: str,
        reason: str,
        record: dict[str, Any],
        released_at: datetime | None = None,
        hashes_of: HashesOf | None = None,
    ) -> tuple[AuditEntry, list[str]]:
        """Release an active hold, append its ``released`` entry (``record``) to the ledger, and
        send the ``on_hold`` requests that no other active hold names back to ``pending``, in one
        transaction. Returns the entry and the requests sent back. Raises :class:`HoldNotFound`
        or :class:`HoldNotActive` (released already; an expired hold may still be released).

        :param released_at: the time the record states (default: now).
        """
        now = released_at or utcnow()
        with self.engine.begin() as conn:
            released = conn.execute(
                update(HOLDS)
                .where(HOLDS.c.hold_id == hold_id, HOLDS.c.released_at.is_(None))
                .values(released_at=now, released_by=released_by, release_reason=reason)
            ).rowcount
            if not released:
                if conn.execute(select(HOLDS.c.hold_id).where(HOLDS.c.hold_id == hold_id)).first() is None:
                    raise HoldNotFound(f"no legal hold {hold_id}")
                raise HoldNotActive(f"legal hold {hold_id} was released already")
            entry = self._append_entry(conn, f"{hold_id}/released", record)
            freed = self._release_unheld(conn, hashes_of, now)
        return entry, freed

    def release_unheld_requests(self, hashes_of: HashesOf | None = None) -> list[str]:
        """Send the ``on_hold`` requests that no active hold names any more (their holds expired)
        back to ``pending``; returns their ids. The claim step runs it before claiming."""
        now = utcnow()
        with self.engine.begin() as conn:
            return self._release_unheld(conn, hashes_of, now)

    def hold_before_write(self, request_id: str, hashes_of: HashesOf | None = None) -> str | None:
        """The id of the hold that keeps ``request_id`` from being erased now, or None: what an
        erasure step asks right before it writes to a provider. A request an active hold names
        moves ``on_hold`` (from any status a hold may take it from); one already ``on_hold``
        stays held even if its hold expired meanwhile (the next claim sends it back)."""
        now = utcnow()
        with self.engine.begin() as conn:
            row = conn.execute(select(R).where(R.c.id == request_id)).one_or_none()
            if row is None:
                raise RequestNotFound(f"request {request_id} not found")
            holds = self._active_holds(conn, now.date())
            match = _matching_holds([row], holds, hashes_of).get(request_id) if holds else None
            if match is not None:
                self._put_on_hold(conn, {request_id: match}, ALLOWED_SOURCES[RequestStatus.ON_HOLD], now)
                return match.hold_id
        if row.status == RequestStatus.ON_HOLD.value:
            return _hold_id_of(row.last_error) or "an expired hold"
        return None

    def get_hold(self, hold_id: str) -> LegalHold:
        with self.engine.connect() as conn:
            row = conn.execute(select(HOLDS).where(HOLDS.c.hold_id == hold_id)).one_or_none()
        if row is None:
            raise HoldNotFound(f"no legal hold {hold_id}")
        return _row_to_hold(row)

    def list_holds(self, *, include_inactive: bool = False) -> list[LegalHold]:
        """Active holds (with ``include_inactive``, expired and released ones too), oldest first."""
        query = select(HOLDS).order_by(HOLDS.c.placed_at, HOLDS.c.hold_id)
        with self.engine.connect() as conn:
            if not include_inactive:
                return self._active_holds(conn, utcnow().date())
            return [_row_to_hold(row) for row in conn.execute(query)]

    def _active_holds(self, conn: Connection, today: date) -> list[LegalHold]:
        query = select(HOLDS).where(_active_hold(today)).order_by(HOLDS.c.placed_at, HOLDS.c.hold_id)
        return [_row_to_hold(row) for row in conn.execute(query)]

    def _any_active_hold(self, conn: Connection, now: datetime) -> bool:
        return (
            conn.execute(select(HOLDS.c.hold_id).where(_active_hold(now.date())).limit(1)).first() is not None
        )

    def _divert_held(
        self, conn: Connection, candidates, hashes_of: HashesOf | None, now: datetime
    ) -> list[str]:
        """Inside a claim's transaction: lock the claim's candidates, put those an active hold
        names ``on_hold``, and return the others, which the claim then takes.

        Why no held request reaches an erasure task: the candidates stay locked (``FOR UPDATE``
        on PostgreSQL, the write lock of ``BEGIN IMMEDIATE`` on SQLite) from this check until the
        claim commits, so none can be claimed by anyone else in between; a hold committed while
        this check runs is not seen here, but every erasure step asks :meth:`hold_before_write`
        before its first write, and moves the request ``on_hold`` then."""
        rows = conn.execute(candidates.with_only_columns(*R.c)).all()
        matches = _matching_holds(rows, self._active_holds(conn, now.date()), hashes_of)
        claimable = [*CLAIMABLE, RequestStatus.IN_PROGRESS]  # in_progress: a lease that expired
        self._put_on_hold(conn, matches, claimable, now)
        return [row.id for row in rows if row.id not in matches]

    def _hold_candidates(self, holds: Sequence[LegalHold], statuses: Iterable[RequestStatus]):
        """Requests in ``statuses`` that ``holds`` might name: by id, and (holds on a person)
        every one still holding its identifiers."""
        query = select(R).where(R.c.status.in_([s.value for s in statuses]))
        ids = [h.target for h in holds if h.target_type == "request"]
        if any(h.target_type != "request" for h in holds):
            return query.where(or_(R.c.id.in_(ids), R.c.pii_erased_at.is_(None)))
        return query.where(R.c.id.in_(ids))

    def _put_on_hold(
        self,
        conn: Connection,
        matches: dict[str, LegalHold],
        sources: Iterable[RequestStatus],
        now: datetime,
    ) -> list[str]:
        """Move each request of ``matches`` from one of ``sources`` to ``on_hold`` (compare-and-set);
        its ``last_error`` names the hold. Returns the requests moved."""
        moved = []
        by_hold: dict[str, list[str]] = {}
        for request_id, hold in matches.items():
            by_hold.setdefault(hold.hold_id, []).append(request_id)
        for hold_id, ids in sorted(by_hold.items()):
            rows = conn.execute(
                update(R)
                .where(R.c.id.in_(ids), R.c.status.in_([s.value for s in sources]))
                .values(
                    status=RequestStatus.ON_HOLD.value,
                    last_error=ON_HOLD_REASON.format(hold_id=hold_id),
                    lease_expires_at=None,
                    updated_at=now,
                )
                .returning(R.c.id)
            ).all()
            moved += [row.id for row in rows]
        return sorted(moved)

    def _release_unheld(self, conn: Connection, hashes_of: HashesOf | None, now: datetime) -> list[str]:
        """``on_hold`` requests that no active hold names go back to ``pending`` (recorded steps
        kept, so the next run resumes where they stopped); those still held name the hold that
        holds them now."""
        rows = conn.execute(select(R).where(R.c.status == RequestStatus.ON_HOLD.value)).all()
        if not rows:
            return []
        matches = _matching_holds(rows, self._active_holds(conn, now.date()), hashes_of)
        for row in rows:
            named = matches.get(row.id)
            if named is not None and _hold_id_of(row.last_error) != named.hold_id:
                conn.execute(
                    update(R)
                    .where(R.c.id == row.id)
                    .values(last_error=ON_HOLD_REASON.format(hold_id=named.hold_id), updated_at=now)
                )
        free = sorted(row.id for row in rows if row.id not in matches)
        if free:
            conn.execute(
                update(R)
                .where(R.c.id.in_(free), R.c.status == RequestStatus.ON_HOLD.value)
                .values(
                    status=RequestStatus.PENDING.value,
                    last_error=None,
                    claimed_by=None,
                    claimed_at=None,
                    claimed_map_index=None,
                    lease_expires_at=None,
                    not_before=None,
                    updated_at=now,
                )
            )
        return free

    # -- dialect helpers ---------------------------------------------------------------------

    def _insert_for(self):
        return postgresql.insert if self.dialect == "postgresql" else sqlite.insert

    def _upsert(
        self, conn: Connection, table, values: dict, keys: list[str], update: dict | None = None
    ) -> None:
        statement = self._insert_for()(table).values(**values)
        changes = update if update is not None else {k: v for k, v in values.items() if k not in keys}
        conn.execute(statement.on_conflict_do_update(index_elements=keys, set_=changes))


def _active_hold(today: date):
    """A hold is active until released, through its ``until`` day (UTC) if it has one."""
    return and_(HOLDS.c.released_at.is_(None), or_(HOLDS.c.until.is_(None), HOLDS.c.until >= today))


def _matching_holds(rows, holds: Sequence[LegalHold], hashes_of: HashesOf | None) -> dict[str, LegalHold]:
    """For each request row that one of ``holds`` names, the oldest such hold. A hold on a person
    names every request whose identifier of that type has that keyed hash; the hashes come from
    ``hashes_of``, which a hold on a person requires (matching without it would let them through)."""
    by_request = {h.target: h for h in reversed(holds) if h.target_type == "request"}
    on_people = {(h.target_type, h.target): h for h in reversed(holds) if h.target_type != "request"}
    if on_people and hashes_of is None:
        raise StoreError("a legal hold names a person: matching it needs the identifier hash key")
    found: dict[str, LegalHold] = {}
    for row in rows:
        named = [by_request[row.id]] if row.id in by_request else []
        if on_people:
            request = _row_to_request(row)
            hashes = hashes_of(request.identifiers) if request.identifiers is not None else {}
            named += [h for (kind, value), h in on_people.items() if hashes.get(kind) == value]
        if named:
            found[row.id] = min(named, key=lambda h: (h.placed_at, h.hold_id))
    return found


def _hold_id_of(reason: str | None) -> str | None:
    prefix = ON_HOLD_REASON.format(hold_id="")
    return reason[len(prefix) :] if reason and reason.startswith(prefix) else None


def ping(store: ComplianceStore) -> None:
    """Raise if the database cannot be reached."""
    with store.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
