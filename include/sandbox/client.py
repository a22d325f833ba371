"""The one client of the sandbox's control API (``/_sandbox/...``, docs/sandbox.md): re-seed it,
read its people and what remains of them, set fault knobs, read the requests it served.

The demo, the tests, the compose-stack harness and the benchmarks all use this class, so the
control API has one caller to change when it changes.
"""

from __future__ import annotations

from typing import Any

import requests


class SandboxClient:
    """The control API of the sandbox at ``base_url`` (``http://127.0.0.1:PORT``).

    :param base_url: the sandbox's base URL, without ``/_sandbox``.
    :param timeout: seconds to wait for each answer.
    """

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()

    def __repr__(self) -> str:
        return f"SandboxClient({self.base_url!r})"

    def control(self, method: str, path: str, **kwargs: Any) -> Any:
        """One control call; its JSON answer, or ``None`` for an empty one (204).

        :param method: the HTTP method.
        :param path: the path under ``/_sandbox`` (``/people``).
        :param kwargs: more ``requests`` arguments (``json=...``).
        :raises requests.HTTPError: on a 4xx or 5xx answer.
        """
        response = self.http.request(
            method, f"{self.base_url}/_sandbox{path}", timeout=self.timeout, **kwargs
        )
        response.raise_for_status()
        return response.json() if response.content else None

    def __call__(self, method: str, path: str, **kwargs: Any) -> Any:
        """``client("GET", "/people")``: the same as :meth:`control`, for calls without a helper."""
        return self.control(method, path, **kwargs)

    def healthy(self) -> bool:
        """Whether the sandbox answers its health check (no exception while it is starting)."""
        try:
            return self.http.get(f"{self.base_url}/_sandbox/health", timeout=1).ok
        except requests.RequestException:
            return False

    def reset(self, **overrides: Any) -> dict[str, Any]:
        """Re-seed, clear faults and the request log.

        :param overrides: settings to change (``seed``, ``people``, ``regulation_seconds``, ...).
        """
        return self.control("POST", "/reset", json=overrides)

    def catalog(self) -> dict[str, Any]:
        """The whole ``/_sandbox/people`` answer: accounts, settings and people."""
        return self.control("GET", "/people")

    def accounts(self) -> dict[str, Any]:
        """The emulated accounts (ids, credentials, base URLs): what connections point at."""
        return self.catalog()["accounts"]

    def people(self) -> list[dict[str, Any]]:
        return self.catalog()["people"]

    def people_by_key(self) -> dict[str, dict[str, Any]]:
        return {person["key"]: person for person in self.people()}

    def person(self, key: str) -> dict[str, Any]:
        """One seeded person.

        :param key: the person's key (``person-001``, ``multi_stripe``, ...).
        """
        return next(p for p in self.people() if p["key"] == key)

    def state(self, key: str) -> dict[str, Any]:
        """What remains of a person in every emulated service.

        :param key: the person's key.
        """
        return self.control("GET", f"/state/person/{key}")

    def faults(self) -> dict[str, Any]:
        return self.control("GET", "/faults")

    def set_faults(self, faults: dict[str, Any]) -> dict[str, Any]:
        """Replace the fault knobs (APIs and knobs not named return to their defaults).

        :param faults: ``{"stripe": {"rate_429": 0.2}, ...}``.
        """
        return self.control("PUT", "/faults", json=faults)

    def limits(self) -> dict[str, Any]:
        """The provider limits, their counts and the calls in flight now: ``{"limits": {...},
        "counts": {api: {"admitted", "refused_rate", "refused_concurrency", "peak_concurrency"}},
        "in_flight": {api: n}}``."""
        return self.control("GET", "/limits")

    def set_limits(self, limits: dict[str, Any]) -> dict[str, Any]:
        """Replace the provider limits (APIs and limits not named have none) and zero the counts.

        :param limits: ``{"stripe": {"rate": 25, "burst": 25, "concurrency": 5}, ...}``.
        """
        return self.control("PUT", "/limits", json=limits)

    def set_dispute_status(self, dispute_id: str, status: str) -> dict[str, Any]:
        """Move a Stripe dispute to ``status`` (``won``, ``lost``, ...), as Stripe does when it is
        decided: what closes an ``open_dispute`` case.

        :param dispute_id: the dispute (``dp_...``, in :meth:`state`'s ``stripe.disputes``).
        :param status: a ``dispute.status`` of the official spec.
        """
        return self.control("PUT", f"/stripe/disputes/{dispute_id}", json={"status": status})

    def clear_requests_log(self) -> None:
        self.control("DELETE", "/requests")

    def request_counts(self) -> list[dict[str, Any]]:
        """Exact totals per route and status (the log keeps only the newest calls)."""
        return self.control("GET", "/requests/counts")

    def requests_log(self, after: int | None = None) -> list[dict[str, Any]]:
        """The calls served, oldest first, each numbered (``seq``); the log keeps the newest 10,000.

        :param after: only the calls numbered above this ``seq`` (what a reader of a long run has
            not seen yet).
        """
        return self.control("GET", "/requests", params=None if after is None else {"after": after})
