"""``make demo``: the whole pipeline, end to end, on this machine.

Sets up an Airflow home and a SQLite compliance store under ``.demo/``, starts the API sandbox
on a free loopback port, submits erasure requests for seeded people (edge cases included)
through the signed intake API,
runs the ``gdpr_erasure`` DAG to completion, prints a per-request summary and the audit chain
check, confirms in the sandbox that the data is gone, and stops what it started.
Every run starts from a clean ``.demo/``, so it can be repeated.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from devstack.localstack import LocalStack, local_stack

DEMO = Path.cwd() / ".demo"
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
    say("setting up Airflow, the compliance store (SQLite), pools and the API sandbox under .demo/")
    with local_stack(DEMO, sandbox_args=["--regulation-seconds", "3"]) as stack:
        say(f"sandbox (Stripe, Twilio, Segment emulator) on {stack.base_url}")
        code = _demo(stack, started)
    say("sandbox stopped")
    return code


def _demo(stack: LocalStack, started: float) -> int:
    import subprocess

    _submit_through_the_webhook(stack)

    say("running the gdpr_erasure DAG (airflow dags test); task logs in .demo/dag-run.log")
    dag_started = time.monotonic()
    code = stack.run_dag("dag-run.log")
    say(f"DAG run finished in {time.monotonic() - dag_started:.1f}s (exit code {code})")

    store = stack.store()
    _print_summary(store)
    verified = subprocess.run(
        [sys.executable, "-m", "gdpr_erasure.cli", "audit", "verify"], env=stack.env, check=False
    ).returncode
    gone = _confirm_in_sandbox(stack)
    completed = store.counts_by_status() == {"completed": len(PEOPLE)}
    ok = code == 0 and verified == 0 and gone and completed
    say(f"{'SUCCESS' if ok else 'FAILED'} in {time.monotonic() - started:.1f}s")
    root = stack.root.relative_to(Path.cwd()) if stack.root.is_relative_to(Path.cwd()) else stack.root
    receipts = _issue_receipts(stack) if ok else None
    db = f"--db-url sqlite:///{root}/compliance.db"
    first = f"demo-{PEOPLE[0]}"
    say("inspect what it just did (paste these):")
    commands = [
        ("one request: timeline, evidence, ledger position", f"requests show {first} {db}"),
        (
            "the ledger against the tree heads published to the witness folder",
            f"audit verify {db} --witness file://{stack.root}/witness --public-key {root}/ledger-public.pem",
        ),
        ("the audit records as CSV", f"audit export {db} --format csv"),
    ]
    if receipts:
        commands.append(
            (
                "a signed receipt, offline (issued into receipts/ with a demo key)",
                f"receipt verify {root}/receipts/{first}.receipt.json --public-key {root}/receipt-public.pem "
                f"--ledger-public-key {root}/ledger-public.pem",
            )
        )
    for what, command in commands:
        print(f"  # {what}\n  .venv/bin/gdpr-erasure {command}")
    return 0 if ok else 1


def _issue_receipts(stack: LocalStack) -> Path | None:
    """Sign a receipt per completed request into ``receipts/`` with a fresh demo key (its public
    half in ``receipt-public.pem``), as ``gdpr-erasure receipt issue --all`` does in production."""
    import json
    import subprocess

    from gdpr_erasure.receipts import generate_signing_key

    key, pem = generate_signing_key("demo-receipts")
    (stack.root / "receipt-public.pem").write_text(key.public_pem())
    env = {
        **stack.env,
        "AIRFLOW_CONN_GDPR_RECEIPT_KEY": json.dumps(
            {"conn_type": "generic", "login": key.key_id, "password": pem}
        ),
    }
    out = stack.root / "receipts"
    issued = subprocess.run(
        [sys.executable, "-m", "gdpr_erasure.cli", "receipt", "issue", "--all", "--out-dir", str(out)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if issued.returncode != 0:
        say(f"receipts not issued: {issued.stderr.strip()}")
        return None
    say(f"signed receipts for the completed requests in {out}")
    return out


def _submit_through_the_webhook(stack: LocalStack) -> None:
    """Send the requests the way a client would: signed POSTs to the intake API."""
    import secrets

    from gdpr_erasure.intake.client import IntakeClient
    from gdpr_erasure.intake.server import standalone_intake

    secret = secrets.token_hex(32)
    with standalone_intake(
        secret=secret, db_url=stack.store_url, env=stack.env, log_path=stack.root / "intake.log"
    ) as intake_url:
        say(f"intake API (signed webhook) on {intake_url}")
        client = IntakeClient(intake_url, secret)
        for key in PEOPLE:
            person = stack.people[key]
            client.submit(
                f"demo-{key}",
                email=person["email"],
                phone=person["phone"],
                stripe_customer_id=(person["stripe_customer_ids"] or [None])[0],
            )
    say(f"submitted {len(PEOPLE)} signed erasure requests through the intake: {', '.join(PEOPLE)}")


def _print_summary(store) -> None:
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


def _confirm_in_sandbox(stack: LocalStack) -> bool:
    problems = []
    for key in PEOPLE:
        state = stack.sandbox.state(key)
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


if __name__ == "__main__":
    sys.exit(main())
