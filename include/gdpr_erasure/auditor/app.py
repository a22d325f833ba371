"""Auditor page: the audit records of a period, the chain status, the period summary and its
charts, a request's drill-down and signed receipt, and "was this person erased?".

Routes (relative to the mount, ``/gdpr-audit`` in the API server):

* ``GET /``: figures and charts of the period (``since``, ``until``), its records paged by
  keyset (``after`` / ``before`` a record's ``seq``, ``limit``, 50 by default);
* ``GET /api/records``: the period's records and summary as JSON;
* ``GET /export?format=csv|json``: the period's records, streamed;
* ``GET /request/{id}``: the request's timeline, evidence and ledger position
  (:mod:`gdpr_erasure.auditor.drilldown`); ``GET /request/{id}/receipt``: its signed receipt;
* ``POST /lookup``: the records of a person, by email or phone (:mod:`gdpr_erasure.auditor.lookup`).

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
Every route runs that check (``user_dependency``), the lookup too: it is a POST only to keep
what is typed out of URLs and logs, and it reads, so it needs the same read permission.

No ``from __future__ import annotations`` here: FastAPI must resolve the dependency aliases
defined inside ``create_app`` at runtime.
"""

import logging
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response, StreamingResponse

from gdpr_erasure.auditor import pages
from gdpr_erasure.auditor.checks import ChainCheck, PeriodCache
from gdpr_erasure.auditor.drilldown import request_view
from gdpr_erasure.auditor.lookup import (
    CSRF_FIELD,
    DEFAULT_PER_MINUTE,
    MAX_BODY,
    LookupRefused,
    RateLimiter,
    csrf_refusal,
    csrf_token,
    look_up,
    read_form,
)
from gdpr_erasure.ledger.export import export_row, iter_export, period_summary
from gdpr_erasure.store import AuditEntry, ComplianceStore

log = logging.getLogger(__name__)

TOKEN_COOKIE = "_token"  # the cookie Airflow's UI keeps its JWT in
DEFAULT_RESOURCE = "GDPR Audit"  # the custom view an auth manager is asked about
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
EXPORT_CHUNK = 1000  # records read per query while an export streams
#: Lookups a user may make per minute, per API server process.
LOOKUPS_PER_MINUTE_VARIABLE = "GDPR_AUDITOR_LOOKUPS_PER_MINUTE"


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
    *,
    lookups_per_minute: int | None = None,
    chain_check_wait: float = 2.0,
    max_age: float = 60.0,
) -> FastAPI:
    """The auditor app. ``store_factory`` and ``user_dependency`` are swappable for standalone use.

    :param lookups_per_minute: lookups per user and minute (default ``$GDPR_AUDITOR_LOOKUPS_PER_MINUTE``
        or 10).
    :param chain_check_wait: seconds a page waits for the audit chain's check (it runs in the
        background: :mod:`gdpr_erasure.auditor.checks`).
    :param max_age: seconds the chain's check and a period's figures are reused while the ledger
        has not grown.
    """
    app = FastAPI(title="GDPR erasure audit", docs_url=None, redoc_url=None, openapi_url=None)
    state: dict[str, ComplianceStore] = {}

    def store() -> ComplianceStore:
        if "store" not in state:
            state["store"] = store_factory()
        return state["store"]

    chain_check = ChainCheck(store, max_age=max_age, wait=chain_check_wait)
    periods = PeriodCache(store, max_age=max_age)
    if lookups_per_minute is None:
        lookups_per_minute = int(os.environ.get(LOOKUPS_PER_MINUTE_VARIABLE) or DEFAULT_PER_MINUTE)
    limiter = RateLimiter(lookups_per_minute)

    User = Annotated[Any, Depends(user_dependency)]
    Since = Annotated[datetime | None, Query(description="records written at or after (UTC)")]
    Until = Annotated[datetime | None, Query(description="records written before (UTC)")]
    After = Annotated[int | None, Query(ge=0, description="the page after this record (seq)")]
    Before = Annotated[int | None, Query(ge=1, description="the page before this record (seq)")]
    Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="records per page")]
    RequestId = Annotated[str, Path(min_length=1, max_length=64)]
    FormBody = Annotated[bytes, Depends(_form_body)]

    @app.get("/api/records")
    def records(user: User, since: Since = None, until: Until = None) -> dict[str, Any]:
        since, until = _utc(since), _utc(until)
        entries = store().audit_entries_between(since, until)
        return {"summary": period_summary(store(), since, until), "records": [export_row(e) for e in entries]}

    @app.get("/", response_class=HTMLResponse)
    def page(
        request: Request,
        user: User,
        since: Since = None,
        until: Until = None,
        after: After = None,
        before: Before = None,
        limit: Limit = PAGE_SIZE,
    ) -> str:
        since, until = _utc(since), _utc(until)
        records_page = _records_page(store(), since, until, after, before, limit)
        return pages.index_page(
            period=periods.view(since, until),
            chain=chain_check.state(),
            page=records_page,
            rows=[export_row(entry) for entry in records_page.entries],
            since=since,
            until=until,
            limit=limit,
            default_limit=PAGE_SIZE,
            csrf=csrf_token(request.cookies.get(TOKEN_COOKIE)),
        )

    @app.get("/export")
    def export(
        user: User,
        since: Since = None,
        until: Until = None,
        fmt: Annotated[str, Query(alias="format", pattern="^(csv|json)$")] = "csv",
    ) -> Response:
        since, until = _utc(since), _utc(until)
        entries = _all_pages(store(), since, until)
        media = "text/csv" if fmt == "csv" else "application/json"
        name = f"gdpr-audit.{fmt}"
        return StreamingResponse(
            _buffered(iter_export(entries, fmt)),
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @app.get("/request/{request_id}", response_class=HTMLResponse)
    def request_page(user: User, request_id: RequestId) -> Response:
        view = request_view(store(), request_id)
        if view is None:
            message = f"No request {request_id} in the compliance store."
            return HTMLResponse(pages.message_page("Unknown request", message, up="../"), status_code=404)
        return HTMLResponse(pages.request_page(view))

    @app.get("/request/{request_id}/receipt")
    def receipt(user: User, request_id: RequestId) -> Response:
        return _receipt(store(), request_id)

    @app.post("/lookup", response_class=HTMLResponse)
    def lookup(request: Request, user: User, body: FormBody) -> Response:
        session = request.cookies.get(TOKEN_COOKIE)
        headers = {"Cache-Control": "no-store"}
        try:
            form = read_form(body)
            refusal = csrf_refusal(request.headers, session, form.get(CSRF_FIELD))
            if refusal:
                raise LookupRefused(403, refusal)
            # After the CSRF check, so a forged form cannot spend someone's lookups.
            wait = limiter.take(_user_name(user))
            if wait:
                raise LookupRefused(
                    429, f"too many lookups: {limiter.per_minute} a minute; try again in {wait} s", wait
                )
            answer = look_up(store(), _hash_key(), form)
        except LookupRefused as refused:
            if refused.retry_after:
                headers["Retry-After"] = str(refused.retry_after)
            page = pages.message_page("Lookup refused", refused.message)
            return HTMLResponse(page, status_code=refused.status, headers=headers)
        except Exception as exc:
            # The type only: an exception's text or traceback could carry what was entered.
            log.error("auditor lookup failed (%s)", type(exc).__name__)
            page = pages.message_page("Lookup failed", "The lookup failed; nothing entered was kept.")
            return HTMLResponse(page, status_code=500, headers=headers)
        return HTMLResponse(pages.lookup_page(answer, csrf_token(session)), headers=headers)

    return app


async def _form_body(request: Request) -> bytes:
    """The POST body, refused unread past :data:`MAX_BODY` bytes (413, saying nothing of it)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise HTTPException(413, f"the form is larger than {MAX_BODY} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise HTTPException(413, f"the form is larger than {MAX_BODY} bytes")
    return body


def _user_name(user: Any) -> str:
    get_name = getattr(user, "get_name", None)
    return str(get_name() if callable(get_name) else user)


def _hash_key():
    """The identifier hash key (connection ``gdpr_hash_key``), or a 503 refusal saying what to set."""
    from gdpr_erasure.hashing import MissingHashKey, load_hash_key

    try:
        return load_hash_key()
    except MissingHashKey as exc:
        raise LookupRefused(503, f"lookups need the identifier hash key: {exc}") from None
    except Exception as exc:
        raise LookupRefused(
            503, f"the identifier hash key could not be read ({type(exc).__name__})"
        ) from None


def _records_page(
    store: ComplianceStore,
    since: datetime | None,
    until: datetime | None,
    after: int | None,
    before: int | None,
    limit: int,
) -> pages.RecordsPage:
    # Going back from the end, the first page may be short: pages are cut from the cursor, so
    # walking either way visits every record exactly once.
    entries = store.audit_page(after_seq=after, before_seq=before, limit=limit, since=since, until=until)
    total = store.audit_count(since, until)
    if entries:
        position = store.audit_count(since, until, before_seq=entries[0].seq)
    else:
        position = total if after is not None else 0
    tip = store.audit_tip()
    return pages.RecordsPage(entries, total, position, last_before=(tip[0] + 1) if tip else 1)


def _all_pages(
    store: ComplianceStore, since: datetime | None, until: datetime | None
) -> Iterator[AuditEntry]:
    """Every record of the period, read :data:`EXPORT_CHUNK` at a time by keyset."""
    after = None
    while True:
        chunk = store.audit_page(after_seq=after, limit=EXPORT_CHUNK, since=since, until=until)
        yield from chunk
        if len(chunk) < EXPORT_CHUNK:
            return
        after = chunk[-1].seq


def _buffered(pieces: Iterator[str], size: int = 1 << 16) -> Iterator[str]:
    """``pieces`` joined into blocks of about ``size`` characters: one write (and one hop to the
    thread pool) per block rather than per record."""
    block: list[str] = []
    length = 0
    for piece in pieces:
        block.append(piece)
        length += len(piece)
        if length >= size:
            yield "".join(block)
            block, length = [], 0
    if block:
        yield "".join(block)


def _receipt(store: ComplianceStore, request_id: str) -> Response:
    """The request's signed receipt, built as ``gdpr-erasure receipt issue`` builds it (for a
    request completed with exemptions too, and covering its latest review); what is missing (no
    record, no key) is one line of text, never a traceback."""
    from gdpr_erasure.ledger.commands import issue_receipt
    from gdpr_erasure.ledger.entries import CLOSED_OUTCOMES
    from gdpr_erasure.ledger.heads import LedgerError
    from gdpr_erasure.receipts import dumps, load_signing_key
    from gdpr_erasure.store.chain import ERASURE

    entry = store.audit_entry(request_id)
    if entry is None or entry.kind != ERASURE:
        return PlainTextResponse(
            f"request {request_id} has no audit record: receipts exist for completed requests\n", 404
        )
    if entry.record.get("outcome") not in CLOSED_OUTCOMES:
        return PlainTextResponse(f"request {request_id} is not completed: no receipt\n", 409)
    try:
        key = load_signing_key()
    except Exception as exc:
        return PlainTextResponse(_receipt_key_problem(exc) + "\n", 503)
    try:  # the inclusion proof of its latest entry and a signed head, so it verifies offline
        document = issue_receipt(store, entry, key)
    except LedgerError as exc:
        return PlainTextResponse(f"no receipt for {request_id}: {exc}\n", 503)
    except Exception as exc:
        log.warning("receipt for %s: the ledger proof failed", request_id, exc_info=True)
        return PlainTextResponse(
            f"no receipt for {request_id}: the ledger proof could not be built ({type(exc).__name__})\n", 503
        )
    return Response(
        dumps(document),
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="{request_id}.receipt.json"',
            "Cache-Control": "no-store",
        },
    )


def _receipt_key_problem(exc: Exception) -> str:
    from gdpr_erasure.receipts import RECEIPT_KEY_CONN_ID, ReceiptError

    if type(exc).__name__ == "AirflowNotFoundException":
        return (
            f"receipts are not configured: add the Airflow connection {RECEIPT_KEY_CONN_ID} "
            "(password: an Ed25519 private key in PEM, login: its key id)"
        )
    if isinstance(exc, ReceiptError):
        return f"the receipt key is unusable: {exc}"
    return f"the receipt key could not be read ({type(exc).__name__})"


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
