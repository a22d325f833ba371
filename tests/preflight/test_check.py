"""``gdpr-erasure check``: read-only proof that every connection works, against the sandbox.

Each misconfiguration below would otherwise look like "this person has no data here": a wrong
Segment Profile token, space or external id type answers like a missing profile, a missing
Memory store like a person without a profile. The check must pass on a good setup and fail on
each of them with one line that says what to do, never printing a secret.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gdpr_erasure.cli import main
from gdpr_erasure.receipts import generate_signing_key
from gdpr_erasure.store import ComplianceStore
from gdpr_erasure.store.schema import SCHEMA_VERSION, store_meta

INTAKE_SECRET = "intake-secret-0123456789abcdef0123456789abcdef"
SECRETS = ("sk_test_sandbox_key", "sandbox-auth-token", "sandbox-public-api-token", "sandbox-profile-token")


@pytest.fixture
def setup(api_connections, tmp_path, monkeypatch):
    """Good connections to the sandbox, an initialised store and the intake secret."""
    url = f"sqlite:///{tmp_path / 'compliance.db'}"
    store = ComplianceStore.from_url(url)
    store.init_db()
    store.dispose()
    monkeypatch.setenv("GDPR_COMPLIANCE_DB_URL", url)
    monkeypatch.setenv(
        "AIRFLOW_CONN_GDPR_INTAKE", json.dumps({"conn_type": "generic", "password": INTAKE_SECRET})
    )
    _, ledger_pem = generate_signing_key("ledger-check")
    ledger_key = {"conn_type": "generic", "login": "ledger-check", "password": ledger_pem}
    monkeypatch.setenv("AIRFLOW_CONN_GDPR_LEDGER_KEY", json.dumps(ledger_key))
    witness = {"conn_type": "generic", "extra": {"uri": f"file://{tmp_path / 'witness'}"}}
    monkeypatch.setenv("AIRFLOW_CONN_GDPR_LEDGER_WITNESS", json.dumps(witness))
    return Setup(api_connections, monkeypatch, url)


class Setup:
    def __init__(self, connections, monkeypatch, url):
        self.connections, self.monkeypatch, self.url = connections, monkeypatch, url

    def change(self, conn_id: str, **fields) -> None:
        conn = json.loads(json.dumps(self.connections[conn_id]))
        extra = fields.pop("extra", {})
        conn.update(fields)
        conn["extra"] = {**conn.get("extra", {}), **extra}
        self.monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))

    def check(self, capsys) -> tuple[int, dict[tuple[str, str], dict], str]:
        code = main(["check", "--json"])
        out, err = capsys.readouterr()
        results = {(r["system"], r["name"]): r for r in json.loads(out)}
        for secret in (*SECRETS, INTAKE_SECRET):
            assert secret not in out + err
        return code, results, err


def failed(results) -> dict[tuple[str, str], str]:
    return {key: r["detail"] for key, r in results.items() if not r["ok"]}


def test_everything_passes_against_the_sandbox(setup, capsys):
    code, results, err = setup.check(capsys)
    assert failed(results) == {}
    assert code == 0 and err == ""
    assert set(results) >= {
        ("store", "compliance store"),
        ("secrets", "identifier hash key"),
        ("secrets", "intake signing secret"),
        ("ledger", "tree-head signing key"),
        ("ledger", "witness"),
        ("stripe", "secret key"),
        ("stripe", "account"),
        ("twilio", "credentials"),
        ("twilio", "Memory store"),
        ("twilio", "Conversation Services"),
        ("segment", "Public API token"),
        ("segment", "Profile API token"),
        ("segment", "external id types"),
    }
    assert "test mode" in results[("stripe", "secret key")]["detail"]
    account_id = setup.connections["stripe_default"]["extra"]["account_id"]
    assert (
        results[("stripe", "account")]["detail"]
        == f"the key belongs to {account_id}, the connection's account_id"
    )
    assert results[("segment", "external id types")]["detail"] == "email as email, phone as phone"


def test_a_wrong_stripe_key_fails(setup, capsys):
    setup.change("stripe_default", password="sk_live_not_this_account_1234")
    code, results, _ = setup.check(capsys)
    assert code == 1
    problems = failed(results)
    assert list(problems) == [("stripe", "secret key"), ("stripe", "account")]
    assert "HTTP 401" in problems[("stripe", "account")] and "password" in problems[("stripe", "account")]


def test_a_valid_key_of_another_stripe_account_fails(setup, sandbox, capsys):
    """Another project's test key reads customers (it finds nobody): only the account check fails,
    and it names both accounts and what is wrong."""
    stripe = sandbox.accounts()["stripe"]
    setup.change("stripe_default", password="sk_test_other_project_key")
    code, results, _ = setup.check(capsys)
    assert code == 1
    assert failed(results) == {
        ("stripe", "account"): f"connection stripe_default: the key belongs to {stripe['other_account_id']}, "
        f"the connection expects {stripe['account_id']}: wrong key"
    }
    assert "sk_test_other_project_key" not in json.dumps(list(results.values()))


def test_a_stripe_connection_without_account_id_fails(setup, sandbox, capsys):
    setup.change("stripe_default", extra={"account_id": None})
    code, results, _ = setup.check(capsys)
    assert code == 1
    problems = failed(results)
    assert list(problems) == [("stripe", "account")]
    assert problems[("stripe", "account")] == (
        "connection stripe_default: set the connection's account_id to the acct_ id of the account your "
        f"customers are in; this key's account is {sandbox.accounts()['stripe']['account_id']}"
    )


def test_a_wrong_segment_profile_token_fails(setup, capsys):
    setup.change("segment_default", extra={"profile_api_token": "revoked-token"})
    code, results, _ = setup.check(capsys)
    assert code == 1
    problems = failed(results)
    assert ("segment", "Profile API token") in problems
    assert "401" in problems[("segment", "Profile API token")]
    assert ("segment", "Public API token") not in problems


def test_a_missing_memory_store_fails(setup, capsys):
    setup.change("twilio_default", extra={"memory_store_id": "mem_store_01nosuchstore0000000000000"})
    code, results, _ = setup.check(capsys)
    assert code == 1
    problems = failed(results)
    assert list(problems) == [("twilio", "Memory store")]
    assert "does not exist" in problems[("twilio", "Memory store")]


@pytest.mark.parametrize("extra", [{"phone_id_type": "phone_number"}, {"email_id_type": "mail"}])
def test_a_wrong_external_id_type_fails(setup, capsys, extra):
    """The sandbox's space keeps phones as ``phone``: a lookup by ``phone_number`` answers 404
    for everyone, which the pipeline would read as "no profile"."""
    setup.change("segment_default", extra=extra)
    code, results, _ = setup.check(capsys)
    assert code == 1
    problems = failed(results)
    assert list(problems) == [("segment", "external id types")]
    assert next(iter(extra)) in problems[("segment", "external id types")]


def test_without_a_check_profile_the_id_types_are_unproven(setup, capsys):
    setup.change("segment_default", extra={"check_user_id": None})
    code, results, _ = setup.check(capsys)
    assert code == 1
    assert "check_user_id" in failed(results)[("segment", "external id types")]


def test_a_wrong_space_fails(setup, capsys):
    setup.change("segment_default", extra={"space_id": "spa_someone_else"})
    code, results, _ = setup.check(capsys)
    assert code == 1
    assert ("segment", "external id types") in failed(results)


def test_the_store_must_exist_and_be_current(setup, capsys, tmp_path):
    setup.monkeypatch.setenv("GDPR_COMPLIANCE_DB_URL", f"sqlite:///{tmp_path / 'nowhere.db'}")
    code, results, _ = setup.check(capsys)
    assert code == 1
    assert "db init" in failed(results)[("store", "compliance store")]
    assert not (tmp_path / "nowhere.db").exists()  # a check never creates a store

    store = ComplianceStore.from_url(setup.url)
    with store.engine.begin() as conn:
        conn.execute(store_meta.update().values(value=str(SCHEMA_VERSION - 1)))
    store.dispose()
    setup.monkeypatch.setenv("GDPR_COMPLIANCE_DB_URL", setup.url)
    code, results, _ = setup.check(capsys)
    assert code == 1
    assert f"schema {SCHEMA_VERSION - 1}" in failed(results)[("store", "compliance store")]


def test_the_ledger_needs_its_key_and_witness(setup, capsys):
    setup.monkeypatch.delenv("AIRFLOW_CONN_GDPR_LEDGER_KEY")
    setup.monkeypatch.delenv("AIRFLOW_CONN_GDPR_LEDGER_WITNESS")
    code, results, _ = setup.check(capsys)
    assert code == 1
    problems = failed(results)
    assert set(problems) == {("ledger", "tree-head signing key"), ("ledger", "witness")}
    assert "gdpr_ledger_key" in problems[("ledger", "tree-head signing key")]


def test_short_secrets_fail(setup, capsys):
    setup.monkeypatch.setenv(
        "AIRFLOW_CONN_GDPR_HASH_KEY", json.dumps({"conn_type": "generic", "password": "too-short"})
    )
    setup.monkeypatch.setenv(
        "AIRFLOW_CONN_GDPR_INTAKE", json.dumps({"conn_type": "generic", "password": "short"})
    )
    code, results, _ = setup.check(capsys)
    assert code == 1
    assert set(failed(results)) == {("secrets", "identifier hash key"), ("secrets", "intake signing secret")}


def test_the_command_prints_a_table_and_one_line_on_failure(setup):
    """As ops run it: the console script, a table on stdout, one line on stderr, exit 1."""
    setup.change("stripe_default", password="sk_live_not_this_account_1234")
    env = {k: v for k, v in os.environ.items()}
    done = subprocess.run(
        [sys.executable, "-m", "gdpr_erasure.cli", "check"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    # A rejected key fails both Stripe checks, each saying why (the key, and whose key it is).
    assert done.stderr.strip().count("\n") == 0 and "2 of" in done.stderr
    header, *rows = done.stdout.strip().splitlines()
    assert header.split()[:4] == ["system", "check", "result", "detail"]
    assert any(row.startswith("stripe") and "FAILED" in row for row in rows)
