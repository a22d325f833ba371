"""Bring an existing compliance store up to :data:`~gdpr_erasure.store.schema.SCHEMA_VERSION`.

``ComplianceStore.init_db`` (``gdpr-erasure db init``) calls :func:`upgrade` before it creates
what is missing, so running ``db init`` after an upgrade of the package migrates the store in
place, keeping every request, step and audit record.

Version 1 to 2 adds ``erasure_requests.not_before`` and the ``deferred`` status, which the
CHECK constraint on ``status`` must accept (version 2 to 3 only adds the ``ledger_heads`` table,
which ``init_db`` creates with its append-only triggers):

* PostgreSQL: ``ALTER TABLE ... ADD COLUMN``, then the constraint is dropped and added again,
  in one transaction (DDL is transactional there).
* SQLite cannot change a CHECK constraint, so the table is rebuilt the documented way
  (https://www.sqlite.org/lang_altertable.html#otheralter, "Making Other Kinds Of Table Schema
  Changes"): foreign keys off, one transaction, create the new table, copy the rows, drop the
  old table, rename the new one, recreate its indexes and triggers, ``PRAGMA
  foreign_key_check``, commit, foreign keys back on. ``erasure_steps`` keeps pointing at
  ``erasure_requests`` by name, so its rows stay attached.
"""

from __future__ import annotations

import logging

from sqlalchemy import CheckConstraint, Connection, Engine, MetaData, Table, inspect, select
from sqlalchemy.schema import CreateTable, SetColumnComment

from gdpr_erasure.store import schema

log = logging.getLogger(__name__)

R = schema.erasure_requests
_STATUS_CHECK = "ck_erasure_requests_status"


def stored_version(engine: Engine) -> int | None:
    """The schema version recorded in the store, or None for an empty database."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(schema.store_meta.name):
            return None
        value = conn.execute(
            select(schema.store_meta.c.value).where(schema.store_meta.c.key == "schema_version")
        ).scalar_one_or_none()
    return int(value) if value is not None else None


def upgrade(engine: Engine, found: int | None) -> list[str]:
    """Migrate a store created at version ``found`` (None: nothing recorded) to the current
    version; returns what was done, empty when nothing had to change. Idempotent: every step
    checks the database itself, under its lock, before changing it."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(R.name):
            return []  # an empty database: init_db creates the current schema
        columns = _columns(conn, R.name)
    if found is not None and found >= 2 and "not_before" in columns:
        return []  # version 3 only adds ledger_heads, which init_db creates with its triggers
    done = _v2_postgresql(engine) if engine.dialect.name == "postgresql" else _v2_sqlite(engine)
    for step in done:
        log.info("compliance store migrated: %s", step)
    return done


def _columns(conn: Connection, table: str) -> set[str]:
    return {column["name"] for column in inspect(conn).get_columns(table)}


# -- version 2: not_before and the deferred status ----------------------------------------------


def _status_check() -> CheckConstraint:
    return next(c for c in R.constraints if c.name == _STATUS_CHECK)


def _v2_postgresql(engine: Engine) -> list[str]:
    column_type = R.c.not_before.type.compile(dialect=engine.dialect)
    with engine.begin() as conn:
        # Serialise concurrent `db init`s and keep writers out while the constraint is swapped.
        conn.exec_driver_sql(f"LOCK TABLE {R.name} IN ACCESS EXCLUSIVE MODE")
        done = []
        if "not_before" not in _columns(conn, R.name):
            conn.exec_driver_sql(f"ALTER TABLE {R.name} ADD COLUMN not_before {column_type}")
            conn.execute(SetColumnComment(R.c.not_before))
            done.append(f"{R.name}.not_before added")
        # Replace the status CHECK so that it accepts every status of this version (`deferred`).
        conn.exec_driver_sql(f"ALTER TABLE {R.name} DROP CONSTRAINT IF EXISTS {_STATUS_CHECK}")
        # Written out rather than with AddConstraint, which (before SQLAlchemy 2.0.39 always, and
        # since then by default) marks the Table's constraint as added apart: every later CREATE
        # TABLE of this process (a new store) would leave the CHECK out.
        conn.exec_driver_sql(
            f"ALTER TABLE {R.name} ADD CONSTRAINT {_STATUS_CHECK} CHECK ({_status_check().sqltext})"
        )
        done.append(f"{_STATUS_CHECK} accepts {', '.join(s.value for s in schema.RequestStatus)}")
    return done


def _v2_sqlite(engine: Engine) -> list[str]:
    raw = engine.raw_connection()  # the driver connection: PRAGMA foreign_keys is a no-op in a transaction
    cursor = raw.cursor()
    try:
        foreign_keys = cursor.execute("PRAGMA foreign_keys").fetchone()[0]
        cursor.execute("PRAGMA foreign_keys=OFF")
        cursor.execute("BEGIN IMMEDIATE")
        try:
            done = _rebuild_sqlite_table(cursor, R, engine)
            cursor.execute("COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        finally:
            cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        # The old table's pages were zeroed (secure_delete); do not leave copies in the WAL either.
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return done
    finally:
        cursor.close()
        raw.close()


def _rebuild_sqlite_table(cursor, table: Table, engine: Engine) -> list[str]:
    """Steps 3-10 of SQLite's procedure, inside the caller's transaction."""
    name = table.name
    (create_sql,) = cursor.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    old_columns = [row[1] for row in cursor.execute(f'PRAGMA table_info("{name}")')]
    new_statuses = [s.value for s in schema.RequestStatus if f"'{s.value}'" not in create_sql]
    if "not_before" in old_columns and not new_statuses:
        return []  # another `db init` got here first
    # Indexes and triggers go with the old table; keep their SQL to create them again (step 3).
    dependents = cursor.execute(
        "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND type IN ('index', 'trigger') "
        "AND sql IS NOT NULL",
        (name,),
    ).fetchall()
    staging = f"{name}_new"
    cursor.execute(
        str(CreateTable(table.to_metadata(MetaData(), name=staging)).compile(dialect=engine.dialect))
    )
    copied = ", ".join(f'"{c}"' for c in old_columns if c in table.c)
    cursor.execute(f'INSERT INTO "{staging}" ({copied}) SELECT {copied} FROM "{name}"')
    cursor.execute(f'DROP TABLE "{name}"')
    cursor.execute(f'ALTER TABLE "{staging}" RENAME TO "{name}"')
    for (sql,) in dependents:
        cursor.execute(sql)
    problems = cursor.execute("PRAGMA foreign_key_check").fetchall()
    if problems:
        raise RuntimeError(f"migration of {name} would break {len(problems)} foreign key(s); rolled back")
    done = [
        f"{name} rebuilt ({', '.join(sorted(set(table.c.keys()) - set(old_columns))) or 'no'} column added)"
    ]
    if new_statuses:
        done.append(f"{_STATUS_CHECK} accepts {', '.join(new_statuses)}")
    return done
