"""``gdpr-erasure deploy init`` (gdpr_erasure/deploy.py), what the compose file's airflow-init runs
after the migration: on the local PostgreSQL it creates the compliance database, its owner and
the pipeline's role, which owns nothing; a second run changes nothing; wrong settings are refused
in one line before anything is changed. (Its connections and users steps run in the stack tests,
through the compose file's own init script.)
"""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError
from store_backends import PG_URL

from gdpr_erasure.cli import main
from gdpr_erasure.deploy import Settings, build_connections, compliance_database
from gdpr_erasure.store import ComplianceStore


def needs_postgres(test):
    """On the PostgreSQL of GDPR_TEST_PG_URL (CI sets it; an unreachable server fails the test)."""
    return pytest.mark.postgres(
        pytest.mark.skipif(not PG_URL, reason="GDPR_TEST_PG_URL not set (CI sets it)")(test)
    )


# Never reached: the refusals below happen before deploy init connects to anything.
UNREACHABLE = "postgresql+psycopg2://nobody@127.0.0.1:1/airflow"


def init_env(name: str, admin_url: str) -> dict[str, str]:
    """airflow-init's environment for a compliance database ``name`` (the compose file's names)."""
    return {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": admin_url,
        "COMPLIANCE_DB_NAME": name,
        "COMPLIANCE_DB_OWNER": f"{name}_owner",
        "COMPLIANCE_DB_OWNER_PASSWORD": "owner-password-0123456789",
        "COMPLIANCE_DB_USER": f"{name}_pipeline",
        "COMPLIANCE_DB_PASSWORD": "pipeline-password-0123456789",
        "GDPR_CREATE_COMPLIANCE_DB": "true",
    }


def deploy_init(monkeypatch, capsys, env: dict[str, str], *argv: str) -> tuple[int, str, str]:
    for name in [*env, "COMPLIANCE_DB_HOST", "COMPLIANCE_DB_PORT", "GDPR_SANDBOX_URL"]:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main(["deploy", "init", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def compliance_db():
    """A unique database name; the database and both roles are dropped afterwards."""
    name = f"gdpr_deploy_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    yield name, PG_URL
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        for role in (f"{name}_pipeline", f"{name}_owner"):  # after the database: the owner owns it
            conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
    admin.dispose()


def snapshot(name: str) -> dict[str, object]:
    """The roles, who owns the database and every object in it, and the pipeline's grants."""
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    inside = create_engine(make_url(PG_URL).set(database=name), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            roles = conn.execute(
                text("SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE :p ORDER BY 1"),
                {"p": f"{name}\\_%"},
            ).all()
            database_owner = conn.execute(
                text("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = :n"), {"n": name}
            ).scalar()
        with inside.connect() as conn:
            owners = conn.execute(
                text(
                    "SELECT n.nspname, c.relname, pg_get_userbyid(c.relowner) FROM pg_class c"
                    " JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') ORDER BY 1, 2"
                )
            ).all()
            grants = conn.execute(
                text(
                    "SELECT table_name, privilege_type FROM information_schema.role_table_grants"
                    " WHERE grantee = :u ORDER BY 1, 2"
                ),
                {"u": f"{name}_pipeline"},
            ).all()
    finally:
        admin.dispose()
        inside.dispose()
    return {"roles": roles, "database_owner": database_owner, "owners": owners, "grants": grants}


@needs_postgres
def test_it_creates_the_database_owned_by_the_owner_and_a_pipeline_role_that_owns_nothing(
    compliance_db, monkeypatch, capsys
):
    name, admin_url = compliance_db
    env = init_env(name, admin_url)
    code, out, err = deploy_init(monkeypatch, capsys, env, "--only", "database,store")
    assert (code, err) == (0, ""), err
    assert f"created role {name}_owner" in out and f"created role {name}_pipeline" in out
    assert f"created database {name}" in out and "compliance store ready" in out

    state = snapshot(name)
    assert state["roles"] == [(f"{name}_owner", True), (f"{name}_pipeline", True)]
    assert state["database_owner"] == f"{name}_owner"
    assert state["owners"] and {owner for *_, owner in state["owners"]} == {f"{name}_owner"}
    assert state["grants"]  # what the pipeline runs, nothing more (tests/store/test_privileges.py)

    # As the pipeline's role (the compliance_db connection): it runs the pipeline, and cannot
    # switch off the ledger's append-only triggers, which only an owner may.
    pipeline_url = make_url(PG_URL).set(database=name, username=f"{name}_pipeline", password=None)
    store = ComplianceStore.from_url(pipeline_url.render_as_string(hide_password=False))
    try:
        assert store.counts_by_status() == {}
        with pytest.raises(ProgrammingError, match="must be owner"), store.engine.begin() as conn:
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER ALL"))
    finally:
        store.dispose()


@needs_postgres
def test_a_second_run_changes_nothing(compliance_db, monkeypatch, capsys):
    name, admin_url = compliance_db
    env = init_env(name, admin_url)
    assert deploy_init(monkeypatch, capsys, env, "--only", "database,store")[0] == 0
    first = snapshot(name)
    code, out, err = deploy_init(monkeypatch, capsys, env, "--only", "database", "--only", "store")
    assert (code, err) == (0, ""), err
    assert "created" not in out and "now belong" not in out
    assert snapshot(name) == first


@needs_postgres
def test_a_store_the_pipeline_role_owned_is_handed_to_the_owner(compliance_db, monkeypatch, capsys):
    """A store created before there were two roles (the pipeline's role ran db init) is reassigned."""
    name, admin_url = compliance_db
    env = init_env(name, admin_url)
    assert deploy_init(monkeypatch, capsys, env, "--only", "database")[0] == 0
    admin = create_engine(make_url(PG_URL).set(database=name), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'GRANT CREATE ON SCHEMA public TO "{name}_pipeline"'))
        conn.execute(text(f'SET ROLE "{name}_pipeline"'))
        conn.execute(text("CREATE TABLE legacy (id integer)"))
    admin.dispose()
    code, out, err = deploy_init(monkeypatch, capsys, env, "--only", "database,store")
    assert (code, err) == (0, ""), err
    assert f"now belong to {name}_owner (were {name}_pipeline's)" in out
    assert {owner for *_, owner in snapshot(name)["owners"]} == {f"{name}_owner"}


@needs_postgres
def test_a_missing_role_password_creates_neither_role(compliance_db, monkeypatch, capsys):
    name, admin_url = compliance_db
    env = {**init_env(name, admin_url), "COMPLIANCE_DB_PASSWORD": "short"}
    code, out, err = deploy_init(monkeypatch, capsys, env, "--only", "database")
    assert code == 1 and err == "deploy init: set COMPLIANCE_DB_PASSWORD in .env (at least 16 characters)\n"
    admin = create_engine(PG_URL)
    with admin.connect() as conn:
        roles = conn.execute(
            text("SELECT rolname FROM pg_roles WHERE rolname LIKE :p"), {"p": f"{name}\\_%"}
        ).all()
    admin.dispose()
    assert out == "" and roles == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"COMPLIANCE_DB_USER": "gdpr_same"}, "must be two roles"),
        ({"COMPLIANCE_DB_NAME": "Gdpr-Compliance"}, "COMPLIANCE_DB_NAME='Gdpr-Compliance': use lower-case"),
        ({"COMPLIANCE_DB_OWNER": 'x"; DROP DATABASE airflow; --'}, "COMPLIANCE_DB_OWNER="),
        ({"COMPLIANCE_DB_USER": "1pipeline"}, "COMPLIANCE_DB_USER='1pipeline'"),
        ({"COMPLIANCE_DB_USER": "p" * 64}, "at most 63"),
        ({"COMPLIANCE_DB_NAME": ""}, "set COMPLIANCE_DB_NAME in .env"),
        ({"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:////tmp/airflow.db"}, "Airflow's PostgreSQL server"),
    ],
    ids=["owner-is-pipeline", "upper-case", "injection", "digit-first", "too-long", "missing", "sqlite"],
)
def test_wrong_settings_are_refused_in_one_line_before_any_change(change, expected, monkeypatch, capsys):
    env = {**init_env("gdpr_refused", UNREACHABLE), "COMPLIANCE_DB_OWNER": "gdpr_same", **change}
    if "COMPLIANCE_DB_USER" not in change:
        env["COMPLIANCE_DB_USER"] = "gdpr_pipeline"
    code, out, err = deploy_init(monkeypatch, capsys, env)
    assert code == 1
    assert err.startswith("deploy init: ") and err.count("\n") == 1, err
    assert expected in err
    assert out == ""


def test_the_sandbox_branch_says_in_one_line_to_install_the_extra(monkeypatch, capsys):
    """Production code imports the sandbox only when GDPR_SANDBOX_URL is set, and its absence is
    one line, before any change."""
    import sys

    monkeypatch.setitem(sys.modules, "sandbox.connections", None)  # as if it were not installed
    env = {**init_env("gdpr_sandboxed", UNREACHABLE), "GDPR_HASH_KEY": "k" * 32}
    env["GDPR_SANDBOX_URL"] = "http://127.0.0.1:1"
    code, _, err = deploy_init(monkeypatch, capsys, env, "--only", "connections")
    assert code == 1 and err.count("\n") == 1, err
    assert "install gdpr-erasure[sandbox]" in err


def test_sandbox_connections_point_every_provider_at_the_sandbox(sandbox):
    env = {**init_env("gdpr_sandboxed", UNREACHABLE), "GDPR_HASH_KEY": "k" * 32}
    env["GDPR_SANDBOX_URL"] = sandbox.base_url + "/"
    settings = Settings(env)
    lines: list[str] = []
    connections = build_connections(compliance_database(settings), settings, say=lines.append)
    assert lines == [f"deploy init: Stripe, Twilio and Segment point at the SANDBOX {sandbox.base_url}"]
    extras = {
        conn_id: json.loads(connections[conn_id]["extra"]) for conn_id in ("stripe_default", "twilio_default")
    }
    assert extras["stripe_default"]["api_base"] == f"{sandbox.base_url}/stripe"
    assert extras["stripe_default"]["account_id"] == sandbox.accounts()["stripe"]["account_id"]
    assert extras["twilio_default"]["api_base"] == f"{sandbox.base_url}/twilio"
    assert connections["segment_default"]["host"] == f"{sandbox.base_url}/segment/api"
    assert connections["compliance_db"]["login"] == "gdpr_sandboxed_pipeline"
