"""Least privilege in the compliance database: what the pipeline's role may do, and nothing else.

Two PostgreSQL roles share the store (docs/deployment.md, "The compliance store"):

* the **owner** owns the tables, the indexes, the triggers and their function. It runs
  ``gdpr-erasure db init`` (creation and migrations) and ``gdpr-erasure db grant``. Its
  credentials are in no Airflow connection a worker reads.
* the **pipeline's role** (connection ``compliance_db``: the DAG, the intake) owns nothing. In
  PostgreSQL only a table's owner (or a superuser) may ``ALTER TABLE`` it, ``DISABLE TRIGGER`` or
  ``DROP TRIGGER`` on it, or drop it; ``TRUNCATE`` and ``CREATE TRIGGER`` need privileges this
  module never grants. So the append-only triggers on the ledger cannot be taken off by the
  credentials every worker holds.

:func:`grant_pipeline_privileges` (``gdpr-erasure db grant ROLE``, run as the owner) revokes
everything the role has on the store's schema and grants exactly :data:`PIPELINE_PRIVILEGES`,
then checks the role's *effective* privileges (through PUBLIC, role memberships, superuser) and
fails if they are more or less than that. Idempotent: run it after every ``db init``, as a new
schema version may add a table.

SQLite has no roles: the file permissions of the store's folder (0700) and files (0600) are the
only access control (:func:`gdpr_erasure.store.engine.prepare_sqlite_file`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text

from gdpr_erasure.store import schema

#: Every table-level privilege PostgreSQL has (``MAINTAIN`` since 17: checked where it exists).
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")

#: What the pipeline's statements need (``gdpr_erasure.store.store``), per table. No table gets
#: DELETE (the store never deletes a row: erasure nulls the identifiers), TRUNCATE, REFERENCES
#: or TRIGGER.
PIPELINE_PRIVILEGES: dict[str, tuple[str, ...]] = {
    # submit (INSERT ... ON CONFLICT DO NOTHING RETURNING), claim (UPDATE of rows selected FOR
    # UPDATE SKIP LOCKED), transition, record_failure, defer, requeue, erase_identifiers.
    "erasure_requests": ("SELECT", "INSERT", "UPDATE"),
    # record_step: INSERT ... ON CONFLICT DO UPDATE.
    "erasure_steps": ("SELECT", "INSERT", "UPDATE"),
    # Legal holds: gdpr-erasure hold place (INSERT) and release (UPDATE released_at); the claim
    # and every erasure step read them. Never deleted.
    "legal_holds": ("SELECT", "INSERT", "UPDATE"),
    # The ledger and its signed heads: appended to and read, never changed.
    **{table: ("SELECT", "INSERT") for table in schema.APPEND_ONLY_TABLES},
    # schema_version (the preflight); only db init writes it.
    "store_meta": ("SELECT",),
}

#: Granted on top of :data:`PIPELINE_PRIVILEGES` for locks only. Empty: ``append_audit``
#: serialises appends on ``pg_advisory_xact_lock``, which needs no privilege (``LOCK TABLE ...
#: IN EXCLUSIVE MODE`` would need UPDATE, DELETE or TRUNCATE on the ledger).
LOCK_PRIVILEGES: dict[str, tuple[str, ...]] = {}


class PrivilegeError(Exception):
    """The role cannot be given exactly the pipeline's privileges (one line, no secrets)."""


class NoRolesError(PrivilegeError):
    """The store is SQLite: there is no role to grant to."""


SQLITE_NO_ROLES = (
    "SQLite has no roles: the store's file permissions (folder 0700, files 0600, owned by the "
    "user the pipeline runs as) are its only access control; nothing to grant"
)


def expected_privileges() -> dict[str, set[str]]:
    """Table to privileges the pipeline's role should end up with."""
    expected = {table: set(privileges) for table, privileges in PIPELINE_PRIVILEGES.items()}
    for table, privileges in LOCK_PRIVILEGES.items():
        expected[table] |= set(privileges)
    return expected


@dataclass(frozen=True)
class GrantReport:
    role: str
    schema: str
    statements: list[str]


def grant_pipeline_privileges(engine: Engine, role: str) -> GrantReport:
    """Give ``role`` exactly the pipeline's privileges on the store ``engine`` points at (its
    ``search_path`` schema). Run as the owner, after ``db init``. Raises :class:`NoRolesError` on
    SQLite and :class:`PrivilegeError` when the result would not be least privilege (the role is
    a superuser, owns or may act as the owner of the store, or keeps privileges through PUBLIC)."""
    if engine.dialect.name != "postgresql":
        raise NoRolesError(SQLITE_NO_ROLES)
    quote = engine.dialect.identifier_preparer.quote_identifier
    with engine.begin() as conn:
        store_schema, database, me = conn.execute(
            text("SELECT current_schema(), current_database(), current_user")
        ).one()
        if store_schema is None:
            raise PrivilegeError("no schema on the search_path: point the URL at the store's schema")
        if conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first() is None:
            raise PrivilegeError(f"role {role!r} does not exist: create it (LOGIN) first")
        if role == me:
            raise PrivilegeError(
                f"connected as {role!r} itself: run db grant as the store's owner, for the pipeline's role"
            )
        missing = sorted(set(PIPELINE_PRIVILEGES) - set(_tables(conn, store_schema)))
        if missing:
            raise PrivilegeError(
                f"schema {store_schema!r} has no {', '.join(missing)}: run gdpr-erasure db init first"
            )
        who, where = quote(role), quote(store_schema)
        statements = [
            f"REVOKE ALL ON ALL TABLES IN SCHEMA {where} FROM {who}",
            f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {where} FROM {who}",
            f"REVOKE ALL ON SCHEMA {where} FROM {who}",
            f"GRANT USAGE ON SCHEMA {where} TO {who}",
        ]
        if _public_may_create(conn, store_schema) and _can_grant(conn, "schema", store_schema, "CREATE"):
            # PostgreSQL before 15 lets PUBLIC create in the public schema.
            statements.append(f"REVOKE CREATE ON SCHEMA {where} FROM PUBLIC")
        for table, privileges in expected_privileges().items():
            ordered = [p for p in TABLE_PRIVILEGES if p in privileges]
            statements.append(f"GRANT {', '.join(ordered)} ON TABLE {where}.{quote(table)} TO {who}")
        if _can_grant(conn, "database", database, "CONNECT"):
            statements.append(f"GRANT CONNECT ON DATABASE {quote(database)} TO {who}")
        for statement in statements:
            conn.exec_driver_sql(statement)
        problems = privilege_problems(conn, role, store_schema)
        if problems:
            raise PrivilegeError(f"role {role!r} would not have least privilege: {'; '.join(problems)}")
    return GrantReport(role, store_schema, statements)


def privilege_problems(conn: Connection, role: str, store_schema: str) -> list[str]:
    """What ``role`` may do on the store beyond (or short of) the pipeline's privileges, as
    PostgreSQL decides it: grants to PUBLIC, role memberships and superuser all count."""
    problems = []
    flags = conn.execute(
        text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = :r"), {"r": role}
    ).one()
    if flags.rolsuper:
        return [f"{role} is a superuser: no privilege applies to it"]
    owners = conn.execute(
        text(
            """SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = :s AND c.relname = ANY(:tables)
               UNION SELECT pg_get_userbyid(p.proowner) FROM pg_proc p
               JOIN pg_namespace n ON n.oid = p.pronamespace
               WHERE n.nspname = :s AND p.proname = 'gdpr_audit_log_append_only'"""
        ),
        {"s": store_schema, "tables": list(PIPELINE_PRIVILEGES)},
    ).scalars()
    for owner in sorted(owners):
        if conn.execute(text("SELECT pg_has_role(:r, :o, 'MEMBER')"), {"r": role, "o": owner}).scalar():
            problems.append(
                f"{role} is or may act as {owner}, the owner of the store's objects (it could disable "
                f"the triggers): make another role the owner (REASSIGN OWNED BY {role} TO <owner>)"
            )
    if problems:
        return problems
    if flags.rolbypassrls:
        problems.append(f"{role} has BYPASSRLS")
    actual = effective_privileges(conn, role, store_schema)
    for table, wanted in expected_privileges().items():
        extra, short = actual[table] - wanted, wanted - actual[table]
        if extra:
            problems.append(f"{', '.join(sorted(extra))} on {table} (granted to PUBLIC or a role of {role}?)")
        if short:
            problems.append(f"no {', '.join(sorted(short))} on {table}")
    if conn.execute(
        text("SELECT has_schema_privilege(:r, :s, 'CREATE')"), {"r": role, "s": store_schema}
    ).scalar():
        problems.append(f"CREATE on schema {store_schema} (through PUBLIC?): revoke it as the schema's owner")
    return problems


def effective_privileges(conn: Connection, role: str, store_schema: str) -> dict[str, set[str]]:
    """Table to the table-level privileges ``role`` holds on it, however it holds them."""
    privileges = list(TABLE_PRIVILEGES)
    if conn.dialect.server_version_info >= (17,):
        privileges.append("MAINTAIN")
    rows = conn.execute(
        text(
            """SELECT c.relname, p.privilege FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
               CROSS JOIN unnest(CAST(:privileges AS text[])) AS p(privilege)
               WHERE n.nspname = :s AND c.relname = ANY(:tables)
                 AND has_table_privilege(:r, c.oid, p.privilege)"""
        ),
        {"privileges": privileges, "s": store_schema, "tables": list(PIPELINE_PRIVILEGES), "r": role},
    ).all()
    found: dict[str, set[str]] = {table: set() for table in PIPELINE_PRIVILEGES}
    for table, privilege in rows:
        found[table].add(privilege)
    return found


def is_permission_denied(exc: BaseException) -> bool:
    """A PostgreSQL ``insufficient_privilege`` (42501) or "must be owner" error."""
    return getattr(getattr(exc, "orig", None), "pgcode", None) == "42501"


def _tables(conn: Connection, store_schema: str) -> list[str]:
    return list(
        conn.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": store_schema}
        ).scalars()
    )


def _public_may_create(conn: Connection, store_schema: str) -> bool:
    return bool(
        conn.execute(
            text("SELECT has_schema_privilege('public', :s, 'CREATE')"), {"s": store_schema}
        ).scalar()
    )


def _can_grant(conn: Connection, kind: str, name: str, privilege: str) -> bool:
    """Whether the current user holds ``privilege`` WITH GRANT OPTION (owners do)."""
    function = {"schema": "has_schema_privilege", "database": "has_database_privilege"}[kind]
    return bool(
        conn.execute(
            text(f"SELECT {function}(:n, :p)"), {"n": name, "p": f"{privilege} WITH GRANT OPTION"}
        ).scalar()
    )
