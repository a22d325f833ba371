"""The ``gdpr-erasure`` command line: operate the compliance store and the API sandbox."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys

SANDBOX_MISSING = "the API sandbox is not installed here: install gdpr-erasure[sandbox]"


def _cmd_sandbox_serve(args: argparse.Namespace) -> int:
    # The sandbox is a distribution of its own (the extra gdpr-erasure[sandbox]), not in the
    # production image: imported only here, and its absence is one line.
    try:
        from sandbox.server import serve
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "sandbox":
            raise
        print(f"sandbox serve: {SANDBOX_MISSING}", file=sys.stderr)
        return 2

    return serve(
        host=args.host,
        port=args.port,
        seed=args.seed,
        people=args.people,
        faults=args.fault,
        regulation_seconds=args.regulation_seconds,
        allow_non_loopback=args.allow_non_loopback,
        limits=args.limit,
    )


def _cmd_deploy_init(args: argparse.Namespace) -> int:
    """airflow-init's steps after the migration (gdpr_erasure.deploy), from the environment."""
    from gdpr_erasure.deploy import STEPS, DeployError, run

    steps = STEPS if not args.only else [step for part in args.only for step in part.split(",") if step]
    try:
        run(steps=steps)
    except DeployError as exc:
        print(f"deploy init: {exc}", file=sys.stderr)
        return 1
    print(f"deploy init: done ({', '.join(s for s in STEPS if s in steps)})")
    return 0


def _statuses():
    from gdpr_erasure.store import RequestStatus

    return list(RequestStatus)


def _open_store(args: argparse.Namespace):
    """The existing store: reading commands never create one (StoreMissing: one line, exit 2)."""
    from gdpr_erasure.store import ComplianceStore

    return ComplianceStore.open_existing(args.db_url)


def _cmd_db_init(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import DBAPIError

    from gdpr_erasure.store import ComplianceStore
    from gdpr_erasure.store.privileges import is_permission_denied

    store = ComplianceStore.from_url(args.db_url)  # the one command that creates the store
    try:
        store.init_db()
    except DBAPIError as exc:
        if not is_permission_denied(exc):
            raise
        # The pipeline's role owns nothing (docs/deployment.md): it may not create or change the
        # schema, triggers included. Nothing was changed (one transaction).
        print(
            f"db init: permission denied as {store.engine.url.username or 'this role'} "
            f"({str(exc.orig).splitlines()[0]}): run db init as the compliance store's owner "
            "(COMPLIANCE_DB_OWNER), not the pipeline's role",
            file=sys.stderr,
        )
        store.dispose()
        return 1
    print(f"compliance store ready: {store.engine.url.render_as_string(hide_password=True)}")
    print(f"schema version {store.schema_version()}, backend {store.dialect}")
    return 0


def _cmd_db_grant(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    from gdpr_erasure.store import ComplianceStore
    from gdpr_erasure.store.engine import resolve_db_url
    from gdpr_erasure.store.privileges import (
        SQLITE_NO_ROLES,
        PrivilegeError,
        grant_pipeline_privileges,
        is_permission_denied,
    )

    url = make_url(resolve_db_url(args.db_url))
    if url.get_backend_name() != "postgresql":  # before opening it: SQLite would create the file
        print(f"db grant: {SQLITE_NO_ROLES}", file=sys.stderr)
        return 2
    store = ComplianceStore.from_url(url.render_as_string(hide_password=False))
    try:
        report = grant_pipeline_privileges(store.engine, args.role)
    except PrivilegeError as exc:
        print(f"db grant: {exc}", file=sys.stderr)
        return 1
    except DBAPIError as exc:
        if not is_permission_denied(exc):
            raise
        print(
            f"db grant: permission denied as {url.username or 'this role'} "
            f"({str(exc.orig).splitlines()[0]}): run db grant as the compliance store's owner",
            file=sys.stderr,
        )
        return 1
    finally:
        store.dispose()
    for statement in report.statements:
        print(statement)
    print(f"{report.role}: exactly the pipeline's privileges on schema {report.schema}, and owns nothing")
    return 0


def _cmd_db_status(args: argparse.Namespace) -> int:
    store = _open_store(args)
    counts = store.counts_by_status()
    report = store.verify_audit_chain()
    width = max((len(k) for k in counts), default=6)
    for status, count in sorted(counts.items()):
        print(f"{status:<{width}}  {count}")
    if counts.get("deferred"):
        # Waiting for a provider's quota (Segment's monthly regulations): not a failure.
        due = store.deferred_requests(limit=1)[0].not_before
        print(f"deferred requests wait for a provider's quota: next due {due:%Y-%m-%d %H:%M:%S} UTC")
    print(f"audit records: {report.checked}, chain {'intact' if report.ok else 'BROKEN'}")
    return 0 if report.ok else 1


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    """The hash chain, the Merkle tree against every stored and published signed head, and the
    requests against the records (gdpr_erasure.ledger)."""
    from gdpr_erasure.ledger.commands import cmd_audit_verify
    from gdpr_erasure.ledger.heads import LedgerError

    try:
        return cmd_audit_verify(args, _open_store(args))
    except LedgerError as exc:
        print(f"audit verify: {exc}", file=sys.stderr)
        return 1


def _cmd_audit_public_key(args: argparse.Namespace) -> int:
    from gdpr_erasure.ledger.heads import LEDGER_KEY_CONN_ID, LedgerError, load_ledger_key

    try:
        key = load_ledger_key()
    except (LedgerError, ValueError) as exc:
        print(f"audit public-key: {exc}", file=sys.stderr)
        return 1
    if key is None:
        print(f"audit public-key: no {LEDGER_KEY_CONN_ID} connection (docs/ledger.md)", file=sys.stderr)
        return 1
    sys.stdout.write(key.public_pem())
    return 0


def _cmd_audit_head(args: argparse.Namespace) -> int:
    from gdpr_erasure.ledger.commands import cmd_audit_head
    from gdpr_erasure.ledger.heads import LedgerError

    try:
        return cmd_audit_head(args, _open_store(args))
    except (LedgerError, ValueError) as exc:
        print(f"audit head: {exc}", file=sys.stderr)
        return 1


def _cmd_audit_export(args: argparse.Namespace) -> int:
    import json

    from gdpr_erasure.ledger.export import period_summary, write_export

    store = _open_store(args)
    if args.summary:
        print(json.dumps(period_summary(store, args.since, args.until), indent=2))
        return 0
    write_export(store.audit_entries_between(args.since, args.until), args.format, sys.stdout)
    return 0


def _utc_date(value: str):
    """An ISO date or datetime from the command line, read as UTC when it has no zone."""
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date: {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _cmd_pools_create(args: argparse.Namespace) -> int:
    from gdpr_erasure.pools import POOLS, create_pools

    for name in create_pools():
        print(f"pool {name}: {POOLS[name][0]} slots")
    return 0


def _cmd_requests_list(args: argparse.Namespace) -> int:
    from gdpr_erasure.store import RequestStatus

    statuses = [RequestStatus(s) for s in args.status] if args.status else None
    rows = _open_store(args).list_requests(statuses, limit=args.limit)
    print(
        f"{'request':<40} {'status':<25} {'attempts':>8} {'failures':>8}  received            "
        f"  not before (UTC)       reason"
    )
    for r in rows:
        # not_before: a deferred request waits for a provider's quota; no run takes it earlier.
        not_before = f"{r.not_before:%Y-%m-%d %H:%M:%S}" if r.not_before else ""
        print(
            # 25: completed_with_exemptions, the longest status, keeps the columns aligned.
            f"{r.id:<40} {r.status.value:<25} {r.attempts:>8} {r.failures:>8}  "
            f"{r.received_at:%Y-%m-%d %H:%M:%S}   {not_before:<19}    {r.last_error or ''}"
        )
    print(f"{len(rows)} request(s)")
    return 0


def airflow_ui_url(path: str) -> str:
    """``path`` in the Airflow UI, from Airflow's ``[api] base_url`` (where people reach it)."""
    from airflow.configuration import conf

    base = (conf.get("api", "base_url", fallback="") or "http://localhost:8080").rstrip("/")
    return f"{base}/{path.lstrip('/')}"


def _cmd_requests_show(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    from gdpr_erasure.auditor.drilldown import request_view, task_log_path

    view = request_view(_open_store(args), args.request_id)
    if view is None:
        print(f"requests show: no request {args.request_id!r} in the store or the ledger", file=sys.stderr)
        return 2
    runs = [
        {
            "what": what,
            "dag_id": dag_id,
            "run_id": run_id,
            "url": airflow_ui_url(f"dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"),
        }
        for what, dag_id, run_id in view.runs
    ]

    def log(ran) -> dict[str, object] | None:
        """Where a step (or the record) ran, and its task log in the Airflow UI."""
        if ran is None:
            return None
        return {
            "dag_id": ran.dag_id,
            "task_id": ran.task_id,
            "dag_run_id": ran.run_id,
            "map_index": ran.map_index,
            "try_number": ran.try_number,
            "url": airflow_ui_url(task_log_path(ran)),
        }

    status = (
        view.request.status.value
        if view.request
        else (view.entry.record.get("outcome") if view.entry else "")
    )
    shown = {
        "request_id": view.request_id,
        "status": status,
        "identifier_types": view.identifier_types,
        "identifiers_hash": view.identifiers_hash,
        "hash_key_id": view.hash_key_id,
        "timeline": [
            {
                "at": e.at.isoformat() if e.at else None,
                "what": e.what,
                "outcome": e.outcome,
                "tries": e.tries,
                "detail": e.detail,
                "log": log(e.log),
            }
            for e in view.timeline
        ],
        "evidence": [{"system": s.title, "done": s.done, "proven": s.proven} for s in view.evidence],
        "kept": view.kept,
        "ledger": (
            {
                "seq": view.entry.seq,
                "record_hash": view.entry.record_hash,
                "covered_by_signed_head": view.covered_by_head,
            }
            if view.entry
            else None
        ),
        "runs": runs,
        "record_log": log(view.record_log),
    }
    if args.json:
        print(json.dumps(shown, indent=2, default=str))
        return 0
    print(f"request {view.request_id}: {status}")
    hashed = (
        f"keyed hash {view.identifiers_hash[:16]}… (key {view.hash_key_id or 'unknown'})"
        if view.identifiers_hash
        else "not hashed yet (the store keeps them until the request is closed)"
    )
    print(f"  identifiers: {', '.join(view.identifier_types) or 'none'}; {hashed}")
    print("timeline")
    for e, shown_event in zip(view.timeline, shown["timeline"], strict=True):
        at = f"{e.at:%Y-%m-%d %H:%M:%S}" if e.at else " " * 19
        tries = f" tries {e.tries}" if e.tries else ""
        detail = f"  ({e.detail})" if e.detail else ""
        print(f"  {at}  {e.what}: {e.outcome}{tries}{detail}")
        if shown_event["log"]:
            print(f"  {'':19}    log: {shown_event['log']['url']}")
    for section in view.evidence:
        print(section.title)
        for label, value in section.done:
            print(f"  {label}: {value}")
        for label, value in section.proven:
            print(f"  proof  {label}: {value}")
    for line in view.kept:
        print(f"kept  {line}")
    if shown["ledger"]:
        ledger = shown["ledger"]
        head = (
            "covered by the latest signed head"
            if ledger["covered_by_signed_head"]
            else "not yet in a signed head"
        )
        print(f"ledger  seq {ledger['seq']}, record hash {ledger['record_hash'][:16]}…, {head}")
    for run in runs:
        print(f"{run['what']}: {run['url']}")
    if shown["record_log"]:
        print(f"Audit record written, task log: {shown['record_log']['url']}")
    return 0


def _cmd_requeue(args: argparse.Namespace) -> int:
    from gdpr_erasure.store import InvalidTransition, RequestNotFound

    store = _open_store(args)
    code = 0
    for request_id in args.request_ids:
        try:
            request = store.requeue(request_id)
        except (InvalidTransition, RequestNotFound) as exc:
            print(f"{request_id}: not requeued: {exc}", file=sys.stderr)
            code = 1
            continue
        print(f"{request.id}: {request.status.value}; the next run will pick it up")
    return code


def _cmd_receipt_issue(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gdpr_erasure.ledger.commands import issue_receipt
    from gdpr_erasure.ledger.entries import CLOSED_OUTCOMES
    from gdpr_erasure.ledger.heads import LedgerError
    from gdpr_erasure.receipts import dumps, load_signing_key
    from gdpr_erasure.store.chain import ERASURE

    store = _open_store(args)
    key = load_signing_key()
    entries = store.audit_entries() if args.all else [e for e in [store.audit_entry(args.request_id)] if e]
    if not entries:
        print(f"no audit record for {args.request_id}", file=sys.stderr)
        return 1
    out_dir = Path(args.out_dir) if args.out_dir else None
    for entry in entries:
        # A receipt per request closed (with exemptions or not), from its erasure record; its
        # reviews and the legal holds' entries are no requests of their own.
        if entry.kind != ERASURE or entry.record.get("outcome") not in CLOSED_OUTCOMES:
            continue
        try:  # the latest entry's inclusion proof and signed head, so the receipt verifies offline
            document = dumps(issue_receipt(store, entry, key))
        except LedgerError as exc:
            print(f"receipt issue: {exc}", file=sys.stderr)
            return 1
        if out_dir is None:
            sys.stdout.write(document)
        else:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / f"{entry.request_id}.receipt.json").write_text(document)
            print(f"{out_dir / (entry.request_id + '.receipt.json')}")
    return 0


def _cmd_receipt_verify(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from gdpr_erasure.ledger.commands import public_keys, verify_receipt_ledger
    from gdpr_erasure.ledger.heads import LedgerError
    from gdpr_erasure.receipts import ReceiptError, receipt_lines, verify_receipt

    public_pem = Path(args.public_key).read_text()
    try:
        content = verify_receipt(json.loads(Path(args.file).read_text()), public_pem)
        keys = public_keys(args.ledger_public_key or args.public_key)
        proven = verify_receipt_ledger(content, keys, args.head)
    except (ReceiptError, LedgerError, ValueError) as exc:
        print(f"INVALID: {exc}", file=sys.stderr)
        return 1
    print(
        f"valid receipt for {content['request_id']} (audit seq {content['audit']['seq']}, "
        f"completed {content['completed_at']}): {proven}"
    )
    for line in receipt_lines(content):  # the outcome, what was kept and why, the reviews
        print(line)
    return 0


def _cmd_receipt_public_key(args: argparse.Namespace) -> int:
    from gdpr_erasure.receipts import load_signing_key

    sys.stdout.write(load_signing_key().public_pem())
    return 0


def _cmd_roles_sync(args: argparse.Namespace) -> int:
    from gdpr_erasure.auditor.roles import RolesError, sync_auditor_role

    try:
        sync = sync_auditor_role(role=args.role, resource=args.resource)
    except RolesError as exc:
        print(f"roles sync: {exc}", file=sys.stderr)
        return 2
    for action, resource in sync.removed:
        print(f"removed from {sync.role}: {action} on {resource} (auditors write nothing)")
    state = "created" if sync.created else "up to date" if not sync.added else "updated"
    print(
        f"{sync.role}: {state} ({len(sync.added)} permissions added, {len(sync.removed)} removed); "
        f"reads what Viewer reads, plus can_read on {args.resource!r}"
        + ("; Admin granted it too" if sync.admin_granted else "")
    )
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    """The preflight: a table of read-only checks; exit 1 if any failed."""
    import json

    from gdpr_erasure.preflight import format_table, run_preflight

    results = run_preflight(db_url=args.db_url, include_intake=not args.skip_intake)
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        print(format_table(results))
    failed = [r for r in results if not r.ok]
    if failed:
        print(
            f"{len(failed)} of {len(results)} check(s) failed: fix them before a run claims requests",
            file=sys.stderr,
        )
        return 1
    return 0


def _cmd_hash(args: argparse.Namespace) -> int:
    """Print the tag of each Stripe customer id read from stdin (one a line) or a hidden prompt,
    so ops can find it in the audit export, receipts and task logs. The id is never an argument:
    it would stay in the shell history."""
    import getpass

    from gdpr_erasure.hashing import MissingHashKey, keyed_hash, load_hash_key, tag_of_hmac

    if args.stripe_customer is not True:
        print(
            "gdpr-erasure hash: do not pass the id as an argument (it stays in the shell history): "
            "pipe it in or answer the prompt",
            file=sys.stderr,
        )
        return 2
    if sys.stdin.isatty():
        ids = [getpass.getpass("Stripe customer id (not shown): ")]
    else:
        ids = sys.stdin.read().split()
    ids = [i.strip() for i in ids if i.strip()]
    if not ids:
        print("gdpr-erasure hash: no id given", file=sys.stderr)
        return 2
    try:
        key = load_hash_key()
    except MissingHashKey as exc:
        print(f"gdpr-erasure hash: {exc}", file=sys.stderr)
        return 1
    for customer_id in ids:
        full = keyed_hash(key, customer_id)
        # The tag and the full hash, never the id: this output may be pasted into a ticket.
        print(f"{tag_of_hmac(full)}  hmac={full}  key_id={key.key_id}")
    return 0


def _hold_identifier(kind: str) -> str:
    """The email or phone a hold names, from stdin (one line) or a hidden prompt, as ``hash``
    reads ids: never an argument, which would stay in the shell history."""
    import getpass

    if sys.stdin.isatty():
        return getpass.getpass(f"{'Email address' if kind == 'email' else 'Phone number'} (not shown): ")
    values = [line for line in sys.stdin.read().splitlines() if line.strip()]
    if len(values) > 1:
        raise ValueError(f"one {kind} per hold: give one line")
    return values[0] if values else ""


def _hold_by(args: argparse.Namespace) -> str:
    """Who places or releases a hold: ``--by``, else the OS user ("" when it cannot tell)."""
    import getpass

    if args.by:
        return args.by
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no USER and no passwd entry (a bare container)
        return ""


def _cmd_hold_place(args: argparse.Namespace) -> int:
    """Place a legal hold on a request, or on a person by email or phone (read like ``hash``)."""
    from datetime import date

    from gdpr_erasure.hashing import MissingHashKey
    from gdpr_erasure.holds import HoldError, place_hold

    given = [name for name in ("request", "email", "phone") if getattr(args, name) is not None]
    if len(given) != 1:
        print("hold place: name exactly one of --request ID, --email or --phone", file=sys.stderr)
        return 2
    kind = given[0]
    if kind != "request" and getattr(args, kind) is not True:
        print(
            f"hold place: do not pass the {kind} as an argument (it stays in the shell history): "
            "pipe it in or answer the prompt",
            file=sys.stderr,
        )
        return 2
    try:
        until = date.fromisoformat(args.until) if args.until else None
    except ValueError:
        print(f"hold place: --until must be a date, YYYY-MM-DD, not {args.until!r}", file=sys.stderr)
        return 2
    store = _open_store(args)
    try:
        value = _hold_identifier(kind) if kind != "request" else args.request
        if not value.strip():
            print(f"hold place: no {kind} given", file=sys.stderr)
            return 2
        change = place_hold(
            store,
            reason=args.reason,
            placed_by=_hold_by(args),
            until=until,
            **{"request_id" if kind == "request" else kind: value},
        )
    except (HoldError, ValueError) as exc:
        print(f"hold place: {exc}", file=sys.stderr)
        return 2
    except MissingHashKey as exc:
        print(f"hold place: {exc}", file=sys.stderr)
        return 1
    hold = change.hold
    print(hold.hold_id)  # alone on stdout, for scripts: HOLD=$(gdpr-erasure hold place ...)
    print(
        f"placed on {hold.target_label}{f' until {hold.until}' if hold.until else ''}; "
        f"{len(change.requests)} request(s) now on_hold; audit ledger seq {change.entry.seq}",
        file=sys.stderr,
    )
    return 0


def _cmd_hold_release(args: argparse.Namespace) -> int:
    from gdpr_erasure.hashing import MissingHashKey
    from gdpr_erasure.holds import HoldError, release_hold
    from gdpr_erasure.store import HoldNotActive, HoldNotFound

    store = _open_store(args)
    try:
        change = release_hold(store, args.hold_id, reason=args.reason, released_by=_hold_by(args))
    except HoldError as exc:
        print(f"hold release: {exc}", file=sys.stderr)
        return 2
    except (HoldNotFound, HoldNotActive, MissingHashKey) as exc:
        print(f"hold release: {exc} (gdpr-erasure hold list --all shows every hold)", file=sys.stderr)
        return 1
    back = f": {', '.join(change.requests)}" if change.requests else ""
    print(
        f"{change.hold.hold_id} released; {len(change.requests)} request(s) back to pending{back}; "
        f"audit ledger seq {change.entry.seq}"
    )
    return 0


def _cmd_hold_list(args: argparse.Namespace) -> int:
    """Holds and what they hold: a request id, or the identifier's type and a hash prefix."""
    from collections import Counter

    from gdpr_erasure.store import RequestStatus
    from gdpr_erasure.store.store import ON_HOLD_REASON

    store = _open_store(args)
    holds = store.list_holds(include_inactive=args.all)
    held = Counter(r.last_error for r in store.list_requests([RequestStatus.ON_HOLD], limit=100_000))
    rows = [
        {
            "hold_id": h.hold_id,
            "state": h.state(),
            "target_type": h.target_type,
            "request_id": h.target if h.target_type == "request" else None,
            "hash_prefix": None if h.target_type == "request" else h.target[:12],
            "hash_key_id": h.hash_key_id,
            "holding": held.get(ON_HOLD_REASON.format(hold_id=h.hold_id), 0),
            "reason": h.reason,
            "until": h.until.isoformat() if h.until else None,
            "placed_at": h.placed_at.isoformat(),
            "placed_by": h.placed_by,
            "released_at": h.released_at.isoformat() if h.released_at else None,
            "released_by": h.released_by,
            "release_reason": h.release_reason,
        }
        for h in holds
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'hold':<22} {'state':<9} {'target':<40} {'until':<10}  {'holding':>7}  placed (UTC)         by")
    for h, row in zip(holds, rows, strict=True):
        print(
            f"{h.hold_id:<22} {row['state']:<9} {h.target_label:<40} {row['until'] or '-':<10}  "
            f"{row['holding']:>7}  {h.placed_at:%Y-%m-%d %H:%M:%S}  {h.placed_by}"
        )
        print(f"{'':22} reason: {h.reason}")
    print(f"{len(holds)} hold(s){'' if args.all else ' active (--all: expired and released too)'}")
    return 0


def _db_url_after(parser: argparse.ArgumentParser) -> None:
    """``--db-url`` after the subcommand too (``audit head --db-url URL``), as scripts write it;
    SUPPRESS keeps a value given before the subcommand."""
    parser.add_argument("--db-url", default=argparse.SUPPRESS, help="SQLAlchemy URL of the compliance store")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gdpr-erasure", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    db = commands.add_parser("db", help="the compliance store")
    db.add_argument(
        "--db-url",
        help="SQLAlchemy URL (default: $GDPR_COMPLIANCE_DB_URL, the compliance_db connection, "
        "or SQLite under $AIRFLOW_HOME)",
    )
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_init = db_commands.add_parser("init", help="create tables and triggers (idempotent)")
    db_init.set_defaults(func=_cmd_db_init)
    db_status = db_commands.add_parser("status", help="requests per status and the audit chain")
    db_status.set_defaults(func=_cmd_db_status)
    grant = db_commands.add_parser(
        "grant",
        help="as the store's owner: give ROLE (the pipeline's, in compliance_db) exactly what the "
        "pipeline needs, and check it owns nothing (PostgreSQL; idempotent; rerun after db init)",
    )
    grant.add_argument("role", metavar="ROLE", help="the pipeline's PostgreSQL role")
    grant.set_defaults(func=_cmd_db_grant)
    for sub in (db_init, db_status, grant):
        _db_url_after(sub)

    check = commands.add_parser(
        "check", help="prove every connection works and has the permissions the pipeline needs (read-only)"
    )
    check.add_argument("--db-url", help="SQLAlchemy URL of the compliance store (see 'db --help')")
    check.add_argument("--json", action="store_true", help="print the results as JSON")
    check.add_argument(
        "--skip-intake", action="store_true", help="do not check the intake's signing secret (gdpr_intake)"
    )
    check.set_defaults(func=_cmd_check)

    requests_cmd = commands.add_parser("requests", help="erasure requests in the intake table")
    requests_cmd.add_argument("--db-url", help="SQLAlchemy URL of the compliance store (see 'db --help')")
    requests_sub = requests_cmd.add_subparsers(dest="requests_command", required=True)
    listing = requests_sub.add_parser("list", help="requests with status, attempts and last reason")
    listing.add_argument("--status", action="append", choices=[s.value for s in _statuses()])
    listing.add_argument("--limit", type=int, default=1000)
    listing.set_defaults(func=_cmd_requests_list)
    _db_url_after(listing)
    show = requests_sub.add_parser(
        "show",
        help="one request: its timeline, evidence and ledger position, and links to its runs and task logs",
    )
    show.add_argument("request_id", metavar="ID")
    show.add_argument("--json", action="store_true", help="the same as JSON, for scripts")
    show.set_defaults(func=_cmd_requests_show)
    _db_url_after(show)

    requeue = commands.add_parser(
        "requeue", help="send needs_attention/failed/deferred requests back to pending"
    )
    requeue.add_argument("--db-url", help="SQLAlchemy URL of the compliance store (see 'db --help')")
    requeue.add_argument("request_ids", nargs="+", metavar="ID")
    requeue.set_defaults(func=_cmd_requeue)

    roles = commands.add_parser("roles", help="Airflow roles (FAB auth manager)")
    roles_sync = roles.add_subparsers(dest="roles_command", required=True).add_parser(
        "sync",
        help="create or repair the Auditor role: Viewer's reads plus the GDPR audit, no writes (idempotent)",
    )
    roles_sync.add_argument("--role", default="Auditor", help="the auditors' role (default: Auditor)")
    roles_sync.add_argument(
        "--resource",
        default=os.environ.get("GDPR_AUDITOR_RESOURCE") or "GDPR Audit",
        help="the custom view the auditor page checks (default: $GDPR_AUDITOR_RESOURCE or 'GDPR Audit')",
    )
    roles_sync.set_defaults(func=_cmd_roles_sync)

    deploy = commands.add_parser(
        "deploy", help="set up a deployment (what the compose file's airflow-init runs)"
    )
    deploy_init = deploy.add_subparsers(dest="deploy_command", required=True).add_parser(
        "init",
        help="after `airflow db migrate` and `roles sync`: the compliance database and its owner and "
        "pipeline roles, the connections, the users, db init and the grant; reads the airflow-init "
        "service's environment (docs/deployment.md); idempotent",
    )
    deploy_init.add_argument(
        "--only",
        action="append",
        metavar="STEP[,STEP]",
        help="run only these steps of database, connections, users, store (default: all, in that order)",
    )
    deploy_init.set_defaults(func=_cmd_deploy_init)

    pools = commands.add_parser("pools", help="Airflow pools sized to the providers' rate limits")
    pools.add_subparsers(dest="pools_command", required=True).add_parser(
        "create", help="create or resize stripe_api, twilio_api, segment_api"
    ).set_defaults(func=_cmd_pools_create)

    audit = commands.add_parser("audit", help="the audit ledger")
    audit.add_argument("--db-url", help="SQLAlchemy URL of the compliance store (see 'db --help')")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    audit_verify = audit_commands.add_parser(
        "verify",
        help="check the hash chain, the Merkle tree against every signed head, and requests against "
        "records; exit 1 naming any break",
    )
    audit_verify.add_argument(
        "--head", action="append", metavar="FILE", help="a signed head kept elsewhere (repeatable)"
    )
    audit_verify.add_argument(
        "--witness",
        metavar="URI",
        help="where heads are published (default: the gdpr_ledger_witness connection)",
    )
    audit_verify.add_argument(
        "--public-key", metavar="PEM", help="the ledger's public key (default: from gdpr_ledger_key)"
    )
    audit_verify.set_defaults(func=_cmd_audit_verify)
    _db_url_after(audit_verify)
    head = audit_commands.add_parser("head", help="print the latest signed tree head as JSON")
    head.add_argument(
        "--from-size", type=int, metavar="N", help="also prove that the head extends the tree of size N"
    )
    head.set_defaults(func=_cmd_audit_head)
    _db_url_after(head)
    audit_commands.add_parser(
        "public-key", help="print the ledger's public key (PEM) for auditors and witnesses"
    ).set_defaults(func=_cmd_audit_public_key)
    export = audit_commands.add_parser("export", help="print audit records for auditors")
    export.add_argument("--format", choices=["json", "csv"], default="json")
    export.add_argument("--since", type=_utc_date, help="records written at or after this date (UTC)")
    export.add_argument("--until", type=_utc_date, help="records written before this date (UTC)")
    export.add_argument(
        "--summary", action="store_true", help="print counts, time to complete and overdue requests instead"
    )
    export.set_defaults(func=_cmd_audit_export)
    _db_url_after(export)

    receipt = commands.add_parser("receipt", help="signed erasure receipts (Ed25519)")
    receipt.add_argument("--db-url", help="SQLAlchemy URL of the compliance store (see 'db --help')")
    receipt_sub = receipt.add_subparsers(dest="receipt_command", required=True)
    issue = receipt_sub.add_parser(
        "issue", help="sign a receipt for a completed request (with exemptions or not)"
    )
    target = issue.add_mutually_exclusive_group(required=True)
    target.add_argument("request_id", nargs="?", help="the request")
    target.add_argument("--all", action="store_true", help="every completed request")
    issue.add_argument("--out-dir", help="write <request_id>.receipt.json files here instead of stdout")
    issue.set_defaults(func=_cmd_receipt_issue)
    _db_url_after(issue)
    verify = receipt_sub.add_parser("verify", help="check a receipt offline; exit 1 if invalid")
    verify.add_argument("file")
    verify.add_argument("--public-key", required=True, help="PEM file of the signer's public key")
    verify.add_argument(
        "--ledger-public-key", metavar="PEM", help="the ledger's public key (default: --public-key)"
    )
    verify.add_argument(
        "--head",
        metavar="FILE",
        help="a later signed head (from audit head --from-size N): the receipt fails if it does not extend",
    )
    verify.set_defaults(func=_cmd_receipt_verify)
    receipt_sub.add_parser("public-key", help="print the public key (PEM) to give to verifiers").set_defaults(
        func=_cmd_receipt_public_key
    )

    sandbox = commands.add_parser("sandbox", help="local emulator of the Stripe, Twilio and Segment APIs")
    sandbox_commands = sandbox.add_subparsers(dest="sandbox_command", required=True)
    serve = sandbox_commands.add_parser("serve", help="run the sandbox on 127.0.0.1")
    serve.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8999, help="TCP port (0 picks a free one)")
    serve.add_argument("--seed", type=int, default=1, help="random seed for the generated people")
    serve.add_argument("--people", type=int, default=20, help="how many generated people to seed")
    serve.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="API:KNOB=VALUE",
        help="fault knob, e.g. stripe:rate_429=0.2 or twilio:latency_ms=100 (repeatable)",
    )
    serve.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="API:LIMIT=VALUE",
        help="provider limit, e.g. stripe:rate=25 (per second) or twilio:concurrency=10 (repeatable)",
    )
    serve.add_argument(
        "--regulation-seconds",
        type=float,
        default=3.0,
        help="how long a Segment regulation takes from INITIALIZED to FINISHED",
    )
    serve.add_argument(
        "--allow-non-loopback",
        action="store_true",
        help="also bind a non-loopback --host (a private container network only; never a public one)",
    )
    serve.set_defaults(func=_cmd_sandbox_serve)

    hold = commands.add_parser(
        "hold", help="legal holds: requests or people (by keyed hash) that must not be erased yet"
    )
    hold.add_argument("--db-url", help="SQLAlchemy URL of the compliance store (see 'db --help')")
    hold_sub = hold.add_subparsers(dest="hold_command", required=True)
    hold_place = hold_sub.add_parser(
        "place",
        help="hold one request, or one person by email or phone (read from stdin or a hidden prompt, "
        "never an argument); prints the hold id",
    )
    hold_place.add_argument("--request", metavar="ID", help="the request to hold")
    for hold_kind in ("email", "phone"):
        hold_place.add_argument(
            f"--{hold_kind}",
            nargs="?",
            const=True,
            metavar="",
            help=f"hold the person with this {hold_kind}: read from stdin (one line) or a hidden prompt",
        )
    hold_place.add_argument(
        "--reason", required=True, help="why (a case or ticket reference; never a name, email or phone)"
    )
    hold_place.add_argument(
        "--until", metavar="YYYY-MM-DD", help="its last day (UTC); default: until released"
    )
    hold_place.add_argument("--by", metavar="NAME", help="who places it (default: the OS user)")
    hold_place.set_defaults(func=_cmd_hold_place)
    hold_release = hold_sub.add_parser(
        "release", help="release a hold: the requests it held go back to pending (unless another holds them)"
    )
    hold_release.add_argument("hold_id", metavar="HOLD_ID")
    hold_release.add_argument("--reason", required=True, help="why it is released")
    hold_release.add_argument("--by", metavar="NAME", help="who releases it (default: the OS user)")
    hold_release.set_defaults(func=_cmd_hold_release)
    hold_list = hold_sub.add_parser(
        "list", help="active holds: request id, or identifier type and keyed-hash prefix; never an identifier"
    )
    hold_list.add_argument("--all", action="store_true", help="expired and released holds too")
    hold_list.add_argument("--json", action="store_true", help="as JSON, for scripts")
    hold_list.set_defaults(func=_cmd_hold_list)
    for sub in (hold_place, hold_release, hold_list):
        _db_url_after(sub)

    hash_cmd = commands.add_parser(
        "hash", help="the tag of a Stripe customer id, as the audit export, receipts and logs show it"
    )
    hash_cmd.add_argument(
        "--stripe-customer",
        nargs="?",
        const=True,
        required=True,
        metavar="",
        help="read cus_ ids from stdin (one a line) or a hidden prompt; print 'cus#<12 hex>  hmac=...'",
    )
    hash_cmd.set_defaults(func=_cmd_hash)

    from gdpr_erasure.intake.cli import register_commands as register_intake_commands

    register_intake_commands(commands)
    from gdpr_erasure.policy.cli import register_commands as register_policy_commands

    register_policy_commands(commands)
    return parser


_LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z?\s+\[\s*\w+\s*\]\s*")
DEBUG_VARIABLE = "GDPR_ERASURE_DEBUG"  # set to 1 for the traceback behind a one-line error


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from gdpr_erasure.store import StoreMissing

    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into head & co.
        return 0
    except StoreMissing as exc:
        print(f"gdpr-erasure: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gdpr-erasure: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # Every error a person sees is one line with what to do next, never a traceback.
        if os.environ.get(DEBUG_VARIABLE):
            raise
        print(f"gdpr-erasure {_command_name(args)}: {explain(exc)}", file=sys.stderr)
        return 1


def _command_name(args: argparse.Namespace) -> str:
    words = [args.command]
    for name, value in vars(args).items():
        if name.endswith("_command") and isinstance(value, str):
            words.append(value)
    return " ".join(words)


def explain(exc: BaseException) -> str:
    """One line for an error no command handled itself: what went wrong and what to do next,
    scrubbed of identifiers (an exception text may quote a provider's answer)."""
    from gdpr_erasure.pii import scrub

    name = type(exc).__name__
    text = " ".join(str(exc).split())
    if name == "AirflowNotFoundException" and "conn_id" in text:
        hint = "create that Airflow connection (docs/deployment.md lists each one)"
    elif isinstance(exc, subprocess.CalledProcessError):
        command = " ".join(str(part) for part in exc.cmd[:4]) if isinstance(exc.cmd, list) else str(exc.cmd)
        output = exc.stderr or exc.output or ""
        output = output.decode(errors="replace") if isinstance(output, bytes) else output
        last = next((line.strip() for line in reversed(output.splitlines()) if line.strip()), "")
        last = _LOG_PREFIX.sub("", last)  # Airflow's "<timestamp> [error    ] " before the message
        text = f"{command} ... exited with status {exc.returncode}" + (f": {last}" if last else "")
        hint = "fix what it says, or run it by hand to see all its output"
    elif isinstance(exc, PermissionError | FileNotFoundError | IsADirectoryError):
        hint = "check the path and its permissions"
    else:
        hint = f"set {DEBUG_VARIABLE}=1 and run it again for the traceback"
    return f"{scrub(text)[:500] or name} ({name}): {hint}"


if __name__ == "__main__":
    sys.exit(main())
