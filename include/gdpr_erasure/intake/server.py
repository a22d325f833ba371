"""The standalone intake server: ``gdpr-erasure intake serve`` (uvicorn, one or more workers).

For deployments that keep the intake apart from Airflow's API server. Same app, same
authentication; the signing secrets come from the ``gdpr_intake`` connection, which outside
Airflow's API server means ``AIRFLOW_CONN_GDPR_INTAKE`` or a configured secrets backend.

The server binds its socket itself (so ``--port 0`` picks a free port), prints
``intake listening on http://HOST:PORT`` on stdout once it accepts connections, and logs to
stderr. uvicorn's access log is off: the app writes one line per call with the route template
(never a query string or a body).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import logging.config
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TextIO

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from gdpr_erasure.intake.app import create_app
from gdpr_erasure.intake.settings import IntakeSettings

READY_PREFIX = "intake listening on "
SETTINGS_ENV = "GDPR_INTAKE_SERVER_SETTINGS"  # parent -> worker processes

log = logging.getLogger("gdpr_erasure.intake")


def log_config(level: str = "info") -> dict:
    """Plain lines on stderr for the app and uvicorn, in every worker."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"level": level.upper()},
            "uvicorn.access": {"level": "WARNING"},
            "sqlalchemy": {"level": "WARNING"},
        },
    }


def configure_logging(level: str = "info") -> None:
    """Our handler on stderr, installed after Airflow's: importing ``airflow`` replaces the root
    handlers with its own (on stdout), which would bury the log in the ready line's stream."""
    import airflow  # noqa: F401

    logging.config.dictConfig(log_config(level))


def app_from_env() -> FastAPI:
    """App factory for worker processes: the settings come from the parent through the env."""
    raw = json.loads(os.environ.get(SETTINGS_ENV, "{}"))
    configure_logging(raw.get("log_level", "info"))
    return create_app(IntakeSettings(**raw.get("settings", {})))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one)."""
    address = "127.0.0.1" if host == "localhost" else host.strip("[]")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
    # and without it a response written in two parts waits for the client's delayed ACK (40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _uvicorn_config(app, settings_level: str, workers: int, **extra) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        workers=workers,
        log_config=log_config(settings_level),
        access_log=False,  # the app logs one line per call, without query strings
        lifespan="off",
        server_header=False,
        proxy_headers=False,
        **extra,
    )


def _serve_one(app: FastAPI, sock: socket.socket, level: str, out: TextIO) -> None:
    """One worker in this process, on uvicorn's event loop (uvloop when installed)."""
    config = _uvicorn_config(app, level, 1)
    server = uvicorn.Server(config)

    async def run() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started:
            print(f"{READY_PREFIX}{url_of(sock)}", file=out, flush=True)
        await task

    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(run())


def serve(
    settings: IntakeSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 8980,
    workers: int = 1,
    init_db: bool = True,
    log_level: str = "info",
    out: TextIO = sys.stdout,
) -> int:
    """Run the intake until SIGINT/SIGTERM; return the exit code.

    :param settings: the app's settings (secrets connection, store URL, limits).
    :param workers: uvicorn worker processes; more than one suits PostgreSQL (SQLite serialises
        writes anyway).
    :param init_db: create the store's tables first (idempotent), once, before any worker starts.
    """
    configure_logging(log_level)
    if not is_loopback(host):
        log.warning("intake: listening on %s; terminate TLS in front of it", host)
    if init_db:
        from gdpr_erasure.store import ComplianceStore

        try:
            store = ComplianceStore.from_url(settings.db_url)
            store.init_db()
            store.dispose()
        except Exception as exc:
            print(f"intake: cannot initialise the compliance store ({type(exc).__name__})", file=sys.stderr)
            return 1
    try:
        sock = bind(host, port)
    except OSError as exc:
        print(f"intake: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    try:
        if workers <= 1:
            with _stop_on_sigterm(), contextlib.suppress(KeyboardInterrupt, _Stopped):
                _serve_one(create_app(settings), sock, log_level, out)
            return 0
        # Several workers: uvicorn's supervisor forks them onto our socket; each builds the app
        # from the settings passed through the environment.
        os.environ[SETTINGS_ENV] = json.dumps(
            {"settings": dataclasses.asdict(settings), "log_level": log_level}
        )
        config = _uvicorn_config("gdpr_erasure.intake.server:app_from_env", log_level, workers, factory=True)
        supervisor = Multiprocess(config, sockets=[sock])
        # The socket already listens: connections queue until the workers accept them.
        print(f"{READY_PREFIX}{url_of(sock)}", file=out, flush=True)
        supervisor.run()
        return 0
    finally:
        sock.close()


@contextlib.contextmanager
def standalone_intake(
    *,
    secret: str,
    db_url: str | None = None,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    workers: int = 1,
    timeout: float = 30.0,
) -> Iterator[str]:
    """Run ``gdpr-erasure intake serve --port 0`` in a subprocess; yield its URL; stop it.

    For the demo and scripts: the ``gdpr_intake`` connection is given to the subprocess as
    ``AIRFLOW_CONN_GDPR_INTAKE`` holding ``secret``; sign with the same secret
    (``IntakeClient(url, secret)``).

    :param env: environment for the server (default: this process's).
    :param log_path: where its stderr goes (default: discarded).
    """
    server_env = dict(os.environ if env is None else env)
    server_env["AIRFLOW_CONN_GDPR_INTAKE"] = json.dumps({"conn_type": "generic", "password": secret})
    command = [sys.executable, "-m", "gdpr_erasure.cli", "intake", "serve", "--port", "0"]
    command += ["--workers", str(workers)] + (["--db-url", db_url] if db_url else [])
    with open(log_path or os.devnull, "w") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, env=server_env)
    try:
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            line = ""
        if not line.startswith(READY_PREFIX):
            raise RuntimeError(
                f"the intake did not start within {timeout:.0f} s (see {log_path or 'its log'})"
            )
        yield line.strip().removeprefix(READY_PREFIX)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class _Stopped(Exception):
    """Raised by the SIGTERM handler once uvicorn has shut down gracefully."""


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """Make SIGTERM end :func:`serve` with exit code 0 (uvicorn re-raises it after shutting down)."""
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
