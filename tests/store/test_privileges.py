"""Least privilege on PostgreSQL: an owner role creates the store and grants the pipeline's role
exactly what the pipeline runs (``gdpr-erasure db grant``). As that role the pipeline works, and
the ledger cannot be rewritten, truncated or unguarded: no UPDATE, DELETE or TRUNCATE, no
DISABLE/DROP/CREATE TRIGGER, no ALTER or DROP TABLE, no ``db init`` that would recreate the
triggers. On SQLite there is no role to grant to."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import BigInteger, Integer, create_engine, insert, text, update
from sqlalchemy.engine import make_url
from store_backends import PG_URL

from gdpr_erasure.cli import main
from gdpr_erasure.identifiers import SubjectIdentifiers
from gdpr_erasure.store import ComplianceStore, RequestStatus, StepStatus, TaskTry, schema
from gdpr_erasure.store.engine import create_store_engine
from gdpr_erasure.store.migrations import COLUMNS_V5
from gdpr_erasure.store.privileges import (
    PIPELINE_PRIVILEGES,
    PrivilegeError,
    effective_privileges,
    expected_privileges,
    grant_pipeline_privileges,
)
from gdpr_erasure.store.types import UtcDateTime, utcnow


def postgres(test):
    """On PostgreSQL only: SQLite has no roles (``test_sqlite_has_no_roles``)."""
    test = pytest.mark.postgres(test)
    return pytest.mark.skipif(not PG_URL, reason="GDPR_TEST_PG_URL not set (CI sets it)")(test)


@dataclass
class Setup:
    owner: str
    app: str
    schema: str
    owner_url: str
    app_url: str
    owner_store: ComplianceStore
    app_store: ComplianceStore

    def app_engine(self):
        return self.app_store.engine


def _url_as(role: str, store_schema: str) -> str:
    url = make_url(PG_URL).set(username=role, password=None)
    url = url.update_query_dict({"options": f"-csearch_path={store_schema}"})
    return url.render_as_string(hide_password=False)


@pytest.fixture
def setup():
    """Two fresh roles (unique names, dropped afterwards) and a schema the owner owns, holding a
    store it created and granted to the pipeline's role."""
    suffix = uuid.uuid4().hex[:10]
    owner, app, store_schema = f"gdpr_owner_{suffix}", f"gdpr_app_{suffix}", f"gdpr_priv_{suffix}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE ROLE "{owner}" LOGIN'))
        conn.execute(text(f'CREATE ROLE "{app}" LOGIN'))
        conn.execute(text(f'CREATE SCHEMA "{store_schema}" AUTHORIZATION "{owner}"'))
    stores = []
    try:
        owner_url, app_url = _url_as(owner, store_schema), _url_as(app, store_schema)
        owner_store = ComplianceStore(create_store_engine(owner_url))
        stores.append(owner_store)
        owner_store.init_db()
        grant_pipeline_privileges(owner_store.engine, app)
        app_store = ComplianceStore(create_store_engine(app_url))
        stores.append(app_store)
        yield Setup(owner, app, store_schema, owner_url, app_url, owner_store, app_store)
    finally:
        for store in stores:
            store.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{store_schema}" CASCADE'))
            conn.execute(text(f'DROP OWNED BY "{owner}", "{app}"'))
            conn.execute(text(f'DROP ROLE "{app}"'))
            conn.execute(text(f'DROP ROLE "{owner}"'))
        admin.dispose()


def _ids(n: int = 1) -> SubjectIdentifiers:
    return SubjectIdentifiers(email=f"person{n}@example.com", phone="+15550100", user_id=f"u{n}")


def _head_values() -> dict:
    """A ledger_heads row, whatever columns the schema has grown."""
    values = {}
    for column in schema.ledger_heads.c:
        if isinstance(column.type, BigInteger | Integer):
            values[column.name] = 1
        elif isinstance(column.type, UtcDateTime):
            values[column.name] = utcnow()
        else:
            values[column.name] = "[]" if column.name == "peaks" else "0" * 64
    return values


# The store's own triggers (other tests' schemas come and go in the same database).
TRIGGERS = text(
    """SELECT t.oid, t.tgname, t.tgenabled FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
       WHERE NOT t.tgisinternal AND c.relnamespace = CAST(current_schema() AS regnamespace)
       ORDER BY t.tgname"""
)


def _run_the_pipeline(store: ComplianceStore) -> None:
    """Every statement a run and the intake send, as in production."""
    assert store.submit("r1", _ids(1)).created
    assert not store.submit("r1", _ids(1)).created  # the same id again: ON CONFLICT DO NOTHING
    store.submit("r2", _ids(2))
    store.submit("r3", _ids(3))
    assert store.claim(3, "gdpr_erasure/run-1", batch_size=2) == ["r1", "r2", "r3"]  # and each batch
    ran_in = TaskTry("gdpr_erasure", "erase_batch.resolve_identity", "run-1", 0, 1)
    store.record_step("r1", "resolve", StepStatus.DONE, {"stripe": 1}, ran_in=ran_in)
    store.record_step("r1", "resolve", StepStatus.DONE, {"stripe": 1})  # the upsert's UPDATE
    store.transition("r1", RequestStatus.VERIFYING)
    store.transition("r1", RequestStatus.COMPLETED)
    store.append_audit("r1", {"outcome": "completed", "request_id": "r1"})
    assert store.erase_identifiers("r1", "ab" * 32)
    store.defer("r2", utcnow() + timedelta(days=1), "segment quota")
    store.requeue("r2")
    store.record_failure("r3", "stripe 500", max_failures=1)
    store.erase_identifiers("r3", "cd" * 32, unresolved_reason="kept past its limit")
    with store.engine.begin() as conn:
        conn.execute(insert(schema.ledger_heads).values(**_head_values()))
    assert store.get("r1").identifiers is None
    assert store.steps("r1")["resolve"].attempts == 2
    assert store.steps("r1")["resolve"].ran_in == ran_in
    assert store.get("r3").claimed_map_index == 1 and store.get("r1").claimed_at is not None
    assert store.verify_audit_chain().ok
    assert store.schema_version() == schema.SCHEMA_VERSION
    assert store.counts_by_status() == {"completed": 1, "pending": 1, "needs_attention": 1}


@postgres
def test_the_pipeline_runs_as_its_role(setup):
    _run_the_pipeline(setup.app_store)
    with setup.app_engine().connect() as conn:
        owner = conn.execute(
            text("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = current_schema()")
        ).scalars()
        assert list(owner) == [setup.owner]  # the pipeline's role owns nothing
        assert effective_privileges(conn, setup.app, setup.schema) == expected_privileges()


# (statement, what PostgreSQL answers). Every one is SQLSTATE 42501, insufficient_privilege.
REFUSED = [
    *(
        statement
        for table in schema.APPEND_ONLY_TABLES
        for statement in (
            (f"DELETE FROM {table}", f"permission denied for table {table}"),
            (f"TRUNCATE {table}", f"permission denied for table {table}"),
            (f"ALTER TABLE {table} DISABLE TRIGGER USER", f"must be owner of table {table}"),
            (f"ALTER TABLE {table} DISABLE TRIGGER ALL", f"must be owner of table {table}"),
            (
                f"ALTER TABLE {table} DISABLE TRIGGER {table}_no_update_delete",
                f"must be owner of table {table}",
            ),
            (f"DROP TRIGGER {table}_no_update_delete ON {table}", f"must be owner of relation {table}"),
            (f"DROP TRIGGER {table}_no_truncate ON {table}", f"must be owner of relation {table}"),
            (f"ALTER TABLE {table} ADD COLUMN note text", f"must be owner of table {table}"),
            (f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey", f"must be owner of table {table}"),
            (f"ALTER TABLE {table} RENAME TO {table}_old", f"must be owner of table {table}"),
            (
                f"CREATE TRIGGER sneaky BEFORE INSERT ON {table} FOR EACH ROW "
                "EXECUTE FUNCTION gdpr_audit_log_append_only()",
                f"permission denied for table {table}",
            ),
            (f"DROP TABLE {table}", f"must be owner of table {table}"),
        )
    ),
    ("UPDATE audit_log SET record = '{}'", "permission denied for table audit_log"),
    ("UPDATE ledger_heads SET head = '{}'", "permission denied for table ledger_heads"),
    # The other way to silence triggers: replica mode is for superusers.
    ("SET session_replication_role = replica", "permission denied to set parameter"),
    (
        "CREATE OR REPLACE FUNCTION gdpr_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql "
        "AS $$ BEGIN RETURN NEW; END $$",
        "permission denied for schema",  # and, with CREATE, "must be owner of function"
    ),
    ("CREATE TABLE audit_log_copy (seq bigint)", "permission denied for schema"),
    ("DELETE FROM erasure_requests", "permission denied for table erasure_requests"),
    ("DELETE FROM erasure_steps", "permission denied for table erasure_steps"),
    ("TRUNCATE erasure_requests CASCADE", "permission denied for table erasure_requests"),
    ("DROP TABLE erasure_requests CASCADE", "must be owner of table erasure_requests"),
    (
        "ALTER TABLE erasure_requests DROP CONSTRAINT ck_erasure_requests_status",
        "must be owner of table erasure_requests",
    ),
    ("UPDATE store_meta SET value = '99'", "permission denied for table store_meta"),
    ("INSERT INTO store_meta VALUES ('x', 'y')", "permission denied for table store_meta"),
    ("GRANT SELECT ON audit_log TO PUBLIC", "no privileges were granted"),
]


@postgres
def test_after_the_schema_5_migration_the_role_holds_exactly_its_privileges(setup):
    """Schema 5 added columns to two tables the role writes. Its privileges are per table, so they
    cover the new columns: the owner's ``db init`` migrates, nobody grants again, and the role
    works with neither more nor less than before."""
    with setup.owner_store.engine.begin() as conn:  # back to the tables of schema 4
        for table, columns in COLUMNS_V5.items():
            for column in columns:
                conn.exec_driver_sql(f"ALTER TABLE {table} DROP COLUMN {column}")
        conn.execute(update(schema.store_meta).values(value="4"))
    assert len(setup.owner_store.init_db()) == sum(len(c) for c in COLUMNS_V5.values())
    _run_the_pipeline(setup.app_store)
    with setup.app_engine().connect() as conn:
        assert effective_privileges(conn, setup.app, setup.schema) == expected_privileges()


@postgres
def test_the_pipelines_role_cannot_touch_the_ledger_or_its_guards(setup):
    _run_the_pipeline(setup.app_store)  # rows in every table: row triggers have something to fire on
    before = setup.owner_store.audit_entries()
    with setup.owner_store.engine.connect() as conn:
        triggers = conn.execute(TRIGGERS).all()
    refused = {}
    for statement, _ in REFUSED:
        raw = setup.app_engine().raw_connection()
        try:
            raw.driver_connection.notices.clear()
            cursor = raw.cursor()
            try:
                cursor.execute(statement)
                notices = " ".join(raw.driver_connection.notices)
                refused[statement] = notices or "ACCEPTED"
            except Exception as exc:  # the driver's error: its SQLSTATE and message
                refused[statement] = f"{getattr(exc, 'pgcode', '')} {exc}"
            raw.rollback()
        finally:
            raw.close()
    unexpected = {
        statement: outcome
        for (statement, answer) in REFUSED
        if answer not in (outcome := refused[statement])
        or ("42501" not in outcome and "no privileges were granted" not in outcome)
    }
    assert unexpected == {}
    # Nothing changed: the same records, the same triggers, all enabled.
    assert setup.owner_store.audit_entries() == before
    assert setup.owner_store.verify_audit_chain().ok
    with setup.owner_store.engine.connect() as conn:
        assert conn.execute(TRIGGERS).all() == triggers  # same oids: none dropped and recreated
        assert {t.tgenabled for t in triggers} == {"O"}
        assert len(triggers) >= 2 * len(schema.APPEND_ONLY_TABLES)


@postgres
def test_db_init_as_the_pipelines_role_fails_and_changes_nothing(setup, capsys):
    """It must not recreate (drop and create) the triggers: it is refused at the first DDL, in
    one transaction, with one line that says which role to use."""
    with setup.owner_store.engine.connect() as conn:
        triggers = conn.execute(TRIGGERS).all()
    assert main(["db", "--db-url", setup.app_url, "init"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"db init: permission denied as {setup.app}" in err
    assert f"permission denied for schema {setup.schema}" in err  # CREATE OR REPLACE FUNCTION
    assert "COMPLIANCE_DB_OWNER" in err
    with setup.owner_store.engine.connect() as conn:
        assert conn.execute(TRIGGERS).all() == triggers  # same oids: never dropped
    # The owner's db init still works, and a rerun of db grant is idempotent.
    assert main(["db", "--db-url", setup.owner_url, "init"]) == 0
    capsys.readouterr()
    assert main(["db", "--db-url", setup.owner_url, "grant", setup.app]) == 0
    out = capsys.readouterr().out
    assert f"GRANT SELECT, INSERT ON TABLE {setup.schema}" not in out  # quoted identifiers
    assert f'GRANT SELECT, INSERT ON TABLE "{setup.schema}"."ledger_heads" TO "{setup.app}"' in out
    assert "owns nothing" in out
    with setup.app_engine().connect() as conn:
        assert effective_privileges(conn, setup.app, setup.schema) == expected_privileges()


@postgres
def test_grant_takes_back_whatever_else_the_role_was_given(setup):
    with setup.owner_store.engine.begin() as conn:
        conn.exec_driver_sql(f'GRANT ALL ON ALL TABLES IN SCHEMA "{setup.schema}" TO "{setup.app}"')
        conn.exec_driver_sql(f'GRANT CREATE ON SCHEMA "{setup.schema}" TO "{setup.app}"')
    grant_pipeline_privileges(setup.owner_store.engine, setup.app)
    with setup.app_engine().connect() as conn:
        assert effective_privileges(conn, setup.app, setup.schema) == expected_privileges()
        assert not conn.execute(text("SELECT has_schema_privilege(current_schema(), 'CREATE')")).scalar()
    assert expected_privileges()["audit_log"] == {"SELECT", "INSERT"}
    assert expected_privileges()["ledger_heads"] == {"SELECT", "INSERT"}
    assert not any(
        {"DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"} & set(p) for p in PIPELINE_PRIVILEGES.values()
    )


@postgres
def test_grant_refuses_what_it_cannot_make_least_privilege(setup):
    engine = setup.owner_store.engine
    # Privileges through PUBLIC: revoking from the role does not remove them.
    with engine.begin() as conn:
        conn.exec_driver_sql("GRANT DELETE ON audit_log TO PUBLIC")
    with pytest.raises(PrivilegeError, match="DELETE on audit_log"):
        grant_pipeline_privileges(engine, setup.app)
    with engine.begin() as conn:
        conn.exec_driver_sql("REVOKE DELETE ON audit_log FROM PUBLIC")
    # A member of the owner's role may SET ROLE to it and disable the triggers.
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'GRANT "{setup.owner}" TO "{setup.app}"'))
    try:
        with pytest.raises(PrivilegeError, match=f"may act as {setup.owner}"):
            grant_pipeline_privileges(engine, setup.app)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'REVOKE "{setup.owner}" FROM "{setup.app}"'))
        admin.dispose()
    with pytest.raises(PrivilegeError, match="itself"):
        grant_pipeline_privileges(engine, setup.owner)
    with pytest.raises(PrivilegeError, match="does not exist"):
        grant_pipeline_privileges(engine, f"{setup.app}_missing")
    grant_pipeline_privileges(engine, setup.app)  # and fine again once fixed


@postgres
def test_grant_needs_the_store_first(tmp_path):
    from store_backends import throwaway_database

    with throwaway_database("postgresql", tmp_path) as url:
        store = ComplianceStore(create_store_engine(url))
        try:
            with pytest.raises(PrivilegeError, match="run gdpr-erasure db init first"):
                grant_pipeline_privileges(store.engine, "pg_monitor")
        finally:
            store.dispose()


def test_sqlite_has_no_roles(tmp_path, capsys):
    db = tmp_path / "compliance.db"
    assert main(["db", "--db-url", f"sqlite:///{db}", "grant", "gdpr_pipeline"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "SQLite has no roles" in err and "0600" in err
    assert not db.exists()  # not created by asking
