"""Bring an existing compliance store up to :data:`~gdpr_erasure.store.schema.SCHEMA_VERSION`.

``ComplianceStore.init_db`` (``gdpr-erasure db init``) calls :func:`upgrade` before it creates
what is missing, so running ``db init`` after an upgrade of the package migrates the store in
place, keeping every request, step and audit record.

Version 1 to 2 adds ``erasure_requests.not_before`` and the ``deferred`` status, which the
CHECK constraint on ``status`` must accept (version 2 to 3 only adds the ``ledger_heads`` table,
which ``init_db`` creates with its append-only triggers; version 3 to 4 renames steps, below):

* PostgreSQL: ``ALTER TABLE ... ADD COLUMN``, then the constraint is dropped and added again,
  in one transaction (DDL is transactional there).
* SQLite cannot change a CHECK constraint, so the table is rebuilt the documented way
  (https://www.sqlite.org/lang_altertable.html#otheralter, "Making Other Kinds Of Table Schema
  Changes"): foreign keys off, one transaction, create the new table, copy the rows, drop the
  old table, rename the new one, recreate its indexes and triggers, ``PRAGMA
  foreign_key_check``, commit, foreign keys back on. ``erasure_steps`` keeps pointing at
  ``erasure_requests`` by name, so its rows stay attached.

Version 3 to 4 names the erasure steps with one verb (docs/glossary.md): the stored rows of
``purge_twilio_profile``, ``purge_twilio_history`` and ``redact_stripe`` become
``erase_twilio_profile``, ``erase_twilio_history`` and ``erase_stripe``, and a failed request's
``last_error``, which names the steps that failed, follows. One transaction that keeps writers
out on both backends. The audit ledger is not touched: its records are hashed as written, and
they name no step.

Version 4 to 5 records where each step ran and when a request was claimed: ``erasure_steps``
gains ``dag_id``, ``task_id``, ``run_id``, ``map_index`` and ``try_number`` (the task instance
and try that last worked on the step: its log in the Airflow UI), ``erasure_requests`` gains
``claimed_at`` and ``claimed_map_index`` (the latest claim's time and the batch it put the
request in). Nullable columns added at the end with ``ALTER TABLE ... ADD COLUMN`` on both
backends (SQLite allows that without a rebuild), in one transaction; rows written before keep
NULL there, which every reader accepts. No privilege changes: the pipeline's role holds its
privileges per table (store/privileges.py), so they cover the new columns.

Version 5 to 6 adds legal holds: the ``on_hold`` status, which the status CHECK must accept
(swapped on PostgreSQL, the table rebuilt on SQLite, as for version 2; :func:`accept_every_status`
does either, and only when a status is missing), and the ``legal_holds`` table, which ``init_db``
creates. Rerun ``gdpr-erasure db grant`` afterwards: the pipeline's role needs its privileges on
the new table.

Version 6 to 7 adds the ``completed_with_exemptions`` status (the erasure policy kept something,
docs/policy.md): 25 characters, so ``erasure_requests.status`` becomes ``VARCHAR(32)``, and the
ledger's review entries, keyed ``<request id>/review/<attempt>``, so ``audit_log.request_id``
becomes ``VARCHAR(100)``. On PostgreSQL two ``ALTER COLUMN ... TYPE`` (a wider ``varchar`` is
only a catalogue change: no row is rewritten, and no trigger of the append-only ledger fires),
then the status CHECK as for version 6; on SQLite, which does not enforce a ``VARCHAR``'s length,
only the CHECK (the table rebuilt as for version 2).
"""

from __future__ import annotations

import logging

from sqlalchemy import (
    CheckConstraint,
    Connection,
    Engine,
    MetaData,
    Table,
    and_,
    exists,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.schema import CreateTable, SetColumnComment

from gdpr_erasure.store import schema

log = logging.getLogger(__name__)

R = schema.erasure_requests
S = schema.erasure_steps
_STATUS_CHECK = "ck_erasure_requests_status"

#: Version 4's step renames, old -> new. Written out, not taken from ``gdpr_erasure.steps``: they
#: are what stores of version 3 and before hold, whatever the steps are called later.
STEP_RENAMES_V4 = {
    "purge_twilio_profile": "erase_twilio_profile",
    "purge_twilio_history": "erase_twilio_history",
    "redact_stripe": "erase_stripe",
}

#: Version 7's wider columns: (table, column, length).
WIDER_V7 = ((R.name, "status", 32), (schema.audit_log.name, "request_id", 100))

#: Version 5's columns, per table, in the order the tables define them (last).
COLUMNS_V5 = {
    S.name: ("dag_id", "task_id", "run_id", "map_index", "try_number"),
    R.name: ("claimed_at", "claimed_map_index"),
}


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
    done: list[str] = []
    # Version 3 only adds ledger_heads, which init_db creates with its triggers.
    if found is None or found < 2 or "not_before" not in columns:
        done += _v2_postgresql(engine) if engine.dialect.name == "postgresql" else _v2_sqlite(engine)
    if found is None or found < 4:
        done += _v4_step_names(engine)
    if found is None or found < 5:
        done += _v5_where_steps_ran(engine)
    if found is None or found < 7:
        # Version 6's on_hold and version 7's completed_with_exemptions: wide enough, then accepted.
        done += _v7_wider_columns(engine)
        done += accept_every_status(engine)
    for step in done:
        log.info("compliance store migrated: %s", step)
    return done


def _columns(conn: Connection, table: str) -> set[str]:
    return {column["name"] for column in inspect(conn).get_columns(table)}


# -- version 7: completed_with_exemptions, and review entries in the ledger ----------------------


def _v7_wider_columns(engine: Engine) -> list[str]:
    """Widen the columns of :data:`WIDER_V7` on PostgreSQL (SQLite does not enforce the length).
    Idempotent: a column already that wide is left alone."""
    if engine.dialect.name != "postgresql":
        return []
    done = []
    with engine.begin() as conn:
        tables = sorted({table for table, _, _ in WIDER_V7})
        conn.exec_driver_sql(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE")
        for table, column, length in WIDER_V7:
            width = next(c["type"].length for c in inspect(conn).get_columns(table) if c["name"] == column)
            if width is not None and width < length:
                conn.exec_driver_sql(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE VARCHAR({length})")
                done.append(f"{table}.{column} widened to {length} characters")
    return done


# -- version 6: the on_hold status (legal holds) -----------------------------------------------


def accept_every_status(engine: Engine) -> list[str]:
    """Make the status CHECK accept every status of this version (6: ``on_hold``, 7:
    ``completed_with_exemptions``). Idempotent: a CHECK that already names them all is left alone.
    A later version adding a status calls it too."""
    if engine.dialect.name != "postgresql":
        return _v2_sqlite(engine)  # rebuilds the table only when the CHECK lacks a status
    with engine.begin() as conn:
        conn.exec_driver_sql(f"LOCK TABLE {R.name} IN ACCESS EXCLUSIVE MODE")
        definition = conn.execute(
            text(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conname = :name AND conrelid = to_regclass(:table)"
            ),
            {"name": _STATUS_CHECK, "table": R.name},
        ).scalar_one_or_none()
        missing = [s.value for s in schema.RequestStatus if f"'{s.value}'" not in (definition or "")]
        if not missing:
            return []
        _swap_status_check(conn)
    return [f"{_STATUS_CHECK} accepts {', '.join(missing)}"]


# -- version 5: where each step ran, when a request was claimed ---------------------------------


def _v5_where_steps_ran(engine: Engine) -> list[str]:
    """Add the columns of :data:`COLUMNS_V5` that are missing. Idempotent: a column already there
    (a second ``db init``, or a table that version 2's SQLite rebuild created whole) is left alone."""
    postgres = engine.dialect.name == "postgresql"
    tables = {S.name: S, R.name: R}
    done = []
    with engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE holds the write lock
        if postgres:
            # ALTER TABLE takes this lock anyway; taking it first makes concurrent `db init`s wait
            # here, before they read which columns are missing.
            conn.exec_driver_sql(f"LOCK TABLE {S.name}, {R.name} IN ACCESS EXCLUSIVE MODE")
        for name, columns in COLUMNS_V5.items():
            present = _columns(conn, name)
            for column in (tables[name].c[c] for c in columns if c not in present):
                column_type = column.type.compile(dialect=engine.dialect)
                conn.exec_driver_sql(f"ALTER TABLE {name} ADD COLUMN {column.name} {column_type}")
                if postgres and column.comment:
                    conn.execute(SetColumnComment(column))
                done.append(f"{name}.{column.name} added")
    return done


# -- version 4: the erasure steps named with one verb ---------------------------------------------


def _v4_step_names(engine: Engine) -> list[str]:
    """Rename the steps of :data:`STEP_RENAMES_V4` in ``erasure_steps`` and in ``last_error``.
    Idempotent: a second run finds no old name. A row whose request already has the new name
    (only a run of this version before ``db init``, which the preflight refuses) is left as it is."""
    done = []
    with engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE (store/engine.py) holds the write lock
        if engine.dialect.name == "postgresql":
            # Writers wait until the names are consistent; concurrent `db init`s run one at a time.
            conn.exec_driver_sql(f"LOCK TABLE {S.name}, {R.name} IN SHARE ROW EXCLUSIVE MODE")
        newer = S.alias("newer")
        for old, new in STEP_RENAMES_V4.items():
            renamed = conn.execute(
                S.update()
                .where(S.c.step == old)
                .where(~exists().where(and_(newer.c.request_id == S.c.request_id, newer.c.step == new)))
                .values(step=new)
            ).rowcount
            reasons = conn.execute(
                R.update()
                .where(R.c.last_error.contains(old, autoescape=True))
                .values(last_error=func.replace(R.c.last_error, old, new))
            ).rowcount
            if renamed or reasons:
                done.append(f"{S.name}: step {old} renamed {new} ({renamed} row(s), {reasons} last_error(s))")
    return done


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
        _swap_status_check(conn)
        done.append(f"{_STATUS_CHECK} accepts {', '.join(s.value for s in schema.RequestStatus)}")
    return done


def _swap_status_check(conn: Connection) -> None:
    """Drop the status CHECK and add it again with every status of this version (PostgreSQL,
    inside the caller's transaction, which holds the table's lock)."""
    conn.exec_driver_sql(f"ALTER TABLE {R.name} DROP CONSTRAINT IF EXISTS {_STATUS_CHECK}")
    # Written out rather than with AddConstraint, which (before SQLAlchemy 2.0.39 always, and
    # since then by default) marks the Table's constraint as added apart: every later CREATE
    # TABLE of this process (a new store) would leave the CHECK out.
    conn.exec_driver_sql(
        f"ALTER TABLE {R.name} ADD CONSTRAINT {_STATUS_CHECK} CHECK ({_status_check().sqltext})"
    )


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
    added = ", ".join(sorted(set(table.c.keys()) - set(old_columns))) or "no"
    done = [f"{name} rebuilt ({added} column(s) added)"]
    if new_statuses:
        done.append(f"{_STATUS_CHECK} accepts {', '.join(new_statuses)}")
    return done
