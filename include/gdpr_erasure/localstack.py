"""A whole local stack for the demo, scripts and benchmarks: an Airflow home, the compliance
store, Airflow pools, and the API sandbox with connections pointing at it.

Everything lives under one directory, starts clean, and the sandbox stops when the ``with``
block ends. Tests use the same connection definitions (:func:`sandbox_connections`).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The sandbox's first line on stdout, followed by its base URL.
SANDBOX_READY = "sandbox listening on "


def sandbox_command(*args: str) -> list[str]:
    """``gdpr-erasure sandbox serve`` on a free loopback port, with more arguments."""
    return [sys.executable, "-m", "gdpr_erasure.cli", "sandbox", "serve", "--port", "0", *args]


def sandbox_connections(base_url: str, accounts: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Airflow connections (``AIRFLOW_CONN_*`` JSON form) for the sandbox at ``base_url``."""
    stripe, twilio, segment = accounts["stripe"], accounts["twilio"], accounts["segment"]
    return {
        "stripe_default": {
            "conn_type": "stripe",
            "password": "sk_test_sandbox_key",
            "extra": {"api_base": f"{base_url}/stripe", "account_id": stripe["account_id"]},
        },
        "twilio_default": {
            "conn_type": "twilio",
            "login": twilio["account_sid"],
            "password": "sandbox-auth-token",
            "extra": {"api_base": f"{base_url}/twilio", "memory_store_id": twilio["memory_store_id"]},
        },
        "segment_default": {
            "conn_type": "segment",
            "host": f"{base_url}/segment/api",
            "password": "sandbox-public-api-token",
            "extra": {
                "space_id": segment["space_id"],
                "profile_api_token": "sandbox-profile-token",
                "profile_api_url": f"{base_url}/segment/profiles",
                "check_user_id": segment["check_user_id"],
            },
        },
    }


def person_identifiers(person: dict[str, Any]):
    """What a request for this sandbox person (``GET /_sandbox/people``) carries."""
    from gdpr_erasure.identifiers import SubjectIdentifiers

    return SubjectIdentifiers.parse(
        email=person["email"],
        phone=person["phone"],
        stripe_customer_id=(person["stripe_customer_ids"] or [None])[0],
    )


def submit_people(store_url: str, people: list[dict[str, Any]], prefix: str, source: str) -> list[str]:
    """Put one request per sandbox person into the intake table (``{prefix}-{key}``)."""
    from gdpr_erasure.store import ComplianceStore

    store = ComplianceStore.from_url(store_url)
    try:
        return [
            store.submit(f"{prefix}-{p['key']}", person_identifiers(p), source=source).request.id
            for p in people
        ]
    finally:
        store.dispose()


def connection_env(connections: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn) for conn_id, conn in connections.items()}


@dataclass
class LocalStack:
    root: Path
    env: dict[str, str]
    base_url: str
    store_url: str
    people: dict[str, dict[str, Any]] = field(default_factory=dict)

    def store(self):
        from gdpr_erasure.store import ComplianceStore

        return ComplianceStore.from_url(self.store_url)

    def submit(self, keys: list[str], prefix: str = "req") -> list[str]:
        """Put requests for these sandbox people into the intake table (store API)."""
        return submit_people(self.store_url, [self.people[key] for key in keys], prefix, source="local")

    def dag_test(self, log_name: str, conf: dict[str, Any] | None = None, **popen: Any) -> subprocess.Popen:
        """Start ``airflow dags test gdpr_erasure`` (the whole run in one process), logging to a file."""
        command = [sys.executable, "-m", "airflow", "dags", "test", "gdpr_erasure"]
        if conf:
            command += ["--conf", json.dumps(conf)]
        log = open(self.root / log_name, "w")  # noqa: SIM115 - handed to the child process
        return subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT, **popen)

    def run_dag(self, log_name: str, conf: dict[str, Any] | None = None) -> int:
        return self.dag_test(log_name, conf).wait()

    def control(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        response = requests.request(method, f"{self.base_url}/_sandbox{path}", timeout=30, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None


@contextmanager
def local_stack(
    root: Path,
    *,
    sandbox_args: list[str] | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[LocalStack]:
    """Set up ``root`` from scratch and run the sandbox for the duration of the block."""
    if root.exists():
        shutil.rmtree(root)
    (root / "airflow").mkdir(parents=True)
    store_url = f"sqlite:///{root / 'compliance.db'}"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(root / "airflow"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{root / 'airflow' / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "GDPR_COMPLIANCE_DB_URL": store_url,
        # A fresh identifier-hash key per stack, in a connection's password as in production.
        "AIRFLOW_CONN_GDPR_HASH_KEY": json.dumps(
            {"conn_type": "generic", "login": "local", "password": secrets.token_hex(32)}
        ),
        "GDPR_ERASURE_POLL_SECONDS": "0.5",
        # The ledger's signing key and a witness folder: each run signs and publishes tree heads.
        **_ledger_env(root),
        **(extra_env or {}),
    }
    _check([sys.executable, "-m", "airflow", "db", "migrate"], env, root / "airflow-db-migrate.log")
    _check([sys.executable, "-m", "gdpr_erasure.cli", "db", "init"], env, root / "db-init.log")
    _check([sys.executable, "-m", "gdpr_erasure.cli", "pools", "create"], env, root / "pools.log")

    with open(root / "sandbox.log", "w") as sandbox_log:
        sandbox = subprocess.Popen(
            sandbox_command(*(sandbox_args or [])),
            stdout=subprocess.PIPE,
            stderr=sandbox_log,
            text=True,
            env=env,
        )
        try:
            line = sandbox.stdout.readline().strip()
            if not line.startswith(SANDBOX_READY):
                raise RuntimeError(f"the sandbox did not start; see {root / 'sandbox.log'}")
            base_url = line.removeprefix(SANDBOX_READY)
            stack = LocalStack(root=root, env=env, base_url=base_url, store_url=store_url)
            catalog = stack.control("GET", "/people")
            env.update(connection_env(sandbox_connections(base_url, catalog["accounts"])))
            stack.people = {p["key"]: p for p in catalog["people"]}
            yield stack
        finally:
            sandbox.terminate()
            sandbox.wait(timeout=10)


def _ledger_env(root: Path) -> dict[str, str]:
    """A fresh Ed25519 ledger key (its public half in ``ledger-public.pem``) and ``witness/``."""
    from gdpr_erasure.receipts import generate_signing_key

    key, pem = generate_signing_key("local-ledger")
    (root / "ledger-public.pem").write_text(key.public_pem())
    witness = {"conn_type": "generic", "extra": {"uri": f"file://{root / 'witness'}"}}
    return {
        "AIRFLOW_CONN_GDPR_LEDGER_KEY": json.dumps(
            {"conn_type": "generic", "login": key.key_id, "password": pem}
        ),
        "AIRFLOW_CONN_GDPR_LEDGER_WITNESS": json.dumps(witness),
    }


def _check(command: list[str], env: dict[str, str], log: Path) -> None:
    with open(log, "w") as out:
        result = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[2:5])} failed (exit {result.returncode}); see {log}")
