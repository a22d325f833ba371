"""``db init`` migrates a schema-1 store (before ``not_before`` and ``deferred``) in place, on
both backends, keeping every request, step and audit record and every guard the database adds;
a schema-3 store (steps named purge_*, redact_stripe) to the one verb of schema 4, keeping
every audit record byte for byte; and a schema-4 store to schema 5, which records where each
step ran and when a request was claimed, leaving the rows and records already written as they are;
and a schema-5 store to schema 6 (legal holds: the ``on_hold`` status and ``legal_holds``), and a
schema-6 store to schema 7 (the ``completed_with_exemptions`` status, wider than schema 6's
``status`` column, and ledger keys long enough for review entries).

The version-1 and version-4 tables below are the DDL the package emitted at those schema versions
(SQLAlchemy's output for each dialect, copied), so the test does not depend on today's table
definitions.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, inspect, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from gdpr_erasure import steps as current_steps
from gdpr_erasure.cli import main as cli
from gdpr_erasure.identifiers import SubjectIdentifiers
from gdpr_erasure.store import ComplianceStore, RequestStatus, SchemaTooNew, StepStatus, TaskTry
from gdpr_erasure.store import schema as current
from gdpr_erasure.store.chain import GENESIS_HASH, canonical_json, chain_hash
from gdpr_erasure.store.engine import create_store_engine

S = RequestStatus
RECEIVED = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)

V1_TABLES = """
CREATE TABLE audit_log (
    seq {bigint} NOT NULL,
    request_id VARCHAR(64) NOT NULL,
    recorded_at {ts} NOT NULL,
    record TEXT NOT NULL,
    prev_hash VARCHAR(64) NOT NULL,
    record_hash VARCHAR(64) NOT NULL,
    PRIMARY KEY (seq),
    UNIQUE (request_id),
    UNIQUE (prev_hash),
    UNIQUE (record_hash)
);
CREATE TABLE erasure_requests (
    id VARCHAR(64) NOT NULL,
    email TEXT,
    phone VARCHAR(32),
    stripe_customer_id VARCHAR(255),
    user_id VARCHAR(255),
    identifiers_hash VARCHAR(64),
    source VARCHAR(32) NOT NULL,
    status VARCHAR(20) NOT NULL,
    attempts INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    claimed_by VARCHAR(250),
    lease_expires_at {ts},
    last_error TEXT,
    received_at {ts} NOT NULL,
    updated_at {ts} NOT NULL,
    completed_at {ts},
    pii_erased_at {ts},
    PRIMARY KEY (id),
    CONSTRAINT ck_erasure_requests_status CHECK (status IN ('pending', 'in_progress', 'verifying',
        'completed', 'failed', 'needs_attention')),
    CONSTRAINT ck_erasure_requests_counts CHECK (attempts >= 0 AND failures >= 0)
);
CREATE INDEX ix_erasure_requests_status_received ON erasure_requests (status, received_at);
CREATE TABLE store_meta (
    "key" VARCHAR(64) NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY ("key")
);
CREATE TABLE erasure_steps (
    request_id VARCHAR(64) NOT NULL,
    step VARCHAR(40) NOT NULL,
    status VARCHAR(20) NOT NULL,
    result TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    updated_at {ts} NOT NULL,
    PRIMARY KEY (request_id, step),
    CONSTRAINT ck_erasure_steps_status CHECK (status IN ('done', 'skipped', 'already_absent',
        'pending', 'failed')),
    FOREIGN KEY(request_id) REFERENCES erasure_requests (id)
);
INSERT INTO store_meta ("key", value) VALUES ('schema_version', '1')
"""

# The v1 requests: (id, status, attempts, failures, last_error).
V1_REQUESTS = [
    ("r-pending", "pending", 0, 0, None),
    ("r-failed", "failed", 1, 1, "redact_stripe: failed"),
    ("r-verifying", "verifying", 1, 0, None),
    ("r-attention", "needs_attention", 3, 3, "verify_segment: FAILED"),
    ("r-done-1", "completed", 1, 0, None),
    ("r-done-2", "completed", 2, 1, None),
]


def _create_v1_store(engine) -> None:
    """An empty schema-1 store, as ``db init`` of version 1 left it (tables, index, triggers)."""
    postgres = engine.dialect.name == "postgresql"
    ddl = V1_TABLES.format(
        ts="TIMESTAMP WITH TIME ZONE" if postgres else "DATETIME", bigint="BIGINT" if postgres else "INTEGER"
    )
    with engine.begin() as conn:
        for statement in filter(str.strip, ddl.split(";")):
            conn.exec_driver_sql(statement)
        for statement in current.POSTGRES_TRIGGERS if postgres else current.SQLITE_TRIGGERS:
            if "ledger_heads" not in statement:  # version 1 guarded only the audit log
                conn.exec_driver_sql(statement)


def _fill_v1_store(engine) -> None:
    """Requests in every v1 status, their steps and a two-record audit chain. Written with the
    tables' columns that existed in v1 only (no ``not_before``)."""
    requests, steps, audit = current.erasure_requests, current.erasure_steps, current.audit_log
    prev = GENESIS_HASH
    with engine.begin() as conn:
        for n, (rid, status, attempts, failures, last_error) in enumerate(V1_REQUESTS):
            conn.execute(
                insert(requests).values(
                    id=rid,
                    email=f"Person{n}@Example.com",
                    phone=f"+1415555{n:04d}",
                    source="test",
                    status=status,
                    attempts=attempts,
                    failures=failures,
                    last_error=last_error,
                    received_at=RECEIVED + timedelta(minutes=n),
                    updated_at=RECEIVED + timedelta(hours=1),
                    completed_at=RECEIVED + timedelta(hours=2) if status == "completed" else None,
                )
            )
            conn.execute(
                insert(steps).values(
                    request_id=rid,
                    step="resolve",
                    status="done",
                    result=canonical_json({"stripe_customer_ids": [f"cus_{n}"]}),
                    attempts=1,
                    updated_at=RECEIVED,
                )
            )
            if status == "completed":
                seq = int(rid[-1])
                record_json = canonical_json({"request_id": rid, "outcome": "completed"})
                recorded_at = RECEIVED + timedelta(hours=2, seconds=seq)
                record_hash = chain_hash(seq, prev, recorded_at, record_json)
                conn.execute(
                    insert(audit).values(
                        seq=seq,
                        request_id=rid,
                        recorded_at=recorded_at,
                        record=record_json,
                        prev_hash=prev,
                        record_hash=record_hash,
                    )
                )
                prev = record_hash


@pytest.fixture
def v1_store(store_url):
    engine = create_store_engine(store_url)
    _create_v1_store(engine)
    _fill_v1_store(engine)
    store = ComplianceStore(engine)
    yield store
    store.dispose()


def test_db_init_migrates_a_schema_1_store_in_place(v1_store):
    store = v1_store
    assert store.schema_version() == 1

    migrated = store.init_db()

    assert migrated, "init_db reported no migration"
    assert store.schema_version() == current.SCHEMA_VERSION == 7
    # Every row is kept, field by field; a failure's reason names the step as schema 4 does.
    got = {r.id: r for r in store.list_requests()}
    assert {rid: (r.status.value, r.attempts, r.failures, r.last_error) for rid, r in got.items()} == {
        rid: (status, attempts, failures, error and error.replace("redact_stripe", "erase_stripe"))
        for rid, status, attempts, failures, error in V1_REQUESTS
    }
    assert got["r-failed"].received_at == RECEIVED + timedelta(minutes=1)
    assert got["r-failed"].identifiers.email_as_given == "Person1@Example.com"
    assert got["r-done-2"].completed_at == RECEIVED + timedelta(hours=2)
    assert all(r.not_before is None for r in got.values())
    assert store.steps("r-failed")["resolve"].result == {"stripe_customer_ids": ["cus_1"]}
    report = store.verify_audit_chain()
    assert (report.ok, report.checked) == (True, 2)

    # The migrated tables are the current ones: same columns in the same order, and the index.
    inspector = inspect(store.engine)
    for table in (current.erasure_requests, current.erasure_steps):
        assert [c["name"] for c in inspector.get_columns(table.name)] == list(table.c.keys())
    assert "ix_erasure_requests_status_received" in {
        i["name"] for i in inspector.get_indexes("erasure_requests")
    }


def test_a_migrated_store_defers_and_claims_by_not_before(v1_store):
    store = v1_store
    store.init_db()
    assert sorted(store.claim(10, "run-1")) == ["r-failed", "r-pending", "r-verifying"]
    due = datetime.now(UTC) + timedelta(days=20)
    deferred = store.defer("r-pending", due, "erase_segment: quota spent")
    assert (deferred.status, deferred.not_before) == (S.DEFERRED, due)
    assert store.claim(10, "run-2") == []  # the new CHECK accepted `deferred`; not due yet
    with store.engine.begin() as conn:
        conn.execute(
            update(current.erasure_requests)
            .where(current.erasure_requests.c.id == "r-pending")
            .values(not_before=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert store.claim(10, "run-3") == ["r-pending"]


def test_a_migrated_store_keeps_the_database_guards(v1_store):
    store = v1_store
    store.init_db()
    requests = current.erasure_requests
    # The status CHECK still refuses unknown values.
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(update(requests).where(requests.c.id == "r-pending").values(status="deleted"))
    # Steps still need their request (the foreign key survived the SQLite rebuild).
    with pytest.raises(IntegrityError):
        store.record_step("no-such-request", "resolve", StepStatus.DONE, {})
    # The ledger is still append-only.
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log"))
    # And new requests go through the whole life as before.
    store.submit("r-new", SubjectIdentifiers.parse(stripe_customer_id="cus_abcdef9"))
    assert store.claim(1, "run", request_ids=["r-new"]) == ["r-new"]
    assert store.transition("r-new", S.COMPLETED).status is S.COMPLETED


def test_db_init_twice_migrates_once(v1_store):
    assert v1_store.init_db()
    assert v1_store.init_db() == []
    assert v1_store.schema_version() == current.SCHEMA_VERSION
    assert len(v1_store.list_requests()) == len(V1_REQUESTS)


def test_db_init_through_the_command_line_migrates(v1_store, store_url, capsys):
    assert cli(["db", "--db-url", store_url, "init"]) == 0
    assert f"schema version {current.SCHEMA_VERSION}" in capsys.readouterr().out
    assert v1_store.schema_version() == current.SCHEMA_VERSION


def test_a_store_newer_than_the_package_is_refused(store):
    with store.engine.begin() as conn:
        conn.execute(update(current.store_meta).values(value="99"))
    with pytest.raises(SchemaTooNew, match="99"):
        store.init_db()
    assert store.schema_version() == 99


def test_a_migrated_store_accepts_every_status_of_this_version(v1_store):
    store = v1_store
    store.init_db()
    requests = current.erasure_requests
    for status in RequestStatus:
        with store.engine.begin() as conn:
            conn.execute(update(requests).where(requests.c.id == "r-pending").values(status=status.value))
        assert store.get("r-pending").status is status


def test_migrating_leaves_the_table_definition_alone(v1_store, tmp_path):
    """A migration in this process must not change what a new store gets (the CHECK included)."""
    v1_store.init_db()
    fresh = ComplianceStore(create_store_engine(f"sqlite:///{tmp_path / 'fresh.db'}"))
    fresh.init_db()
    fresh.submit("r-1", SubjectIdentifiers.parse(stripe_customer_id="cus_abcdef9"))
    requests = current.erasure_requests
    with pytest.raises(IntegrityError), fresh.engine.begin() as conn:
        conn.execute(update(requests).values(status="deleted"))
    fresh.dispose()


# -- version 3 to 4: the erasure steps named with one verb -------------------------------------------

#: What a schema-3 run stored, per step: the names before the one verb (old -> new).
V3_NAMES = {
    "purge_twilio_profile": current_steps.TWILIO_PROFILE,
    "purge_twilio_history": current_steps.TWILIO_HISTORY,
    "redact_stripe": current_steps.STRIPE,
}
#: Step names schema 4 kept: written as they were, never touched.
KEPT = ["resolve", "erase_segment", "verify_twilio_profile", "verify_segment", "verify_stripe"]


@pytest.fixture
def v3_store(store_url):
    """A schema-3 store: today's tables (4 changed no DDL; 5's columns, there already, are left
    alone by its migration), its version 3, and what runs of that version wrote: steps under the
    old names, a failure naming one, two audit records."""
    store = ComplianceStore(create_store_engine(store_url))
    store.init_db()
    steps, audit = current.erasure_steps, current.audit_log
    prev = GENESIS_HASH
    with store.engine.begin() as conn:
        conn.execute(update(current.store_meta).values(value="3"))
        for n, rid in enumerate(["r-done-1", "r-done-2", "r-failed"], start=1):
            store_submit(conn, rid, n, "failed" if rid == "r-failed" else "completed")
            for m, name in enumerate([*V3_NAMES, *KEPT]):
                conn.execute(
                    insert(steps).values(
                        request_id=rid,
                        step=name,
                        status="failed" if (rid, name) == ("r-failed", "redact_stripe") else "done",
                        result=canonical_json({"step": name, "n": n, "redaction_job_id": None}),
                        attempts=m + 1,
                        updated_at=RECEIVED + timedelta(minutes=m),
                    )
                )
            if rid != "r-failed":
                # A record as schema 3 wrote it (its fields name no step); never rewritten.
                record_json = canonical_json(
                    {"request_id": rid, "outcome": "completed", "stripe": {"purge": "done"}}
                )
                recorded_at = RECEIVED + timedelta(hours=2, seconds=n)
                record_hash = chain_hash(n, prev, recorded_at, record_json)
                conn.execute(
                    insert(audit).values(
                        seq=n,
                        request_id=rid,
                        recorded_at=recorded_at,
                        record=record_json,
                        prev_hash=prev,
                        record_hash=record_hash,
                    )
                )
                prev = record_hash
    yield store
    store.dispose()


def first_record(conn, audit, request_id: str, recorded_at, **record) -> None:
    """The ledger's first record, chained as append_audit chains it, into an older schema's table."""
    record_json = canonical_json({"request_id": request_id, **record})
    conn.execute(
        insert(audit).values(
            seq=1,
            request_id=request_id,
            recorded_at=recorded_at,
            record=record_json,
            prev_hash=GENESIS_HASH,
            record_hash=chain_hash(1, GENESIS_HASH, recorded_at, record_json),
        )
    )


def store_submit(conn, rid: str, n: int, status: str) -> None:
    conn.execute(
        insert(current.erasure_requests).values(
            id=rid,
            email=f"person{n}@example.com",
            source="test",
            status=status,
            attempts=1,
            failures=int(status == "failed"),
            last_error="redact_stripe: failed; verify_segment: FAILED" if status == "failed" else None,
            received_at=RECEIVED,
            updated_at=RECEIVED + timedelta(hours=1),
        )
    )


def _rows(store) -> dict[tuple[str, str], tuple]:
    steps = current.erasure_steps
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(steps.c.request_id, steps.c.step, steps.c.status, steps.c.result, steps.c.attempts)
        ).all()
    return {(r.request_id, r.step): (r.status, r.result, r.attempts) for r in rows}


def test_db_init_renames_the_steps_of_a_schema_3_store(v3_store):
    store = v3_store
    before_rows = _rows(store)
    before_audit = store.audit_entries()

    migrated = store.init_db()

    assert store.schema_version() == current.SCHEMA_VERSION
    assert len(migrated) == len(V3_NAMES), migrated  # schema 5's columns were there already
    after_rows = _rows(store)
    # Each row renamed, its status, result and tries unchanged; the other steps untouched.
    rename = {**V3_NAMES, **{name: name for name in KEPT}}
    assert after_rows == {(rid, rename[name]): row for (rid, name), row in before_rows.items()}
    assert not {name for _, name in after_rows} & set(V3_NAMES)
    # What the pipeline reads, under the names it uses now.
    read = store.steps("r-failed")
    assert read[current_steps.STRIPE].status is StepStatus.FAILED
    assert read[current_steps.TWILIO_HISTORY].result["step"] == "purge_twilio_history"  # results as written
    assert store.get("r-failed").last_error == "erase_stripe: failed; verify_segment: FAILED"
    # The ledger: the same records, byte for byte, and the chain still verifies.
    assert store.audit_entries() == before_audit
    report = store.verify_audit_chain()
    assert (report.ok, report.checked) == (True, 2)


def test_the_step_rename_runs_once(v3_store):
    assert v3_store.init_db()
    rows = _rows(v3_store)
    assert v3_store.init_db() == []
    assert _rows(v3_store) == rows


def test_a_request_already_holding_the_new_name_keeps_it(v3_store):
    """Only a run of the new version before ``db init`` (the preflight refuses that) could write
    both names; the new row wins, and the old one is left for ops rather than dropped."""
    v3_store.record_step("r-done-1", current_steps.STRIPE, StepStatus.DONE, {"written": "new"})
    v3_store.init_db()
    rows = _rows(v3_store)
    assert rows[("r-done-1", current_steps.STRIPE)][1] == canonical_json({"written": "new"})
    assert ("r-done-1", "redact_stripe") in rows
    assert ("r-done-2", "redact_stripe") not in rows


# -- version 4 to 5: where each step ran, when a request was claimed ---------------------------------

V4_TABLES = """
CREATE TABLE audit_log (
    seq {bigint} NOT NULL,
    request_id VARCHAR(64) NOT NULL,
    recorded_at {ts} NOT NULL,
    record TEXT NOT NULL,
    prev_hash VARCHAR(64) NOT NULL,
    record_hash VARCHAR(64) NOT NULL,
    PRIMARY KEY (seq),
    UNIQUE (request_id),
    UNIQUE (prev_hash),
    UNIQUE (record_hash)
);
CREATE TABLE erasure_requests (
    id VARCHAR(64) NOT NULL,
    email TEXT,
    phone VARCHAR(32),
    stripe_customer_id VARCHAR(255),
    user_id VARCHAR(255),
    identifiers_hash VARCHAR(64),
    source VARCHAR(32) NOT NULL,
    status VARCHAR(20) NOT NULL,
    attempts INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    claimed_by VARCHAR(250),
    lease_expires_at {ts},
    last_error TEXT,
    received_at {ts} NOT NULL,
    updated_at {ts} NOT NULL,
    completed_at {ts},
    pii_erased_at {ts},
    not_before {ts},
    PRIMARY KEY (id),
    CONSTRAINT ck_erasure_requests_status CHECK (status IN ('pending', 'in_progress', 'verifying',
        'completed', 'failed', 'needs_attention', 'deferred')),
    CONSTRAINT ck_erasure_requests_counts CHECK (attempts >= 0 AND failures >= 0)
);
CREATE INDEX ix_erasure_requests_status_received ON erasure_requests (status, received_at);
CREATE TABLE store_meta (
    "key" VARCHAR(64) NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY ("key")
);
CREATE TABLE erasure_steps (
    request_id VARCHAR(64) NOT NULL,
    step VARCHAR(40) NOT NULL,
    status VARCHAR(20) NOT NULL,
    result TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    updated_at {ts} NOT NULL,
    PRIMARY KEY (request_id, step),
    CONSTRAINT ck_erasure_steps_status CHECK (status IN ('done', 'skipped', 'already_absent',
        'pending', 'failed')),
    FOREIGN KEY(request_id) REFERENCES erasure_requests (id)
);
CREATE TABLE ledger_heads (
    tree_size {bigint} NOT NULL,
    root_hash VARCHAR(64) NOT NULL,
    signed_at {ts} NOT NULL,
    key_id VARCHAR(64) NOT NULL,
    head TEXT NOT NULL,
    peaks TEXT NOT NULL,
    PRIMARY KEY (tree_size)
);
INSERT INTO store_meta ("key", value) VALUES ('schema_version', '4')
"""

V4_RUN = "scheduled__2026-03-01T00:00:00+00:00"


@pytest.fixture
def v4_store(store_url):
    """A schema-4 store as ``db init`` of version 4 left it, and what a run of that version wrote:
    a completed request with its steps and audit record, and one still in progress."""
    engine = create_store_engine(store_url)
    postgres = engine.dialect.name == "postgresql"
    ddl = V4_TABLES.format(
        ts="TIMESTAMP WITH TIME ZONE" if postgres else "DATETIME", bigint="BIGINT" if postgres else "INTEGER"
    )
    requests, steps, audit = current.erasure_requests, current.erasure_steps, current.audit_log
    with engine.begin() as conn:
        for statement in filter(str.strip, ddl.split(";")):
            conn.exec_driver_sql(statement)
        for statement in current.POSTGRES_TRIGGERS if postgres else current.SQLITE_TRIGGERS:
            conn.exec_driver_sql(statement)
        for n, rid in enumerate(["r-done", "r-open"], start=1):
            store_submit(conn, rid, n, "completed" if rid == "r-done" else "in_progress")
            conn.execute(
                update(requests).where(requests.c.id == rid).values(claimed_by=f"gdpr_erasure/{V4_RUN}")
            )
            for m, name in enumerate(["resolve", "erase_stripe", "verify_stripe"]):
                conn.execute(
                    insert(steps).values(
                        request_id=rid,
                        step=name,
                        status="done",
                        result=canonical_json({"step": name, "n": n}),
                        attempts=m + 1,
                        updated_at=RECEIVED + timedelta(minutes=m),
                    )
                )
        first_record(conn, audit, "r-done", RECEIVED + timedelta(hours=2), outcome="completed", run_id=V4_RUN)
    store = ComplianceStore(engine)
    yield store
    store.dispose()


def test_db_init_adds_where_steps_ran_to_a_schema_4_store(v4_store):
    store = v4_store
    before_rows = _rows(store)
    before_audit = store.audit_entries()

    migrated = store.init_db()

    assert store.schema_version() == current.SCHEMA_VERSION == 7
    assert migrated[:7] == [
        *(f"erasure_steps.{c} added" for c in ("dag_id", "task_id", "run_id", "map_index", "try_number")),
        "erasure_requests.claimed_at added",
        "erasure_requests.claimed_map_index added",
    ]
    # Schemas 6 and 7, below.
    assert migrated[-1] == "ck_erasure_requests_status accepts on_hold, completed_with_exemptions"
    # The tables are the current ones, columns in the same order.
    inspector = inspect(store.engine)
    for table in (current.erasure_requests, current.erasure_steps):
        assert [c["name"] for c in inspector.get_columns(table.name)] == list(table.c.keys())
    # Rows written before keep what they hold; where they ran and when they were claimed is unknown.
    assert _rows(store) == before_rows
    assert {step.ran_in for rid in ("r-done", "r-open") for step in store.steps(rid).values()} == {None}
    opened = store.get("r-open")
    assert (opened.claimed_by, opened.claimed_at, opened.claimed_map_index) == (
        f"gdpr_erasure/{V4_RUN}",
        None,
        None,
    )
    # The ledger: the same record, byte for byte, and the chain still verifies.
    assert store.audit_entries() == before_audit
    assert store.audit_entries()[0].record_json == before_audit[0].record_json
    report = store.verify_audit_chain()
    assert (report.ok, report.checked) == (True, 1)
    # New writes record where they ran, next to the old rows.
    ran_in = TaskTry("gdpr_erasure", "erase_batch.verify_segment", "manual__1", 0, 2)
    store.record_step("r-open", "verify_segment", StepStatus.PENDING, {"status": "RUNNING"}, ran_in=ran_in)
    assert store.steps("r-open")["verify_segment"].ran_in == ran_in
    assert store.steps("r-open")["resolve"].ran_in is None
    store.submit("r-new", SubjectIdentifiers.parse(stripe_customer_id="cus_abcdef9"))
    assert store.claim(1, "gdpr_erasure/manual__1", request_ids=["r-new"], batch_size=50) == ["r-new"]
    claimed = store.get("r-new")
    assert claimed.claimed_at is not None and claimed.claimed_map_index == 0


def test_the_schema_5_columns_are_added_once(v4_store):
    assert v4_store.init_db()
    assert v4_store.init_db() == []
    assert v4_store.schema_version() == current.SCHEMA_VERSION


# -- version 5 to 6: legal holds (the on_hold status, the legal_holds table) ------------------------

#: Schema 5's DDL: version 4's plus the columns schema 5 added at the end of two tables.
V5_TABLES = (
    V4_TABLES.replace(
        "    not_before {ts},\n",
        "    not_before {ts},\n    claimed_at {ts},\n    claimed_map_index INTEGER,\n",
    )
    .replace(
        "    updated_at {ts} NOT NULL,\n    PRIMARY KEY (request_id, step),",
        "    updated_at {ts} NOT NULL,\n    dag_id VARCHAR(250),\n    task_id VARCHAR(250),\n"
        "    run_id VARCHAR(250),\n    map_index INTEGER,\n    try_number INTEGER,\n"
        "    PRIMARY KEY (request_id, step),",
    )
    .replace("VALUES ('schema_version', '4')", "VALUES ('schema_version', '5')")
)

#: What a run of version 5 left: a request in every status of schema 5.
V5_STATUSES = ["pending", "in_progress", "verifying", "completed", "failed", "needs_attention", "deferred"]


@pytest.fixture
def v5_store(store_url):
    engine = create_store_engine(store_url)
    postgres = engine.dialect.name == "postgresql"
    ddl = V5_TABLES.format(
        ts="TIMESTAMP WITH TIME ZONE" if postgres else "DATETIME", bigint="BIGINT" if postgres else "INTEGER"
    )
    requests, steps, audit = current.erasure_requests, current.erasure_steps, current.audit_log
    with engine.begin() as conn:
        for statement in filter(str.strip, ddl.split(";")):
            conn.exec_driver_sql(statement)
        for statement in current.POSTGRES_TRIGGERS if postgres else current.SQLITE_TRIGGERS:
            conn.exec_driver_sql(statement)
        for n, status in enumerate(V5_STATUSES, start=1):
            store_submit(conn, f"r-{status}", n, status)
            conn.execute(
                update(requests)
                .where(requests.c.id == f"r-{status}")
                .values(claimed_at=RECEIVED, claimed_map_index=0, not_before=None)
            )
            conn.execute(
                insert(steps).values(
                    request_id=f"r-{status}",
                    step="resolve",
                    status="done",
                    result=canonical_json({"n": n}),
                    attempts=1,
                    updated_at=RECEIVED,
                    task_id="erase_batch.resolve_identity",
                    try_number=1,
                )
            )
        first_record(conn, audit, "r-completed", RECEIVED, outcome="completed")
    store = ComplianceStore(engine)
    yield store
    store.dispose()


def _request_rows(store) -> dict[str, tuple]:
    with store.engine.connect() as conn:
        return {row.id: tuple(row) for row in conn.execute(select(current.erasure_requests))}


def test_db_init_adds_legal_holds_to_a_schema_5_store(v5_store):
    store = v5_store
    before_requests, before_steps, before_audit = _request_rows(store), _rows(store), store.audit_entries()
    with pytest.raises(IntegrityError), store.engine.begin() as conn:  # schema 5 has no on_hold
        conn.execute(
            update(current.erasure_requests)
            .where(current.erasure_requests.c.id == "r-pending")
            .values(status="on_hold")
        )

    migrated = store.init_db()

    assert store.schema_version() == current.SCHEMA_VERSION == 7
    assert migrated[-1] == "ck_erasure_requests_status accepts on_hold, completed_with_exemptions"
    if store.dialect == "sqlite":
        assert migrated == ["erasure_requests rebuilt (no column(s) added)", migrated[-1]]
    else:
        assert migrated == [*WIDENED_V7, migrated[-1]]
    # Every request, step and record as it was; the ledger byte for byte.
    assert _request_rows(store) == before_requests
    assert _rows(store) == before_steps
    assert store.audit_entries() == before_audit
    assert store.verify_audit_chain().ok
    inspector = inspect(store.engine)
    assert [c["name"] for c in inspector.get_columns("legal_holds")] == list(current.legal_holds.c.keys())
    assert [c["name"] for c in inspector.get_columns("erasure_requests")] == list(
        current.erasure_requests.c.keys()
    )
    # The new status is accepted, unknown ones still refused, steps still need their request.
    assert store.transition("r-pending", S.ON_HOLD).status is S.ON_HOLD
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(update(current.erasure_requests).values(status="deleted"))
    with pytest.raises(IntegrityError):
        store.record_step("no-such-request", "resolve", StepStatus.DONE, {})
    # The ledger is still append-only.
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log"))


def test_the_schema_6_migration_runs_once(v5_store):
    assert v5_store.init_db()
    assert v5_store.init_db() == []
    assert v5_store.schema_version() == current.SCHEMA_VERSION


# -- version 6 to 7: completed_with_exemptions, review entries in the ledger ----------------------

#: What schema 7 reports on PostgreSQL before the CHECK (SQLite does not enforce the lengths).
WIDENED_V7 = [
    "erasure_requests.status widened to 32 characters",
    "audit_log.request_id widened to 100 characters",
]

#: Schema 6's DDL: version 5's with on_hold in the status CHECK (legal_holds is the current table).
V6_TABLES = V5_TABLES.replace("'deferred')),", "'deferred', 'on_hold')),").replace(
    "VALUES ('schema_version', '5')", "VALUES ('schema_version', '6')"
)


@pytest.fixture
def v6_store(store_url):
    engine = create_store_engine(store_url)
    postgres = engine.dialect.name == "postgresql"
    ddl = V6_TABLES.format(
        ts="TIMESTAMP WITH TIME ZONE" if postgres else "DATETIME", bigint="BIGINT" if postgres else "INTEGER"
    )
    assert "'on_hold'" in ddl
    with engine.begin() as conn:
        for statement in filter(str.strip, ddl.split(";")):
            conn.exec_driver_sql(statement)
        current.legal_holds.create(conn)
        for statement in current.POSTGRES_TRIGGERS if postgres else current.SQLITE_TRIGGERS:
            conn.exec_driver_sql(statement)
        for n, status in enumerate([*V5_STATUSES, "on_hold"], start=1):
            store_submit(conn, f"r-{status}", n, status)
        first_record(conn, current.audit_log, "r-completed", RECEIVED, outcome="completed")
    store = ComplianceStore(engine)
    yield store
    store.dispose()


def test_db_init_takes_a_schema_6_store_to_completed_with_exemptions(v6_store):
    store = v6_store
    before_requests, before_audit = _request_rows(store), store.audit_entries()
    with pytest.raises((IntegrityError, DBAPIError)), store.engine.begin() as conn:  # not in schema 6
        conn.execute(
            update(current.erasure_requests)
            .where(current.erasure_requests.c.id == "r-pending")
            .values(status="completed_with_exemptions")
        )

    migrated = store.init_db()

    assert store.schema_version() == current.SCHEMA_VERSION == 7
    accepted = "ck_erasure_requests_status accepts completed_with_exemptions"
    if store.dialect == "sqlite":
        assert migrated == ["erasure_requests rebuilt (no column(s) added)", accepted]
    else:
        assert migrated == [*WIDENED_V7, accepted]
        widths = {
            (table, c["name"]): getattr(c["type"], "length", None)
            for table in ("erasure_requests", "audit_log")
            for c in inspect(store.engine).get_columns(table)
        }
        assert widths[("erasure_requests", "status")] == 32
        assert widths[("audit_log", "request_id")] == 100
    assert _request_rows(store) == before_requests
    assert store.audit_entries() == before_audit and store.verify_audit_chain().ok
    # The new status is taken; a review entry's key fits; the ledger is still append-only.
    store.transition("r-in_progress", S.COMPLETED_WITH_EXEMPTIONS)
    assert store.get("r-in_progress").status is S.COMPLETED_WITH_EXEMPTIONS
    store.append_audit("r-completed/review/" + "9" * 40, {"kind": "review", "request_id": "r-completed"})
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log"))
    assert store.init_db() == []
