"""The intake's HTTP layer: a FastAPI app, mounted in Airflow's API server or served standalone.

Every call is authenticated here (Airflow does not authenticate plugin apps). A POST is checked in
this order, cheapest and least trusting first, and stops at the first failure:

1. no query string (400 ``query_not_allowed``): identifiers must never travel in URLs, which
   access logs print (see :class:`ScrubUrl`);
2. ``Content-Type: application/json`` (415);
3. body size, from ``Content-Length`` and while reading (413);
4. the signature over the raw bytes (401), before anything parses them;
5. strict JSON (400), then the shape and formats (422);
6. the store: 202, or 409 if the id names other identifiers.

Identifiers never appear in a log line, an error message or an answer. Log lines name the route,
the status, the error code and (once validated) the request id.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gdpr_erasure.intake import signature
from gdpr_erasure.intake.errors import PROBLEM_CONTENT_TYPE, IntakeError
from gdpr_erasure.intake.models import REQUEST_ID_PATTERN, SOURCE_OPENDSR, parse_submission, state_body
from gdpr_erasure.intake.service import IntakeService
from gdpr_erasure.intake.settings import CredentialsCache, IntakeSettings

log = logging.getLogger("gdpr_erasure.intake")

API_TITLE = "GDPR erasure intake"
API_VERSION = "1.0.0"
SUBMIT_PATH = "/v1/requests"
STATUS_PATH = "/v1/requests/{request_id}"
REPLAYED_HEADER = "Idempotent-Replayed"
REQUEST_ID_RE = re.compile(REQUEST_ID_PATTERN)
_SAFE_PATH = re.compile(r"/v1/requests(/" + REQUEST_ID_PATTERN.strip("^$") + ")?")


def problem_response(error: IntakeError) -> Response:
    return Response(
        json.dumps(error.body()),
        status_code=error.status,
        media_type=PROBLEM_CONTENT_TYPE,
        headers=error.headers,
    )


def json_response(body: dict[str, Any], status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status_code=status, media_type="application/json", headers=headers)


class ScrubUrl:
    """Keep identifiers a careless caller put in a URL out of the server's access log.

    Airflow's access-log middleware prints the path and query string of every call, reading them
    from the scope dict after the app has answered; a mount passes that same dict down to us. So:

    * a query string is blanked and the call answered 400 ``query_not_allowed`` (the intake takes
      no query parameters);
    * once the call is answered, a path that is not one of ours with a valid request id
      (``/v1/requests`` or ``/v1/requests/<id>``) is replaced by ``<mount>/[redacted]``, so
      ``GET /gdpr/v1/requests/jane@example.com`` is not written down either.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            if scope.get("query_string"):
                scope["query_string"] = b""
                # The path is not logged either: before routing it is whatever the caller sent.
                log.warning("intake %s (with query string) -> 400 query_not_allowed", scope.get("method"))
                await problem_response(IntakeError("query_not_allowed"))(scope, receive, send)
                return
            await self.app(scope, receive, send)
        finally:
            if not _SAFE_PATH.fullmatch(_route_path(scope)):
                redacted = f"{scope.get('root_path', '')}/[redacted]"
                scope["path"], scope["raw_path"] = redacted, redacted.encode()


class BarePrefixGuard:
    """Answer the intake's mount point itself, which the mount does not see.

    A Starlette mount at ``/gdpr`` matches ``/gdpr/...`` only: ``/gdpr`` and ``/gdpr?email=...``
    (and ``/GDPR/...``) fall through to Airflow's UI catch-all, whose access log prints the path
    and the query string. Installed as a root middleware of Airflow's API server (inside its
    access-log middleware, which reads the same scope dict once the call is answered), this
    answers those calls as the intake would, blanks the query string and, for a path below the
    prefix in another case, the path, before anything logs them. Every other call passes
    untouched (two string comparisons).

    :param prefix: the intake's mount point (``/gdpr``).
    """

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = prefix.rstrip("/")
        self._folded = self.prefix.lower()

    def _ours(self, path: str) -> bool:
        """Ours and not routed to the mount: the prefix itself in any case (with or without a
        trailing slash), or a path below it spelled in another case."""
        folded = path.lower()
        if folded in (self._folded, self._folded + "/"):
            return path != self.prefix + "/"  # "/gdpr/" reaches the mount (and ScrubUrl)
        return folded.startswith(self._folded + "/") and not path.startswith(self.prefix + "/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._ours(_route_path(scope)):
            await self.app(scope, receive, send)
            return
        root = scope.get("root_path", "")
        path = _route_path(scope)
        if path.rstrip("/") != self.prefix:  # /GDPR/v1/requests/<anything>: not written down
            redacted = f"{root}{self.prefix}/[redacted]"
            scope["path"], scope["raw_path"] = redacted, redacted.encode()
        if scope.get("query_string"):
            scope["query_string"] = b""
            error = IntakeError("query_not_allowed")
        else:
            error = IntakeError("not_found")
        log.warning(
            "intake %s %s (outside the mount) -> %d %s",
            scope.get("method"),
            self.prefix,
            error.status,
            error.code,
        )
        await problem_response(error)(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The path below the intake's mount point (``/v1/requests``, with or without ``/gdpr``)."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _check_content_type(request: Request) -> None:
    media_type, _, params = (request.headers.get("content-type") or "").partition(";")
    charset = params.strip().lower().replace(" ", "")
    if media_type.strip().lower() != "application/json" or charset not in ("", "charset=utf-8"):
        raise IntakeError("unsupported_media_type", "send the body as application/json (UTF-8)")


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise IntakeError("body_too_large", f"the body may be at most {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # chunked bodies have no Content-Length: count as they come
            raise IntakeError("body_too_large", f"the body may be at most {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    settings: IntakeSettings | None = None,
    *,
    credentials: CredentialsCache | None = None,
    service: IntakeService | None = None,
) -> FastAPI:
    """The intake app. Nothing is opened (connection, database) until the first call.

    :param settings: limits and where the secrets and the store are; defaults for the plugin.
    :param credentials: the signing secrets; default: the ``settings.conn_id`` connection.
    :param service: the store side; default: the store at ``settings.db_url``.
    """
    settings = settings or IntakeSettings()
    credentials = credentials or CredentialsCache(settings.conn_id, settings.secrets_ttl_seconds)
    service = service or IntakeService.for_url(settings.db_url)

    app = FastAPI(
        title=API_TITLE,
        version=API_VERSION,
        # Nothing unauthenticated is served: the OpenAPI document is a file in docs/ and
        # `gdpr-erasure intake openapi` prints it.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.credentials = credentials
    app.state.service = service
    app.add_middleware(ScrubUrl)

    async def authenticate(request: Request, content: bytes) -> str:
        creds = await credentials.aget()
        try:
            signature.verify(
                request.headers.get(signature.SIGNATURE_HEADER),
                content,
                creds.secrets,
                tolerance=settings.tolerance_seconds,
            )
        except signature.SignatureError as exc:
            raise IntakeError(exc.code, exc.detail) from None
        return creds.controller_id

    def guarded(route: str, handler: Callable[[Request], Awaitable[Response]]):
        """Run a handler; turn every failure into a problem answer and one log line."""

        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            request.state.request_id = None
            try:
                response = await handler(request)
            except IntakeError as exc:
                response = problem_response(exc)
                level = logging.ERROR if exc.status >= 500 else logging.WARNING
                log.log(level, "intake %s -> %d %s", route, exc.status, exc.code)
                return response
            except Exception as exc:  # a bug: answer 500 without a traceback that could quote input
                log.error("intake %s -> 500 internal_error (%s)", route, type(exc).__name__)
                return problem_response(IntakeError("internal_error"))
            log.info(
                "intake %s -> %d request_id=%s%s (%.1f ms)",
                route,
                response.status_code,
                request.state.request_id,
                " replayed" if response.headers.get(REPLAYED_HEADER) else "",
                (time.perf_counter() - started) * 1000,
            )
            return response

        return endpoint

    async def submit(request: Request) -> Response:
        _check_content_type(request)
        body = await _read_body(request, settings.max_body_bytes)
        controller_id = await authenticate(request, body)
        submission = parse_submission(body)
        request.state.request_id = submission.request_id
        stored, created = await run_in_threadpool(service.submit, submission)
        headers = {"Location": f"{request.scope.get('root_path', '')}{SUBMIT_PATH}/{stored.id}"}
        if not created:
            headers[REPLAYED_HEADER] = "true"
        kept = await run_in_threadpool(service.kept, stored) if not created else []
        return json_response(
            state_body(stored, opendsr=submission.opendsr, controller_id=controller_id, kept=kept),
            202,
            headers,
        )

    async def status(request: Request) -> Response:
        content = signature.signed_content("GET", _route_path(request.scope), b"")
        controller_id = await authenticate(request, content)
        request_id = request.path_params["request_id"]
        if not REQUEST_ID_RE.fullmatch(request_id):  # cannot exist; and keeps odd bytes from the DB
            raise IntakeError("request_not_found")
        stored = await run_in_threadpool(service.get, request_id)
        request.state.request_id = stored.id
        kept = await run_in_threadpool(service.kept, stored)  # what the erasure policy kept, if anything
        body = state_body(
            stored, opendsr=stored.source == SOURCE_OPENDSR, controller_id=controller_id, kept=kept
        )
        return json_response(body, 200)

    app.add_api_route(
        SUBMIT_PATH,
        guarded("POST " + SUBMIT_PATH, submit),
        methods=["POST"],
        status_code=202,
        operation_id="submitErasureRequest",
        summary="Submit an erasure request (native or OpenDSR 2.0 shape)",
    )
    app.add_api_route(
        STATUS_PATH,
        guarded("GET " + STATUS_PATH, status),
        methods=["GET"],
        operation_id="getErasureRequest",
        summary="Status and expected completion date of an erasure request",
    )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:
            error = IntakeError("method_not_allowed", headers=dict(exc.headers or {}))
        else:
            error = IntakeError("not_found")
        log.warning("intake %s (unrouted) -> %d %s", request.method, error.status, error.code)
        return problem_response(error)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        return problem_response(IntakeError("invalid_value"))

    return app
