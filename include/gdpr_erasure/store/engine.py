"""Where the compliance store lives, and how to connect to it safely.

Resolution order for the database URL:

1. an explicit URL (``--db-url`` on the CLI, or a caller's argument);
2. the ``GDPR_COMPLIANCE_DB_URL`` environment variable;
3. the Airflow connection ``compliance_db`` (``postgres`` or ``sqlite`` type, or any type with
   an ``sqlalchemy_url`` extra);
4. the embedded default: a SQLite file under ``$AIRFLOW_HOME/gdpr_erasure/compliance.db``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url

log = logging.getLogger(__name__)

DEFAULT_CONN_ID = "compliance_db"
URL_ENV_VAR = "GDPR_COMPLIANCE_DB_URL"


def default_sqlite_url() -> str:
    home = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow"))
    return f"sqlite:///{home / 'gdpr_erasure' / 'compliance.db'}"


def url_from_connection(conn) -> str:
    """Turn an Airflow connection into an SQLAlchemy URL.

    :param conn: an Airflow connection: ``postgres`` (URL built by providers-postgres's
        ``PostgresHook``), ``sqlite`` (host: the file), or any type with an ``sqlalchemy_url`` extra.
    """
    extra = conn.extra_dejson or {}
    if extra.get("sqlalchemy_url"):
        return str(extra["sqlalchemy_url"])
    conn_type = (conn.conn_type or "").lower()
    if conn_type in {"postgres", "postgresql"}:
        # providers-postgres builds the URL, so the connection's extras work as on any postgres
        # connection: sqlalchemy_query (sslmode, options...), sqlalchemy_scheme, iam.
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        # psycopg2 unless the connection names a driver: the store is tested on it, and the hook
        # would otherwise pick psycopg 3 whenever that is installed.
        scheme = None if extra.get("sqlalchemy_scheme") else "postgresql+psycopg2"
        hook = PostgresHook(postgres_conn_id=conn.conn_id, connection=conn, sqlalchemy_scheme=scheme)
        return hook.sqlalchemy_url.render_as_string(hide_password=False)
    if conn_type == "sqlite":
        return f"sqlite:///{conn.host}"
    raise ValueError(
        f"connection {conn.conn_id!r} has type {conn_type!r}; use postgres, sqlite, "
        "or set an 'sqlalchemy_url' extra"
    )


def resolve_db_url(url: str | None = None, conn_id: str = DEFAULT_CONN_ID) -> str:
    if url:
        return url
    if os.environ.get(URL_ENV_VAR):
        return os.environ[URL_ENV_VAR]
    conn = _airflow_connection(conn_id)
    if conn is not None:
        return url_from_connection(conn)
    return default_sqlite_url()


def _airflow_connection(conn_id: str):
    try:
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException
    except ImportError:  # the store is usable without Airflow (intake service, scripts)
        return None
    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


def create_store_engine(url: str, *, pre_ping: bool = True) -> Engine:
    """An engine with the settings each backend needs for safe concurrent use.

    Not ``PostgresHook.get_sqlalchemy_engine()``: the store is also opened from a plain URL (CLI,
    intake service, no connection), SQLite needs the settings below to keep claims atomic and
    erased values out of free pages, and PostgreSQL needs a pool sized for a batch's threads.

    :param url: the SQLAlchemy URL (:func:`resolve_db_url`).
    :param pre_ping: test a pooled connection before use (long-lived processes).
    """
    sa_url = make_url(url)
    if sa_url.get_backend_name() == "sqlite":
        return _sqlite_engine(sa_url)
    # A batch task's threads each hold a connection while they work on a request.
    return create_engine(sa_url, pool_pre_ping=pre_ping, pool_size=8, max_overflow=8, pool_recycle=1800)


#: The SQLite store holds pending requests' emails and phones: only its owner may read them.
SQLITE_DIR_MODE = 0o700
SQLITE_FILE_MODE = 0o600


def prepare_sqlite_file(path: Path) -> None:
    """Create the store's folder (0700) and an empty database file (0600) before SQLite opens it.

    SQLite creates a missing database with 0644 less the umask, and gives its ``-wal`` and
    ``-shm`` files the permissions of the database file: creating the file 0600 first makes all
    three private to the owner whatever the umask. Existing folders and files are left as they
    are (a deliberate group setup stays working); a database others can read is logged.
    """
    folder = path.parent
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)  # parents: mkdir -p's modes, like the shell's
        os.chmod(folder, SQLITE_DIR_MODE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, SQLITE_FILE_MODE)
    except FileExistsError:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning(
                "compliance store %s has mode %o: others may read pending requests' identifiers; "
                "chmod 600 it and its -wal and -shm files",
                path,
                mode,
            )
        return
    try:
        os.fchmod(fd, SQLITE_FILE_MODE)  # in case the umask removed bits we asked for
    finally:
        os.close(fd)


def _sqlite_engine(sa_url: URL) -> Engine:
    if not sa_url.database or sa_url.database == ":memory:":
        raise ValueError("the compliance store needs a SQLite file, not an in-memory database")
    prepare_sqlite_file(Path(sa_url.database))
    engine = create_engine(sa_url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy, not the driver, decide when transactions begin (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA secure_delete=ON")  # erased identifiers must not linger in free pages
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # BEGIN IMMEDIATE takes the write lock at the start of every transaction, so a
        # read-then-update (claiming, appending to the audit chain) is atomic across processes:
        # SQLite's equivalent of SELECT ... FOR UPDATE SKIP LOCKED.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
