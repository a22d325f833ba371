"""The ``compliance_db`` connection becomes a URL through providers-postgres's PostgresHook, so
its extras behave as on any postgres connection."""

from __future__ import annotations

import json

import pytest
from airflow.sdk import Connection
from sqlalchemy.engine import make_url
from store_backends import PG_URL

from gdpr_erasure.store.engine import URL_ENV_VAR, create_store_engine, resolve_db_url, url_from_connection


def _postgres(**extra) -> Connection:
    return Connection(
        conn_id="compliance_db",
        conn_type="postgres",
        host="db.internal",
        port=5432,
        login="gdpr",
        password="p@ss/w:rd",
        schema="gdpr_compliance",
        extra=json.dumps(extra),
    )


def test_a_postgres_connection_is_a_psycopg2_url_with_its_query_extras():
    url = make_url(url_from_connection(_postgres(sqlalchemy_query={"sslmode": "verify-full"})))
    assert url.drivername == "postgresql+psycopg2"  # not psycopg 3, though it is installed
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "gdpr",
        "p@ss/w:rd",
        "db.internal",
        5432,
        "gdpr_compliance",
    )
    assert dict(url.query) == {"sslmode": "verify-full"}


def test_the_connection_may_name_another_driver():
    url = make_url(url_from_connection(_postgres(sqlalchemy_scheme="postgresql+psycopg")))
    assert url.drivername == "postgresql+psycopg"


def test_an_sqlalchemy_url_extra_and_sqlite_connections_are_still_ours():
    assert url_from_connection(_postgres(sqlalchemy_url="postgresql://x@h/db")) == "postgresql://x@h/db"
    sqlite = Connection(conn_id="compliance_db", conn_type="sqlite", host="/srv/store.db")
    assert url_from_connection(sqlite) == "sqlite:////srv/store.db"


@pytest.mark.postgres
@pytest.mark.skipif(not PG_URL, reason="GDPR_TEST_PG_URL not set (CI sets it)")
def test_the_compliance_db_connection_reaches_postgresql_with_its_extras(monkeypatch):
    pg = make_url(PG_URL)
    monkeypatch.delenv(URL_ENV_VAR, raising=False)
    monkeypatch.setenv(
        "AIRFLOW_CONN_COMPLIANCE_DB",
        json.dumps(
            {
                "conn_type": "postgres",
                "host": pg.host,
                "port": pg.port,
                "login": pg.username,
                "password": pg.password,
                "schema": pg.database,
                "extra": {"sqlalchemy_query": {"application_name": "gdpr-erasure-test"}},
            }
        ),
    )
    engine = create_store_engine(resolve_db_url())
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW application_name").scalar() == "gdpr-erasure-test"
    finally:
        engine.dispose()
