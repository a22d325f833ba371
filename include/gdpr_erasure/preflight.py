"""The preflight: prove every system is configured before a run claims anything.

A provider's "no profile", "not found" or "nothing listed" is indistinguishable from a wrong
token, space, store or external id type. A run that started with such a connection would erase
nothing in that system and still record the request as handled there. So ``gdpr-erasure check``
and the DAG's first task run the same read-only checks, and a run with a failing check claims
nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from gdpr_erasure.hooks.checks import CheckFailed, CheckResult, run_check


def check_store(db_url: str | None = None, conn_id: str | None = None) -> CheckResult:
    """The compliance store is reachable and at the schema this code writes. Never creates it."""
    from sqlalchemy.engine import make_url

    from gdpr_erasure.store import ComplianceStore, StoreMissing
    from gdpr_erasure.store.engine import DEFAULT_CONN_ID, resolve_db_url
    from gdpr_erasure.store.schema import SCHEMA_VERSION

    def check() -> str:
        url = resolve_db_url(db_url, conn_id=conn_id or DEFAULT_CONN_ID)
        where = make_url(url).render_as_string(hide_password=True)
        try:
            store = ComplianceStore.open_existing(url, pre_ping=False)
        except StoreMissing as missing:
            raise CheckFailed(str(missing)) from None
        try:
            version = store.schema_version()
        finally:
            store.dispose()
        if version != SCHEMA_VERSION:
            raise CheckFailed(
                f"compliance store at {where} is at schema {version}, this code needs {SCHEMA_VERSION}: "
                "run gdpr-erasure db init"
            )
        return f"{where} at schema {version}"

    return run_check("store", "compliance store", check)


def check_hash_key() -> CheckResult:
    from gdpr_erasure.hashing import load_hash_key

    def check() -> str:
        try:
            key = load_hash_key()
        except Exception as exc:  # MissingHashKey says what to set; never the key itself
            raise CheckFailed(str(exc)) from None
        return f"key id {key.key_id}, {len(key.secret)} bytes"

    return run_check("secrets", "identifier hash key", check)


def check_intake_secret() -> CheckResult:
    from gdpr_erasure.intake.settings import INTAKE_CONN_ID, MIN_SECRET_LENGTH, load_from_airflow

    def check() -> str:
        conn_id = os.environ.get("GDPR_INTAKE_CONN_ID") or INTAKE_CONN_ID
        try:
            credentials = load_from_airflow(conn_id)
        except Exception as exc:  # IntakeNotConfigured names the connection, never the secret
            raise CheckFailed(
                f"{exc}: create it with a secret of at least {MIN_SECRET_LENGTH} characters"
            ) from None
        return (
            f"connection {conn_id}: {len(credentials.secrets)} secret(s) of {MIN_SECRET_LENGTH}+ characters"
        )

    return run_check("secrets", "intake signing secret", check)


def check_ledger() -> list[CheckResult]:
    """The tree-head signing key and the witness (docs/ledger.md): without them the ledger is
    only hash-chained, which proves nothing against the compliance database's owner."""
    from gdpr_erasure.ledger.heads import LEDGER_KEY_CONN_ID, load_ledger_key
    from gdpr_erasure.ledger.witness import WITNESS_CONN_ID, witness_from_connection

    def key() -> str:
        signing = load_ledger_key()
        if signing is None:
            raise CheckFailed(
                f"no {LEDGER_KEY_CONN_ID} connection: tree heads would not be signed; create it with an "
                "Ed25519 private key (PEM) as password and a key id as login (docs/ledger.md)"
            )
        return f"key id {signing.key_id} (Ed25519)"

    def witness() -> str:
        found = witness_from_connection()
        if found is None:
            raise CheckFailed(
                f"no {WITNESS_CONN_ID} connection: tree heads would not be published; set its extra uri "
                "to write-once storage (docs/ledger.md)"
            )
        return f"{found.uri}: {len(found.heads())} head(s) published"

    return [run_check("ledger", "tree-head signing key", key), run_check("ledger", "witness", witness)]


def provider_checks(
    *,
    stripe_conn_id: str = "stripe_default",
    twilio_conn_id: str = "twilio_default",
    segment_conn_id: str = "segment_default",
) -> list[CheckResult]:
    """Every provider connection's read-only checks (see each hook's ``checks``)."""
    from gdpr_erasure.hooks.segment import SegmentHook
    from gdpr_erasure.hooks.stripe import StripeHook
    from gdpr_erasure.hooks.twilio import TwilioHook

    hooks: list[tuple[str, Callable[[], list[CheckResult]]]] = [
        ("stripe", lambda: StripeHook(stripe_conn_id).checks()),
        ("twilio", lambda: TwilioHook(twilio_conn_id).checks()),
        ("segment", lambda: SegmentHook(segment_conn_id).checks()),
    ]
    results: list[CheckResult] = []
    for system, checks in hooks:
        try:
            results.extend(checks())
        except Exception as exc:  # a connection that cannot even build its hook
            results.append(CheckResult(system, "connection", False, _one_line(exc)))
    return results


def run_preflight(
    *,
    db_url: str | None = None,
    compliance_conn_id: str | None = None,
    include_intake: bool = True,
    stripe_conn_id: str = "stripe_default",
    twilio_conn_id: str = "twilio_default",
    segment_conn_id: str = "segment_default",
) -> list[CheckResult]:
    """All checks, store and secrets first.

    :param include_intake: check the intake's signing secret too (the CLI does; the DAG does not,
        because the intake runs in the API server and the DAG never reads that secret).
    """
    results = [check_store(db_url, compliance_conn_id), check_hash_key(), *check_ledger()]
    if include_intake:
        results.append(check_intake_secret())
    results += provider_checks(
        stripe_conn_id=stripe_conn_id, twilio_conn_id=twilio_conn_id, segment_conn_id=segment_conn_id
    )
    return results


def format_table(results: list[CheckResult]) -> str:
    """A fixed-width table: system, check, result, detail."""
    rows = [("system", "check", "result", "detail")] + [
        (r.system, r.name, "ok" if r.ok else "FAILED", r.detail) for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3]
        for row in rows
    )


def _one_line(exc: Exception) -> str:
    from gdpr_erasure.hooks.errors import ApiConfigurationError, ExternalApiError

    if isinstance(exc, ApiConfigurationError | ExternalApiError | CheckFailed):
        return str(exc).splitlines()[0]
    return f"{type(exc).__name__} while reading the connection"
