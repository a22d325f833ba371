"""Helpers for the intake tests: secrets, signed raw HTTP calls, a uvicorn server in a thread,
row counts, and the identifiers that must never leak."""

from __future__ import annotations

import asyncio
import json
import queue
import socket
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any

import requests
import uvicorn

from gdpr_erasure.intake.server import bind, url_of
from gdpr_erasure.intake.signature import SIGNATURE_HEADER, signature_header, signed_content
from gdpr_erasure.store import ComplianceStore

SECRET = "intake-test-secret-0123456789abcdef-current"
OLD_SECRET = "intake-test-secret-0123456789abcdef-previous"
OTHER_SECRET = "intake-test-secret-0123456789abcdef-attacker"

# Identifiers used by the tests; none of them may ever show in a log line or an answer.
EMAIL = "Zelda.Leaky@Example.org"
PHONE = "+447700900123"
CUSTOMER = "cus_LeakTest12345"
USER_ID = "user-leak-8812"
SECRETS_IN_TEXT = (EMAIL, EMAIL.lower(), PHONE, PHONE[1:], CUSTOMER, USER_ID)


def connection_json(password: str = SECRET, previous: Iterable[str] = (), **extra: Any) -> str:
    """The ``gdpr_intake`` connection as ``AIRFLOW_CONN_GDPR_INTAKE`` JSON."""
    extras = dict(extra)
    if previous:
        extras["previous_secrets"] = list(previous)
    return json.dumps({"conn_type": "generic", "password": password, "extra": extras})


def encode(document: Any) -> bytes:
    return json.dumps(document).encode() if not isinstance(document, bytes) else document


def signed_headers(
    body: bytes,
    secrets: str | list[str] = SECRET,
    *,
    timestamp: int | None = None,
    content_type: str | None = "application/json",
) -> dict[str, str]:
    headers = {SIGNATURE_HEADER: signature_header(secrets, body, timestamp)}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return headers


def post(base_url: str, document: Any, secrets: str | list[str] = SECRET, **kwargs: Any) -> requests.Response:
    """POST ``document`` (dict or raw bytes) to ``/v1/requests``, signed."""
    body = encode(document)
    return requests.post(
        f"{base_url}/v1/requests", data=body, headers=signed_headers(body, secrets), timeout=10, **kwargs
    )


def get(base_url: str, request_id: str, secrets: str | list[str] = SECRET) -> requests.Response:
    path = f"/v1/requests/{request_id}"
    headers = {SIGNATURE_HEADER: signature_header(secrets, signed_content("GET", path, b""))}
    return requests.get(f"{base_url}{path}", headers=headers, timeout=10)


def count_rows(store: ComplianceStore | str) -> int:
    """Rows in the intake table, whatever their status."""
    if isinstance(store, str):
        store = ComplianceStore.from_url(store)
        try:
            return count_rows(store)
        finally:
            store.dispose()
    return sum(store.counts_by_status().values())


def assert_no_identifiers(text: str, where: str) -> None:
    for value in SECRETS_IN_TEXT:
        assert value not in text, f"an identifier appears in {where}"


def native(request_id: str, **identifiers: str) -> dict[str, str]:
    return {"request_id": request_id, **(identifiers or {"email": EMAIL, "phone": PHONE})}


def opendsr(request_id: str, identities: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    identities = identities or [("email", EMAIL), ("phone_number", PHONE)]
    return {
        "subject_request_id": request_id,
        "subject_request_type": "erasure",
        "submitted_time": "2026-01-02T15:00:00Z",
        "subject_identities": [
            {"identity_type": kind, "identity_value": value, "identity_format": "raw"}
            for kind, value in identities
        ],
        "api_version": "2.0",
    }


@dataclass
class ThreadedServer:
    """An ASGI app served by uvicorn on 127.0.0.1 (a free port) in a background thread."""

    app: Any

    def __post_init__(self) -> None:
        self._sock = bind("127.0.0.1", 0)
        self.url = url_of(self._sock)
        config = uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="intake-test-server", daemon=True)

    def _run(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._sock]))

    def start(self, timeout: float = 10.0) -> ThreadedServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the intake test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


def read_first_line(stream: IO[str], timeout: float) -> str | None:
    """The first line of a subprocess's output, or None if it does not come within ``timeout``."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen, timeout: float = 15.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
