"""``make demo``: the whole pipeline, end to end, on this machine.

Sets up an Airflow home and a SQLite compliance store under ``.demo/``, starts the API sandbox
on a free loopback port, submits erasure requests for seeded people (edge cases included)
through the signed intake API, places a legal hold on one of them, runs the ``gdpr_erasure`` DAG
to completion, prints a per-request summary (what the erasure policy kept and why, what the hold
stopped) and the audit chain check, confirms in the sandbox that the data is gone (and that the
held person and the withheld Stripe customer received no write at all), and stops what it
started. Every run starts from a clean ``.demo/``, so it can be repeated.
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
#: A person under a legal hold, placed on their request before the run: the run writes nothing
#: for it and leaves it ``on_hold`` (docs/holds.md).
HELD = "person-004"
#: A person whose Stripe customer has an open dispute: the default policy withholds the customer
#: (no write at all, reviewed in 60 days) and erases the rest: ``completed_with_exemptions``.
EXEMPTED = "open_dispute"
HOLD_REASON = "DEMO-1 litigation hold"


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
    store = stack.store()
    hold_id = _place_hold(store)
    before = {key: stack.sandbox.state(key) for key in (HELD, EXEMPTED)}

    say("running the gdpr_erasure DAG (airflow dags test); task logs in .demo/dag-run.log")
    dag_started = time.monotonic()
    code = stack.run_dag("dag-run.log")
    say(f"DAG run finished in {time.monotonic() - dag_started:.1f}s (exit code {code})")
    issuing = _start_receipts(stack)  # in the background while the run is checked

    _print_summary(store, hold_id)
    verified = subprocess.run(
        [sys.executable, "-m", "gdpr_erasure.cli", "audit", "verify"], env=stack.env, check=False
    ).returncode
    gone = _confirm_in_sandbox(stack, before)
    ended = store.counts_by_status() == {
        "completed": len(PEOPLE),
        "completed_with_exemptions": 1,
        "on_hold": 1,
    }
    ok = code == 0 and verified == 0 and gone and ended
    say(f"{'SUCCESS' if ok else 'FAILED'} in {time.monotonic() - started:.1f}s")
    root = stack.root.relative_to(Path.cwd()) if stack.root.is_relative_to(Path.cwd()) else stack.root
    receipts = _receipts_issued(issuing, stack, discard=not ok)
    db = f"--db-url sqlite:///{root}/compliance.db"
    first = f"demo-{PEOPLE[0]}"
    say("inspect what it just did (paste these):")
    commands = [
        ("one request: timeline, evidence, ledger position", f"requests show {first} {db}"),
        (
            "the request completed with an exemption: what the policy kept, why and until when",
            f"requests show demo-{EXEMPTED} {db}",
        ),
        (
            "the request on legal hold: nothing written, waiting for the release",
            f"requests show demo-{HELD} {db}",
        ),
        ("the legal holds and how many requests each holds", f"hold list {db}"),
        (
            "the ledger against the tree heads published to the witness folder",
            f"audit verify {db} --witness file://{stack.root}/witness --public-key {root}/ledger-public.pem",
        ),
        ("the audit records as CSV", f"audit export {db} --format csv"),
        (
            "the period's report: answered, kept by action, next reviews, on hold",
            f"audit export {db} --summary",
        ),
    ]
    if receipts:
        keys = f"--public-key {root}/receipt-public.pem --ledger-public-key {root}/ledger-public.pem"
        commands += [
            (
                "a signed receipt, offline (issued into receipts/ with a demo key)",
                f"receipt verify {root}/receipts/{first}.receipt.json {keys}",
            ),
            (
                "the receipt of the request completed with an exemption: what was erased, what was kept",
                f"receipt verify {root}/receipts/demo-{EXEMPTED}.receipt.json {keys}",
            ),
        ]
    for what, command in commands:
        print(f"  # {what}\n  .venv/bin/gdpr-erasure {command}")
    return 0 if ok else 1


def _start_receipts(stack: LocalStack):
    """Start signing a receipt per completed request (with exemptions or not) into ``receipts/``
    with a fresh demo key (its public half in ``receipt-public.pem``), as ``gdpr-erasure receipt
    issue --all`` does in production; :func:`_receipts_issued` waits for it."""
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
    return subprocess.Popen(
        [sys.executable, "-m", "gdpr_erasure.cli", "receipt", "issue", "--all", "--out-dir", str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _receipts_issued(issuing, stack: LocalStack, *, discard: bool = False) -> Path | None:
    """Wait for :func:`_start_receipts`; the folder of the receipts, or None (``discard``: the run
    failed, so none is shown)."""
    _, errors = issuing.communicate()
    if discard:
        return None
    if issuing.returncode != 0:
        say(f"receipts not issued: {errors.strip()}")
        return None
    out = stack.root / "receipts"
    say(f"signed receipts for the completed requests (with exemptions too) in {out}")
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
        for key in (*PEOPLE, EXEMPTED, HELD):
            person = stack.people[key]
            client.submit(
                f"demo-{key}",
                email=person["email"],
                phone=person["phone"],
                stripe_customer_id=(person["stripe_customer_ids"] or [None])[0],
            )
    say(
        f"submitted {len(PEOPLE) + 2} signed erasure requests through the intake: "
        f"{', '.join((*PEOPLE, EXEMPTED, HELD))}"
    )


def _place_hold(store) -> str:
    """Hold ``HELD``'s request before the run, as ``gdpr-erasure hold place --request`` does: the
    run's claim finds the hold and writes nothing for it."""
    from gdpr_erasure.holds import place_hold

    change = place_hold(store, reason=HOLD_REASON, placed_by="demo", request_id=f"demo-{HELD}")
    say(
        f"legal hold {change.hold.hold_id} placed on demo-{HELD} ({HOLD_REASON!r}); "
        f"audit ledger seq {change.entry.seq}"
    )
    return change.hold.hold_id


def _print_summary(store, hold_id: str) -> None:
    header = f"{'request':<22} {'status':<25} {'stripe':<18} {'twilio':<24} {'segment':<22} audit"
    print("\n" + header + "\n" + "-" * len(header))
    for key in (*PEOPLE, EXEMPTED, HELD):
        request = store.get(f"demo-{key}")
        entry = store.audit_entry(request.id)
        record = entry.record if entry else {}
        stripe = record.get("stripe", {})
        twilio = record.get("twilio", {})
        segment = record.get("segment", {})
        deleted = twilio.get("history_deleted") or {}
        kept = len(record.get("kept") or [])
        stripe_text = (
            f"{len(stripe.get('customer_ids', [])) - kept} {stripe.get('method')}"
            + (f", {kept} kept" if kept else "")
            if stripe.get("customer_ids")
            else ("-" if not entry else "none")
        )
        twilio_text = (
            f"{len(twilio.get('memory_profile_ids', []))} prof, {deleted.get('messages', 0)} msg, "
            f"{deleted.get('calls', 0)} call"
            if entry
            else "-"
        )
        segment_text = (segment.get("proof") or {}).get("status") or segment.get("reason") or "-"
        audit_text = f"#{entry.seq}" if entry else "none"
        print(
            f"{request.id:<22} {request.status.value:<25} {stripe_text:<18} {twilio_text:<24} "
            f"{segment_text:<22} {audit_text}"
        )
    print()
    # What the policy kept and why (the audit record's ``kept``), and what the hold stopped.
    kept_record = store.audit_entry(f"demo-{EXEMPTED}")
    for item in (kept_record.record.get("kept") or []) if kept_record else []:
        if item.get("review_date"):
            when = f"checked again on {item['review_date'][:10]}"
        else:
            when = f"kept until {(item.get('retained_until') or 'a person decides')[:10]}"
        print(
            f"demo-{EXEMPTED}: kept Stripe customer {item['id']}, {item['action']} "
            f"({', '.join(item['cases'])}): {item['legal_basis']}; {when}"
        )
    held = store.get(f"demo-{HELD}")
    print(
        f"demo-{HELD}: {held.status.value} ({held.last_error}): nothing written; "
        f"`gdpr-erasure hold release {hold_id} --reason ...` sends it back to pending\n"
    )


def _confirm_in_sandbox(stack: LocalStack, before: dict[str, dict]) -> bool:
    """Everyone's data is gone, except the held person's (all of it untouched) and the withheld
    Stripe customer (no write at all; the rest of that person erased)."""
    problems = []
    if stack.sandbox.state(HELD) != before[HELD]:
        problems.append(f"{HELD}: something changed although the request is on hold")
    exempted = stack.sandbox.state(EXEMPTED)
    if any(c["deleted"] or c["writes"] for c in exempted["stripe"]["customers"]):
        problems.append(f"{EXEMPTED}: the withheld Stripe customer received a write")
    for key in (*PEOPLE, EXEMPTED):
        state = stack.sandbox.state(key)
        if key == EXEMPTED:
            state = {**state, "stripe": {"customers": []}}  # kept, checked above
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
    held = before[HELD]
    say(
        "sandbox confirms: Stripe customers deleted, Twilio messages, calls and profiles gone, "
        f"Segment regulations FINISHED; {EXEMPTED}'s disputed Stripe customer received no write; "
        f"{HELD} (on hold) untouched: {len(held['stripe']['customers'])} Stripe customer(s), "
        f"{held['twilio']['messages']} message(s), {held['twilio']['calls']} call(s) still there"
    )
    return True


if __name__ == "__main__":
    sys.exit(main())
