"""HTTP plumbing shared by the emulated APIs: routing, auth, faults, latency and the request log.

Each API family (Stripe, Twilio, Segment) is an :class:`ApiFamily` mounted under a prefix. A
family has one or more :class:`Service` objects (a real host such as ``memory.twilio.com``), each
with its own routes, authentication and error bodies. :func:`dispatch` runs every call through
the same pipeline: match the route, sleep the injected latency, maybe inject a fault, check the
credentials, run the handler, log the route *template* (never the raw path, which can hold an
email or a phone number).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox.state import SandboxState

UNMATCHED_ROUTE = "<unmatched>"
log = logging.getLogger("sandbox")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response (``application/json``) with the given status and headers."""
    return JSONResponse(body, status_code=status, headers=headers)


def no_content() -> Response:
    return Response(status_code=204)


@dataclass
class Call:
    """One request as the handlers see it, already matched to a route."""

    request: Request
    state: SandboxState
    service: Service
    path: str  # path below the service, percent-encoded as received
    params: dict[str, str] = field(default_factory=dict)  # path parameters, percent-decoded
    raw_params: dict[str, str] = field(default_factory=dict)  # the same, as received
    body: bytes = b""
    route: Route | None = None
    log: dict[str, Any] = field(default_factory=dict)  # extra fields for the request log

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def query(self) -> QueryParams:
        return self.request.query_params

    def header(self, name: str) -> str | None:
        return self.request.headers.get(name)

    def service_url(self) -> str:
        """Absolute URL of this service's root on the sandbox, e.g. ``http://127.0.0.1:P/twilio/api``."""
        base = str(self.request.base_url).rstrip("/")
        return base + self.service.family_prefix + self.service.mount

    def json(self) -> Any:
        """The request body decoded as JSON; raises ``ValueError`` when it is not JSON."""
        return json.loads(self.body.decode("utf-8") or "null")

    def form_pairs(self) -> list[tuple[str, str]]:
        """Form-encoded body pairs, in order, blank values kept (``metadata[k]=`` unsets)."""
        return parse_qsl(self.body.decode("utf-8"), keep_blank_values=True)


Handler = Callable[[Call], Response]


@dataclass
class Route:
    """A real service's path template (e.g. ``/v1/customers/{customer}``) and its handler."""

    method: str
    template: str
    handler: Handler
    pattern: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.template))
        self.pattern = re.compile(f"^{regex}$")

    def match(self, path: str) -> dict[str, str] | None:
        """The raw (still percent-encoded) path parameters when ``path`` fits the template."""
        found = self.pattern.match(path)
        return found.groupdict() if found else None


class Service:
    """One emulated host. Subclasses define routes, credentials and error bodies."""

    api = ""  # fault and log key: "stripe", "twilio" or "segment"
    name = ""  # the real host, e.g. "api.stripe.com"
    mount = ""  # path segment below the family prefix, e.g. "/memory"
    family_prefix = ""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def route(self, method: str, template: str, handler: Handler) -> None:
        self.routes.append(Route(method, template, handler))

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str]]:
        for route in self.routes:
            params = route.match(path)
            if params is not None and route.method == method:
                return route, params
        return None, {}

    # Hooks for subclasses -------------------------------------------------------------------

    def authenticate(self, call: Call) -> Response | None:
        """``None`` when the credentials are acceptable, else the service's 401 response."""
        return None

    def not_found(self, call: Call) -> Response:
        return json_response({"error": "not found"}, 404)

    def fault(self, call: Call, status: int, retry_after: str) -> Response:
        return json_response({"error": "injected fault"}, status)

    def finish(self, call: Call, response: Response) -> Response:
        """Last touch on every response (e.g. request id headers)."""
        return response

    def run(self, call: Call) -> Response:
        """Run the matched handler (services may wrap it, e.g. for idempotency)."""
        assert call.route is not None
        return call.route.handler(call)


class ApiFamily:
    """The services mounted under one prefix, e.g. ``/twilio`` with api, conversations, memory."""

    def __init__(self, prefix: str, services: list[Service]) -> None:
        self.prefix = prefix
        self.services = services
        for service in services:
            service.family_prefix = prefix

    def service_for(self, path: str) -> tuple[Service, str]:
        """The service owning ``path`` (below the prefix) and the path below that service."""
        for service in self.services:
            if not service.mount:
                return service, path
            if path == service.mount or path.startswith(service.mount + "/"):
                return service, path[len(service.mount) :]
        return self.services[0], path


def parse_basic_auth(header: str | None) -> tuple[str, str] | None:
    """``(username, password)`` from an HTTP Basic ``Authorization`` header, else ``None``."""
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None


def bearer_token(header: str | None) -> str | None:
    if not header or not header.lower().startswith("bearer "):
        return None
    return header[7:].strip() or None


def relative_raw_path(request: Request, prefix: str) -> str:
    """The request path below ``prefix``, still percent-encoded (so ``%2F`` stays one segment)."""
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1") if raw else quote(request.scope["path"])
    path = path.split("?", 1)[0]
    return path[len(prefix) :] if path.startswith(prefix) else path


def _serve_call(service: Service, call: Call) -> Response:
    """Authenticate and run the handler; a sandbox bug becomes the service's own 500 answer."""
    try:
        return service.authenticate(call) or (service.run(call) if call.route else service.not_found(call))
    except Exception as exc:
        # Log the route template and the exception type only: messages may quote request data.
        template = call.route.template if call.route else UNMATCHED_ROUTE
        log.error("sandbox error serving %s %s: %s", call.method, template, type(exc).__name__)
        return service.fault(call, 500, "1")


def log_call(state: SandboxState, call: Call, response: Response, **fields: Any) -> None:
    """One entry of the request log for ``call`` and its answer (``fields``: what else to say)."""
    route = call.route
    state.log_request(
        {
            "api": call.service.api,
            "service": call.service.name,
            "method": call.request.method,
            "route": route.template if route else UNMATCHED_ROUTE,
            "status": response.status_code,
            "at": datetime.now(tz=UTC).isoformat(timespec="milliseconds"),
            **fields,
        }
    )


async def dispatch(family: ApiFamily, request: Request, state: SandboxState) -> Response:
    """Serve one call to an emulated API and record it in the request log."""
    service, path = family.service_for(relative_raw_path(request, family.prefix))
    route, raw = service.match(request.method, path)
    params = {name: unquote(value) for name, value in raw.items()}
    call = Call(request, state, service, path, params=params, raw_params=raw, route=route)
    delay = state.faults.delay_seconds(service.api)
    if delay:
        await asyncio.sleep(delay)  # a coroutine sleep: slow calls overlap instead of queueing
    call.body = await request.body()
    state.tick()
    injected = state.faults.roll(service.api)
    if injected is not None:
        retry_after = state.faults.retry_after(service.api)
        response = service.fault(call, injected, retry_after)
        if injected in (429, 503):
            response.headers["Retry-After"] = retry_after
    else:
        response = _serve_call(service, call)
    response = service.finish(call, response)
    log_call(state, call, response, faulted=injected is not None, **call.log)
    return response
