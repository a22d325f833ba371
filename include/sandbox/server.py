"""The sandbox's ASGI app and the ``serve`` entry point (uvicorn on a loopback address only).

URL layout on one port:

* ``/stripe/...`` -> ``api.stripe.com``
* ``/twilio/api/...``, ``/twilio/conversations/...``, ``/twilio/memory/...`` -> ``<sub>.twilio.com``
* ``/segment/profiles/...`` -> ``profiles.segment.com``; ``/segment/api/...`` -> ``api.segmentapis.com``
* ``/_sandbox/...`` -> control and introspection (see :mod:`sandbox.control`)
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from typing import TextIO

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox import control
from sandbox.limits import Limits, retry_after_header
from sandbox.segment_api import ProfileService, PublicApiService
from sandbox.state import SandboxState, Settings
from sandbox.stripe_api import StripeService
from sandbox.twilio_api import TwilioApiService
from sandbox.twilio_conversations import ConversationsService
from sandbox.twilio_memory import MemoryService
from sandbox.web import ApiFamily, Call, Service, dispatch, log_call, relative_raw_path

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
#: The first line ``serve`` prints on stdout, followed by its base URL: launchers read the real
#: port from it (see :mod:`sandbox.launcher`).
READY_PREFIX = "sandbox listening on "


def api_families() -> list[ApiFamily]:
    """The emulated APIs, each under its own prefix."""
    return [
        ApiFamily("/stripe", [StripeService()]),
        ApiFamily("/twilio", [TwilioApiService(), ConversationsService(), MemoryService()]),
        ApiFamily("/segment", [ProfileService(), PublicApiService()]),
    ]


def _family_route(family: ApiFamily) -> Route:
    async def endpoint(request: Request) -> Response:
        state: SandboxState = request.app.state.sandbox
        limits: Limits = request.app.state.limits
        service, path = family.service_for(relative_raw_path(request, family.prefix))
        refused, wait = limits.admit(service.api)
        if refused is not None:
            return _over_limit(service, request, state, path, refused, wait)
        try:
            return await dispatch(family, request, state)
        finally:
            limits.release(service.api)

    return Route(family.prefix + "/{path:path}", endpoint, methods=ALL_METHODS)


def _over_limit(
    service: Service, request: Request, state: SandboxState, path: str, reason: str, wait: float
) -> Response:
    """The provider's own 429 for a call over a limit (the body its fault knobs give), answered at
    once and logged like any call, with ``limited`` saying which limit refused it."""
    route, _ = service.match(request.method, path)
    call = Call(request, state, service, path, route=route)
    retry_after = retry_after_header(wait)
    response = service.fault(call, 429, retry_after)
    response.headers["Retry-After"] = retry_after
    response = service.finish(call, response)
    log_call(state, call, response, faulted=False, limited=reason)
    return response


def create_app(
    state: SandboxState | None = None,
    initial_settings: Settings | None = None,
    limits: Limits | None = None,
) -> Starlette:
    """The ASGI app serving ``state`` (a freshly seeded one by default).

    ``initial_settings`` is what ``POST /_sandbox/reset`` starts from; it defaults to the
    state's current settings. ``limits`` are the run's provider limits (none by default); a reset
    goes back to them, with their counts at zero.
    """
    state = state or SandboxState()
    app = Starlette(routes=[*control.routes, *(_family_route(f) for f in api_families())])
    app.state.sandbox = state
    app.state.initial_settings = initial_settings or state.settings
    app.state.limits = limits or Limits()
    app.state.initial_limits = app.state.limits.as_dict()
    return app


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket ourselves so that port 0 yields a known free port."""
    address = "127.0.0.1" if host == "localhost" else host.strip("[]")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP.
    # Without it every call on a kept-alive connection waited 40 ms for the client's delayed ACK
    # (the response goes out in two writes), which real APIs do not do.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def _serve(app: Starlette, sock: socket.socket, out: TextIO) -> None:
    host, port = sock.getsockname()[:2]
    # The socket is already bound (port 0 resolved); uvicorn serves it and binds nothing itself.
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if server.started:
        print(f"{READY_PREFIX}{_url(sock)}", file=out, flush=True)
    await task


def serve(
    host: str = "127.0.0.1",
    port: int = 8999,
    seed: int = 1,
    people: int = 20,
    faults: list[str] | None = None,
    regulation_seconds: float = 3.0,
    allow_non_loopback: bool = False,
    limits: list[str] | None = None,
) -> int:
    """Run the sandbox until interrupted; returns the process exit code.

    Refuses any host that is not a loopback address: the sandbox holds fake personal data and
    accepts any test credentials, so it must never be reachable from another machine. The one
    exception is ``allow_non_loopback`` (CLI ``--allow-non-loopback``), for a container on a
    private container network (the compose file's ``sandbox`` profile), never a public interface.
    """
    if not is_loopback(host):
        if not allow_non_loopback:
            print(
                f"sandbox: refusing to bind {host!r}: only loopback addresses are allowed "
                "(--allow-non-loopback overrides this, for a private container network only)",
                file=sys.stderr,
            )
            return 2
        print(f"sandbox: WARNING: listening on non-loopback address {host!r}", file=sys.stderr)
    try:
        settings = Settings().updated(
            {"seed": seed, "people": people, "regulation_seconds": regulation_seconds}
        )
        if people > control.MAX_PEOPLE:
            raise ValueError(f"people must be at most {control.MAX_PEOPLE}")
        state = SandboxState(settings)
        for spec in faults or []:
            state.faults.apply_spec(spec)
        run_limits = Limits()
        for spec in limits or []:
            run_limits.apply_spec(spec)
    except ValueError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 2
    try:
        sock = _bind(host, port)
    except OSError as exc:
        print(f"sandbox: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    app = create_app(state, initial_settings=settings, limits=run_limits)
    with _stop_on_sigterm():
        try:
            asyncio.run(_serve(app, sock, sys.stdout))
        except (KeyboardInterrupt, _Stopped):
            pass
        finally:
            sock.close()
    return 0


class _Stopped(Exception):
    """Raised by the SIGTERM handler once uvicorn has shut down gracefully."""


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """Make SIGTERM end ``serve`` with exit code 0.

    uvicorn handles SIGTERM itself (graceful shutdown) and then re-raises it; without a handler
    of ours the default action would kill the process with status -15.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise _Stopped

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
