"""A client for the intake: signs and sends requests (``gdpr-erasure submit``, the demo, tests).

::

    client = IntakeClient("http://127.0.0.1:8080/gdpr", secret)
    answer = client.submit("req-42", email="jane@example.com")
    client.status("req-42")["status"]

The base URL includes the mount prefix (``/gdpr`` in Airflow's API server, nothing standalone);
signatures cover paths below it, so one client works with both.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import requests

from gdpr_erasure.intake.app import REPLAYED_HEADER, SUBMIT_PATH
from gdpr_erasure.intake.settings import INTAKE_CONN_ID
from gdpr_erasure.intake.signature import SIGNATURE_HEADER, signature_header, signed_content


class IntakeClientError(Exception):
    """The intake refused a call. ``code`` is its machine-readable error."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"intake answered {status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class IntakeAnswer:
    status_code: int
    body: dict[str, Any]
    replayed: bool


class IntakeClient:
    """Signed calls to one intake.

    :param base_url: e.g. ``http://127.0.0.1:8080/gdpr`` (mounted) or ``http://127.0.0.1:8980``.
    :param secrets: the signing secret, or several (one ``v1`` signature each, during a rotation).
    :param timeout: seconds per HTTP call.
    """

    def __init__(
        self,
        base_url: str,
        secrets: str | bytes | Sequence[str | bytes],
        *,
        timeout: float = 10.0,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.secrets = [secrets] if isinstance(secrets, str | bytes) else list(secrets)
        if not self.secrets:
            raise ValueError("at least one signing secret is needed")
        self.timeout = timeout
        self.http = session or requests.Session()

    def __repr__(self) -> str:
        return f"IntakeClient({self.base_url!r}, secrets=<{len(self.secrets)} hidden>)"

    @classmethod
    def from_connection(cls, conn_id: str = INTAKE_CONN_ID, base_url: str | None = None) -> IntakeClient:
        """Secret from the connection's password; URL from ``base_url``, else the connection's
        ``extra.url`` or ``host`` (a full URL)."""
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
        url = base_url or (conn.extra_dejson or {}).get("url") or conn.host
        if not url or not str(url).startswith(("http://", "https://")):
            raise ValueError(f"no intake URL: pass one, or set extra 'url' on connection {conn_id!r}")
        if not conn.password:
            raise ValueError(f"connection {conn_id!r} has no password (the signing secret)")
        return cls(str(url), conn.password)

    # -- calls ---------------------------------------------------------------------------------

    def submit(
        self,
        request_id: str | None = None,
        *,
        email: str | None = None,
        phone: str | None = None,
        stripe_customer_id: str | None = None,
        user_id: str | None = None,
    ) -> dict[str, Any]:
        """Submit a native request (a random UUID as ``request_id`` if none); return the answer."""
        body = {"request_id": request_id or str(uuid.uuid4())}
        for name, value in (
            ("email", email),
            ("phone", phone),
            ("stripe_customer_id", stripe_customer_id),
            ("user_id", user_id),
        ):
            if value is not None:
                body[name] = value
        return self.post(body).body

    def post(self, document: dict[str, Any] | bytes) -> IntakeAnswer:
        """POST a body (native or OpenDSR; a dict is serialised compactly), signed."""
        raw = (
            document if isinstance(document, bytes) else json.dumps(document, separators=(",", ":")).encode()
        )
        response = self.http.post(
            f"{self.base_url}{SUBMIT_PATH}",
            data=raw,
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature_header(self.secrets, raw),
            },
            timeout=self.timeout,
        )
        return self._answer(response)

    def status(self, request_id: str) -> dict[str, Any]:
        """The request's state (status, received, expected completion)."""
        path = f"{SUBMIT_PATH}/{request_id}"
        response = self.http.get(
            f"{self.base_url}{path}",
            headers={SIGNATURE_HEADER: signature_header(self.secrets, signed_content("GET", path, b""))},
            timeout=self.timeout,
        )
        return self._answer(response).body

    @staticmethod
    def _answer(response: requests.Response) -> IntakeAnswer:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 300:
            raise IntakeClientError(
                response.status_code,
                str(body.get("code", "unknown")),
                str(body.get("detail", response.reason)),
            )
        return IntakeAnswer(response.status_code, body, response.headers.get(REPLAYED_HEADER) == "true")
