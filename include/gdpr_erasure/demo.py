"""``make demo``: the whole pipeline, end to end, on this machine.

Sets up an Airflow home and a SQLite compliance store under ``.demo/``, starts the API sandbox
on a free loopback port, submits erasure requests for seeded people (edge cases included),
runs the ``gdpr_erasure`` DAG to completion, prints a per-request summary and the audit chain
check, confirms in the sandbox that the data is gone, and stops what it started.
Every run starts from a clean ``.demo/``, so it can be repeated.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path.cwd()
DEMO = ROOT / ".demo"
AIRFLOW_HOME = DEMO / "airflow"
STORE_URL = f"sqlite:///{DEMO / 'compliance.db'}"
PEOPLE = (
    "person-001",
    "person-002",
    "person-003",
    "multi_stripe",
    "no_stripe",
    "no_segment",
    "quiet_phone",
    "many_messages",
)


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def main() -> int:
    started = time.monotonic()
    if DEMO.exists():
        shutil.rmtree(DEMO)
    AIRFLOW_HOME.mkdir(parents=True)
    env = _environment()
    os.environ.update(env)

    say("initialising Airflow's metadata DB and the compliance store (SQLite) under .demo/")
    _run([sys.executable, "-m", "airflow", "db", "migrate"], env, DEMO / "airflow-db-migrate.log")
    _run([sys.executable, "-m", "gdpr_erasure.cli", "db", "init"], env)

    sandbox = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gdpr_erasure.cli",
            "sandbox",
            "serve",
            "--port",
            "0",
            "--regulation-seconds",
            "3",
        ],
        stdout=subprocess.PIPE,
        stderr=open(DEMO / "sandbox.log", "w"),  # noqa: SIM115 - closed with the process
        text=True,
        env=env,
    )
    try:
        base_url = sandbox.stdout.readline().strip().removeprefix("sandbox listening on ")
        if not base_url.startswith("http://127.0.0.1:"):
            raise SystemExit(f"the sandbox did not start; see {DEMO / 'sandbox.log'}")
        say(f"sandbox (Stripe, Twilio, Segment emulator) on {base_url}")
        return _demo(env, base_url, started)
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)
        say("sandbox stopped")


def _environment() -> dict[str, str]:
    return {
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "GDPR_COMPLIANCE_DB_URL": STORE_URL,
        # A fresh identifier-hash key per demo; production keeps one in a connection.
        "AIRFLOW_VAR_GDPR_HASH_KEY": secrets.token_hex(32),
        "GDPR_ERASURE_POLL_SECONDS": "0.5",
    }


def _demo(env: dict[str, str], base_url: str, started: float) -> int:
    import requests

    from gdpr_erasure.identifiers import SubjectIdentifiers
    from gdpr_erasure.store import ComplianceStore

    catalog = requests.get(f"{base_url}/_sandbox/people", timeout=10).json()
    env.update(_connections(base_url, catalog["accounts"]))
    people = {p["key"]: p for p in catalog["people"]}

    store = ComplianceStore.from_url(STORE_URL)
    for key in PEOPLE:
        person = people[key]
        ids = SubjectIdentifiers.parse(
            email=person["email"],
            phone=person["phone"],
            stripe_customer_id=(person["stripe_customer_ids"] or [None])[0],
        )
        store.submit(f"demo-{key}", ids, source="demo")
    say(f"submitted {len(PEOPLE)} erasure requests into the intake table: {', '.join(PEOPLE)}")

    say("running the gdpr_erasure DAG (airflow dags test); task logs in .demo/dag-run.log")
    dag_started = time.monotonic()
    code = _run(
        [sys.executable, "-m", "airflow", "dags", "test", "gdpr_erasure"],
        env,
        DEMO / "dag-run.log",
        check=False,
    )
    say(f"DAG run finished in {time.monotonic() - dag_started:.1f}s (exit code {code})")

    _print_summary(store, people)
    verified = _run([sys.executable, "-m", "gdpr_erasure.cli", "audit", "verify"], env, check=False)
    gone = _confirm_in_sandbox(base_url, people)
    completed = store.counts_by_status() == {"completed": len(PEOPLE)}
    ok = code == 0 and verified == 0 and gone and completed
    say(f"{'SUCCESS' if ok else 'FAILED'} in {time.monotonic() - started:.1f}s")
    return 0 if ok else 1


def _connections(base_url: str, accounts: dict) -> dict[str, str]:
    twilio, segment = accounts["twilio"], accounts["segment"]
    connections = {
        "stripe_default": {
            "conn_type": "stripe",
            "password": "sk_test_demo",
            "extra": {"api_base": f"{base_url}/stripe"},
        },
        "twilio_default": {
            "conn_type": "twilio",
            "login": twilio["account_sid"],
            "password": "demo-auth-token",
            "extra": {"api_base": f"{base_url}/twilio", "memory_store_id": twilio["memory_store_id"]},
        },
        "segment_default": {
            "conn_type": "http",
            "host": f"{base_url}/segment/api",
            "password": "demo-public-api-token",
            "extra": {
                "space_id": segment["space_id"],
                "profile_api_token": "demo-profile-token",
                "profile_api_url": f"{base_url}/segment/profiles",
            },
        },
    }
    return {f"AIRFLOW_CONN_{k.upper()}": json.dumps(v) for k, v in connections.items()}


def _print_summary(store, people) -> None:
    header = f"{'request':<22} {'status':<10} {'stripe':<18} {'twilio':<24} {'segment':<22} audit"
    print("\n" + header + "\n" + "-" * len(header))
    for key in PEOPLE:
        request = store.get(f"demo-{key}")
        entry = store.audit_entry(request.id)
        record = entry.record if entry else {}
        stripe = record.get("stripe", {})
        twilio = record.get("twilio", {})
        segment = record.get("segment", {})
        deleted = twilio.get("history_deleted") or {}
        stripe_text = (
            f"{len(stripe.get('customer_ids', []))} {stripe.get('method')}"
            if stripe.get("customer_ids")
            else "none"
        )
        twilio_text = (
            f"{len(twilio.get('memory_profile_ids', []))} prof, {deleted.get('messages', 0)} msg, "
            f"{deleted.get('calls', 0)} call"
        )
        segment_text = (segment.get("proof") or {}).get("status") or segment.get("reason") or "-"
        audit_text = f"#{entry.seq}" if entry else "none"
        print(
            f"{request.id:<22} {request.status.value:<10} {stripe_text:<18} {twilio_text:<24} "
            f"{segment_text:<22} {audit_text}"
        )
    print()


def _confirm_in_sandbox(base_url: str, people) -> bool:
    import requests

    problems = []
    for key in PEOPLE:
        state = requests.get(f"{base_url}/_sandbox/state/person/{key}", timeout=10).json()
        if not all(c["deleted"] for c in state["stripe"]["customers"]):
            problems.append(f"{key}: a Stripe customer still exists")
        if state["twilio"]["messages"] or state["twilio"]["calls"]:
            problems.append(f"{key}: Twilio messages or calls remain")
        if state["memory"]["profile_present"]:
            problems.append(f"{key}: Twilio Memory profile remains")
        if any(r["overallStatus"] != "FINISHED" for r in state["segment"]["regulations"]):
            problems.append(f"{key}: a Segment regulation is not FINISHED")
        if state["segment"]["profile_present"]:
            problems.append(f"{key}: Segment profile remains")
    if problems:
        for problem in problems:
            say(f"sandbox check: {problem}")
        return False
    say(
        "sandbox confirms: Stripe customers deleted, Twilio messages, calls and profiles gone, "
        "Segment regulations FINISHED"
    )
    return True


def _run(command: list[str], env: dict[str, str], log: Path | None = None, *, check: bool = True) -> int:
    full_env = {**os.environ, **env}
    if log is None:
        result = subprocess.run(command, env=full_env, check=False)
    else:
        with open(log, "w") as out:
            result = subprocess.run(command, env=full_env, stdout=out, stderr=subprocess.STDOUT, check=False)
    if check and result.returncode != 0:
        where = f"; see {log}" if log else ""
        raise SystemExit(f"command failed ({result.returncode}): {' '.join(command[:5])}{where}")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
