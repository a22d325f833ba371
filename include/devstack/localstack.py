"""A whole local stack for the demo, scripts and benchmarks: an Airflow home, the compliance
store, Airflow pools, and the API sandbox with connections pointing at it.

Everything lives under one directory, starts clean, and the sandbox stops when the ``with``
block ends. The sandbox is started by :mod:`sandbox.launcher` and driven with
:class:`sandbox.client.SandboxClient`; its connections come from :mod:`sandbox.connections`,
which the tests use too.
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

from devstack import REPO_ROOT, SANDBOX_PROGRAM
from sandbox.client import SandboxClient
from sandbox.connections import sandbox_connections
from sandbox.launcher import running_sandbox


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
    """A running local stack. ``sandbox`` is the control client of its sandbox."""

    root: Path
    env: dict[str, str]
    sandbox: SandboxClient
    store_url: str
    people: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        """The sandbox's base URL."""
        return self.sandbox.base_url

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

    with running_sandbox(
        *(sandbox_args or []), program=SANDBOX_PROGRAM, env=env, log_path=root / "sandbox.log"
    ) as sandbox:
        stack = LocalStack(root=root, env=env, sandbox=sandbox.client, store_url=store_url)
        catalog = stack.sandbox.catalog()
        env.update(connection_env(sandbox_connections(sandbox.url, catalog["accounts"])))
        stack.people = {p["key"]: p for p in catalog["people"]}
        yield stack


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
