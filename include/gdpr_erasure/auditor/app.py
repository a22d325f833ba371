"""Auditor page: the audit records of a period, the chain status and the period summary.

Served by Airflow's API server through ``plugins/gdpr_auditor_plugin.py`` and linked from the
UI's Browse menu. The page is plain server-rendered HTML: no build step, nothing to go stale, and
it works in the UI's iframe.

Access. Airflow neither authenticates nor authorises plugin apps, so this one does both with
Airflow's auth manager: it reads the JWT the UI uses (the ``_token`` cookie or a bearer header;
none or an invalid one is 401), then asks the auth manager whether that user may ``GET`` the
custom view ``GDPR Audit`` (``is_authorized_custom_view``, the hook Airflow gives plugin views;
refused is 403). With the FAB or Keycloak auth manager that is a permission a role holds (FAB:
``can_read`` on ``GDPR Audit``, given to the ``Auditor`` role). The simple auth manager grants
every custom view to every role, viewer included, so under it this app decides itself: the
``admin`` role, plus the roles in ``$GDPR_AUDITOR_ROLES`` and the users in ``$GDPR_AUDITOR_USERS``
(comma-separated; both empty by default). ``$GDPR_AUDITOR_RESOURCE`` renames the resource.

No ``from __future__ import annotations`` here: FastAPI must resolve the dependency aliases
defined inside ``create_app`` at runtime.
"""

import html
import io
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response

from gdpr_erasure.audit_export import export_row, period_summary, write_export
from gdpr_erasure.store import ComplianceStore

TOKEN_COOKIE = "_token"  # the cookie Airflow's UI keeps its JWT in
DEFAULT_RESOURCE = "GDPR Audit"  # the custom view an auth manager is asked about


async def airflow_user(request: Request) -> Any:
    """The Airflow user behind the request, or 401."""
    from airflow.api_fastapi.app import get_auth_manager

    header = request.headers.get("authorization", "")
    token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else None
    token = token or request.cookies.get(TOKEN_COOKIE)
    if not token:
        raise HTTPException(401, "log in to Airflow first")
    try:
        return await get_auth_manager().get_user_from_token(token)
    except Exception:  # any invalid, expired or revoked token
        raise HTTPException(401, "invalid or expired Airflow session") from None


def _listed(variable: str) -> set[str]:
    return {item.strip().lower() for item in os.environ.get(variable, "").split(",") if item.strip()}


def may_read_audit(auth_manager: Any, user: Any) -> bool:
    """Whether ``user`` may read the auditor page, its data API and its exports (module docstring)."""
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    if isinstance(auth_manager, SimpleAuthManager):
        role = (getattr(user, "role", None) or "").lower()
        return (
            role == "admin"
            or role in _listed("GDPR_AUDITOR_ROLES")
            or user.get_name().lower() in _listed("GDPR_AUDITOR_USERS")
        )
    resource = os.environ.get("GDPR_AUDITOR_RESOURCE") or DEFAULT_RESOURCE
    return bool(auth_manager.is_authorized_custom_view(method="GET", resource_name=resource, user=user))


async def airflow_auditor(request: Request) -> Any:
    """The Airflow user behind the request if the auth manager lets them read the audit; else 401/403."""
    from airflow.api_fastapi.app import get_auth_manager

    user = await airflow_user(request)
    if not may_read_audit(get_auth_manager(), user):
        resource = os.environ.get("GDPR_AUDITOR_RESOURCE") or DEFAULT_RESOURCE
        raise HTTPException(
            403,
            f"{user.get_name()} may not read the GDPR audit ledger: it needs read access to "
            f"'{resource}' (the Auditor role; with the simple auth manager the admin role, "
            "$GDPR_AUDITOR_ROLES or $GDPR_AUDITOR_USERS)",
        )
    return user


def create_app(
    store_factory: Callable[[], ComplianceStore] = ComplianceStore.from_url,
    user_dependency: Callable[..., Any] = airflow_auditor,
) -> FastAPI:
    """The auditor app. ``store_factory`` and ``user_dependency`` are swappable for standalone use."""
    app = FastAPI(title="GDPR erasure audit", docs_url=None, redoc_url=None, openapi_url=None)
    state: dict[str, ComplianceStore] = {}

    def store() -> ComplianceStore:
        if "store" not in state:
            state["store"] = store_factory()
        return state["store"]

    User = Annotated[Any, Depends(user_dependency)]
    Since = Annotated[datetime | None, Query(description="records written at or after (UTC)")]
    Until = Annotated[datetime | None, Query(description="records written before (UTC)")]

    @app.get("/api/records")
    def records(user: User, since: Since = None, until: Until = None) -> dict[str, Any]:
        since, until = _utc(since), _utc(until)
        entries = store().audit_entries_between(since, until)
        return {"summary": period_summary(store(), since, until), "records": [export_row(e) for e in entries]}

    @app.get("/", response_class=HTMLResponse)
    def page(user: User, since: Since = None, until: Until = None) -> str:
        since, until = _utc(since), _utc(until)
        summary = period_summary(store(), since, until)
        rows = [export_row(e) for e in store().audit_entries_between(since, until)]
        return render(summary, rows, since, until)

    @app.get("/export")
    def export(
        user: User,
        since: Since = None,
        until: Until = None,
        fmt: Annotated[str, Query(alias="format", pattern="^(csv|json)$")] = "csv",
    ) -> Response:
        since, until = _utc(since), _utc(until)
        out = io.StringIO()
        write_export(store().audit_entries_between(since, until), fmt, out)
        media = "text/csv" if fmt == "csv" else "application/json"
        name = f"gdpr-audit.{fmt}"
        return Response(
            out.getvalue(),
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    return app


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def render(summary: dict[str, Any], rows: list[dict[str, Any]], since, until) -> str:
    chain = summary["audit_chain"]
    e = html.escape
    banner = (
        f'<div class="ok" id="chain-status">Audit chain intact: {chain["records"]} record(s), head '
        f"<code>{e(chain['head'][:16])}&hellip;</code></div>"
        if chain["intact"]
        else '<div class="broken" id="chain-status">Audit chain BROKEN: '
        "run <code>gdpr-erasure audit verify</code></div>"
    )
    facts = [
        ("Received", summary["received"]),
        ("Completed", summary["completed"]),
        ("Failed", summary["failed"]),
        ("Needs attention", summary["needs_attention"]),
        ("Median time to complete (h)", summary["median_time_to_complete_hours"]),
        ("Max time to complete (h)", summary["max_time_to_complete_hours"]),
        ("Completed after 30 days", summary["completed_late"]),
        ("Open and overdue", summary["open_and_overdue"]),
    ]
    cards = "".join(
        f'<div class="card"><b>{e(str(v if v is not None else "-"))}</b><span>{e(k)}</span></div>'
        for k, v in facts
    )
    columns = [
        ("seq", "#"),
        ("request_id", "Request"),
        ("received_at", "Received"),
        ("completed_at", "Completed"),
        ("stripe_customer_ids", "Stripe customers"),
        ("stripe_method", "Stripe method"),
        ("twilio_memory_profile_ids", "Twilio profiles"),
        ("twilio_messages_deleted", "Messages"),
        ("twilio_calls_deleted", "Calls"),
        ("segment_regulation_id", "Segment regulation"),
        ("segment_final_status", "Segment status"),
        ("record_hash", "Record hash"),
    ]
    head = "".join(f"<th>{e(label)}</th>" for _, label in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{e(str(row[key])[:16] + '…' if key == 'record_hash' else str(row[key]))}</td>"
            for key, _ in columns
        )
        + "</tr>"
        for row in rows
    )
    value = lambda d: e(d.date().isoformat()) if d else ""  # noqa: E731
    query = "".join(f"&amp;{k}={quote(v.isoformat())}" for k, v in (("since", since), ("until", until)) if v)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>GDPR erasure audit</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #1a202c; }}
h1 {{ font-size: 1.4rem; }}
.ok, .broken {{ padding: .6rem 1rem; border-radius: 6px; margin: 1rem 0; }}
.ok {{ background: #e6fffa; border: 1px solid #38b2ac; }}
.broken {{ background: #fff5f5; border: 1px solid #e53e3e; }}
.cards {{ display: flex; flex-wrap: wrap; gap: .6rem; margin: 1rem 0; }}
.card {{ border: 1px solid #e2e8f0; border-radius: 6px; padding: .5rem .8rem; min-width: 8rem; }}
.card b {{ display: block; font-size: 1.3rem; }} .card span {{ font-size: .8rem; color: #4a5568; }}
table {{ border-collapse: collapse; font-size: .8rem; width: 100%; }}
th, td {{ border-bottom: 1px solid #e2e8f0; padding: .3rem .5rem; text-align: left; white-space: nowrap; }}
th {{ background: #f7fafc; }}
</style></head><body>
<h1>GDPR erasure audit ledger</h1>
<form method="get">Records written from <input type="date" name="since" value="{value(since)}">
to <input type="date" name="until" value="{value(until)}"> <button type="submit">Filter</button></form>
{banner}
<div class="cards" id="summary">{cards}</div>
<table id="records"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
<p>Identifiers appear only as keyed hashes. Export this period:
<a id="export-csv" href="export?format=csv{query}">CSV</a>,
<a id="export-json" href="export?format=json{query}">JSON</a>
(or <code>gdpr-erasure audit export --format csv</code>).</p>
</body></html>"""
