"""Helpers shared by the sandbox tests: polling and authenticated requests to each emulated API."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

import requests

T = TypeVar("T")

STRIPE_KEY = "sk_test_sandbox"
TWILIO_SECRET = "sandbox-auth-token"
SEGMENT_TOKEN = "sandbox-segment-token"


def wait_for(probe: Callable[[], T], timeout: float = 6.0, interval: float = 0.05) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last value {value!r})")
        time.sleep(interval)


class Api:
    """Authenticated requests to every emulated API, with the sandbox's published identifiers."""

    def __init__(self, base_url: str, accounts: dict[str, Any]) -> None:
        self.base_url = base_url
        self.account_sid: str = accounts["twilio"]["account_sid"]
        self.store_id: str = accounts["twilio"]["memory_store_id"]
        self.space_id: str = accounts["segment"]["space_id"]
        self.http = requests.Session()

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        return self.http.request(method, url, timeout=10, **kwargs)

    def stripe(
        self, method: str, path: str, key: str | None = STRIPE_KEY, **kwargs: Any
    ) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if key is not None:
            headers.setdefault("Authorization", f"Bearer {key}")
        return self._send(method, f"{self.base_url}/stripe{path}", headers=headers, **kwargs)

    def twilio(self, sub: str, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("auth", (self.account_sid, TWILIO_SECRET))
        return self._send(method, f"{self.base_url}/twilio/{sub}{path}", **kwargs)

    def api2010(self, method: str, suffix: str, **kwargs: Any) -> requests.Response:
        return self.twilio("api", method, f"/2010-04-01/Accounts/{self.account_sid}{suffix}", **kwargs)

    def memory(self, method: str, suffix: str, **kwargs: Any) -> requests.Response:
        return self.twilio("memory", method, f"/v1/Stores/{self.store_id}{suffix}", **kwargs)

    def profile(self, id_type: str | None, value: str, kind: str = "external_ids", **kwargs: Any):
        """``GET .../profiles/<type>:<value>/<kind>`` with the value percent-encoded (``+`` as %2B)."""
        identifier = quote(value, safe="") if id_type is None else f"{id_type}:{quote(value, safe='')}"
        path = f"/v1/spaces/{self.space_id}/collections/users/profiles/{identifier}/{kind}"
        kwargs.setdefault("auth", (SEGMENT_TOKEN, ""))
        return self._send("GET", f"{self.base_url}/segment/profiles{path}", **kwargs)

    def public(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", {})
        headers.setdefault("Authorization", f"Bearer {SEGMENT_TOKEN}")
        return self._send(method, f"{self.base_url}/segment/api{path}", headers=headers, **kwargs)

    def regulate(self, user_ids: list[str], regulation_type: str = "SUPPRESS_WITH_DELETE") -> str:
        body = {"regulationType": regulation_type, "subjectType": "USER_ID", "subjectIds": user_ids}
        response = self.public("POST", "/regulations", json=body)
        assert response.status_code == 200, response.text
        return response.json()["data"]["regulateId"]

    def regulation_status(self, regulate_id: str) -> str:
        return self.public("GET", f"/regulations/{regulate_id}").json()["data"]["regulation"]["overallStatus"]
