"""Twilio Segment: the Profile API (find a person's ids) and the Public API (regulations).

Both are plain HTTP APIs, so the hook is built on providers-http's :class:`HttpHook`, one
instance per API, configured from a single connection ``segment_default``:

* ``host``: Public API base URL (default ``https://api.segmentapis.com``);
* ``password``: Public API token (sent as ``Authorization: Bearer``);
* extra ``space_id``: the Unify space whose profiles we read;
* extra ``profile_api_token``: the space's Profile API access token (HTTP Basic username);
* extra ``profile_api_url``: default ``https://profiles.segment.com``
  (EU workspaces: ``https://profiles.euw1.segment.com``).

Facts that shape this hook (see docs/api-notes.md): there is no "identify" lookup endpoint; a
profile is read with ``GET .../profiles/<type>:<value>/external_ids`` and a missing one is a 404
``{"error":{"code":"not_found"}}``. Deletion is ``POST /regulations`` with ``USER_ID`` subjects
only, so emails and phones must first be resolved to the profile's ``user_id`` values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal
from urllib.parse import quote

import requests
from airflow.providers.http.hooks.http import HttpHook
from airflow.sdk import BaseHook
from requests.auth import AuthBase, HTTPBasicAuth

from gdpr_erasure.hooks.connections import cached_connection
from gdpr_erasure.hooks.errors import ApiConfigurationError, PermanentApiError, TransientApiError
from gdpr_erasure.hooks.retry import DEFAULT_POLICY, RetryPolicy, call_with_retries, parse_retry_after
from gdpr_erasure.pii import quiet_identifier_loggers, scrub

DEFAULT_PUBLIC_API_URL = "https://api.segmentapis.com"
DEFAULT_PROFILE_API_URL = "https://profiles.segment.com"
MAX_SUBJECT_IDS = 5000  # per regulation (Segment Public API limit)
PROFILE_PAGE_LIMIT = 100
# Our settings in the connection's extra; HttpHook would otherwise send them as HTTP headers.
_CONFIG_KEYS = ("space_id", "profile_api_token", "profile_api_url")

SegmentApi = Literal["public", "profiles"]
IdType = Literal["user_id", "email", "phone", "anonymous_id", "segment_id"]
REGULATION_FINAL = frozenset({"FINISHED", "FAILED", "PARTIAL_SUCCESS", "INVALID", "NOT_SUPPORTED"})


_SEGMENT_ID_IN_URL = re.compile(r"/profiles/(use_[A-Za-z0-9]+)/")


@dataclass
class SegmentProfile:
    """A Unify profile: its ``use_...`` id (when Segment tells us) and its external ids."""

    segment_id: str | None
    external_ids: list[dict[str, Any]] = field(default_factory=list)

    def ids_of_type(self, id_type: str) -> list[str]:
        return [item["id"] for item in self.external_ids if item.get("type") == id_type and item.get("id")]


class _Bearer(AuthBase):
    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request):
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


class SegmentApiHttpHook(HttpHook):
    """:class:`HttpHook` for one of Segment's two APIs, configured from the Segment connection.

    :param api: ``public`` (regulations, bearer token) or ``profiles`` (Profile API, basic auth).
    :param method: HTTP method.
    :param segment_conn_id: the Segment connection.
    """

    def __init__(self, api: SegmentApi, method: str, segment_conn_id: str) -> None:
        super().__init__(method=method, http_conn_id=segment_conn_id)
        self.api = api

    @classmethod
    def get_connection(cls, conn_id: str):
        # HttpHook looks the connection up on every call; once per process is enough.
        return cached_connection(conn_id)

    def _set_base_url(self, connection) -> None:
        if self.api == "profiles":
            self.base_url = (
                connection.extra_dejson.get("profile_api_url") or DEFAULT_PROFILE_API_URL
            ).rstrip("/")
        else:
            self.base_url = (connection.host or DEFAULT_PUBLIC_API_URL).rstrip("/")
        self._base_url_initialized = True

    def _extract_auth(self, connection) -> AuthBase:
        if self.api == "profiles":
            token = connection.extra_dejson.get("profile_api_token")
            if not token:
                raise ApiConfigurationError(f"connection {self.http_conn_id} has no profile_api_token extra")
            return HTTPBasicAuth(token, "")
        if not connection.password:
            raise ApiConfigurationError(f"connection {self.http_conn_id} has no Public API token (password)")
        return _Bearer(connection.password)

    def _configure_session_from_extra(self, session, connection, extra_options):
        session = super()._configure_session_from_extra(session, connection, extra_options)
        for key in _CONFIG_KEYS:
            session.headers.pop(key, None)
        return session


class SegmentHook(BaseHook):
    """Resolve Segment profiles and request their deletion.

    :param segment_conn_id: Airflow connection (see module docs).
    :param retry_policy: backoff for 429, 5xx and connection errors.
    """

    conn_name_attr = "segment_conn_id"
    default_conn_name = "segment_default"
    conn_type = "http"
    hook_name = "Twilio Segment"

    def __init__(
        self, segment_conn_id: str = default_conn_name, retry_policy: RetryPolicy = DEFAULT_POLICY
    ) -> None:
        super().__init__()
        self.segment_conn_id = segment_conn_id
        self.retry_policy = retry_policy
        quiet_identifier_loggers()

    @cached_property
    def space_id(self) -> str:
        space = (cached_connection(self.segment_conn_id).extra_dejson or {}).get("space_id")
        if not space:
            raise ApiConfigurationError(f"connection {self.segment_conn_id} has no space_id extra")
        return space

    def _http(self, api: SegmentApi, method: str) -> SegmentApiHttpHook:
        return SegmentApiHttpHook(api, method, self.segment_conn_id)

    # -- Profile API -----------------------------------------------------------------------

    def get_profile(self, id_type: IdType, value: str) -> SegmentProfile | None:
        """The profile holding ``id_type:value`` with all its external ids; None if there is none.

        Each external id has ``type`` (``user_id``, ``email``, ``anonymous_id``...) and ``id``. The
        profile's own ``segment_id`` (``use_...``) is read from the cursor URL, which Segment
        builds from it.
        """
        path = self._profile_path(id_type, value, "external_ids")
        profile = SegmentProfile(segment_id=None, external_ids=[])
        params: dict[str, Any] = {"limit": PROFILE_PAGE_LIMIT}
        while True:
            body = self._request("profiles", "GET", path, "get external ids", params=params, missing_ok=True)
            if body is None:
                return profile if profile.external_ids else None
            profile.external_ids.extend(body.get("data") or [])
            cursor = body.get("cursor") or {}
            match = _SEGMENT_ID_IN_URL.search(cursor.get("url") or "")
            if match and profile.segment_id is None:
                profile.segment_id = match.group(1)
            if not cursor.get("has_more") or not cursor.get("next"):
                return profile
            params = {"limit": PROFILE_PAGE_LIMIT, "next": cursor["next"]}

    def profile_exists(self, id_type: IdType, value: str) -> bool:
        path = self._profile_path(id_type, value, "external_ids")
        body = self._request(
            "profiles", "GET", path, "get external ids", params={"limit": 1}, missing_ok=True
        )
        return body is not None

    def _profile_path(self, id_type: IdType, value: str, resource: str) -> str:
        # Segment ids (use_...) are addressed bare; everything else as <type>:<value>. Quote all of
        # it: '+' must be %2B (documented), and '/' or '?' in a user id must not change the path.
        key = quote(value, safe="") if id_type == "segment_id" else f"{id_type}:{quote(value, safe='')}"
        return f"/v1/spaces/{self.space_id}/collections/users/profiles/{key}/{resource}"

    # -- Public API: regulations -------------------------------------------------------------

    def create_regulation(self, user_ids: list[str], regulation_type: str = "SUPPRESS_WITH_DELETE") -> str:
        """Create a regulation for these ``userId`` values; returns its ``regulateId``.

        Segment has no idempotency key: callers record the id right away and never call this
        twice for the same request (see the purge operator).
        """
        if not user_ids:
            raise ValueError("a regulation needs at least one user id")
        if len(user_ids) > MAX_SUBJECT_IDS:
            raise ValueError(f"at most {MAX_SUBJECT_IDS} user ids per regulation")
        body = self._request(
            "public",
            "POST",
            "/regulations",
            "create regulation",
            json={"regulationType": regulation_type, "subjectType": "USER_ID", "subjectIds": list(user_ids)},
        )
        return body["data"]["regulateId"]

    def get_regulation(self, regulate_id: str) -> dict[str, Any] | None:
        """The regulation (``overallStatus``, ``streamStatus``...), or None if Segment has none."""
        body = self._request(
            "public", "GET", f"/regulations/{quote(regulate_id, safe='')}", "get regulation", missing_ok=True
        )
        return None if body is None else body["data"]["regulation"]

    # -- plumbing ----------------------------------------------------------------------------

    def _request(
        self,
        api: SegmentApi,
        method: str,
        path: str,
        operation: str,
        *,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        missing_ok: bool = False,
    ) -> dict[str, Any] | None:
        http = self._http(api, method)
        headers = {"Accept": "application/json"}
        if json is not None:
            headers["Content-Type"] = "application/json"

        def attempt() -> dict[str, Any] | None:
            try:
                response = http.run(
                    path,
                    data=params,
                    headers=headers,
                    json=json,
                    extra_options={"check_response": False, "timeout": 30},
                )
            except requests.RequestException as exc:
                # The exception text holds the URL, which holds the email or phone: keep the type only.
                raise TransientApiError("segment", operation, detail=type(exc).__name__) from None
            return _interpret(response, operation, missing_ok)

        return call_with_retries(attempt, policy=self.retry_policy)


def _interpret(response: requests.Response, operation: str, missing_ok: bool) -> dict[str, Any] | None:
    status = response.status_code
    if 200 <= status < 300:
        return response.json()
    if status == 404 and missing_ok:
        return None
    code, message = _error_code_and_message(_json_or_empty(response))
    # Retry-After (whole seconds) when the token is rate limited; otherwise X-RateLimit-Reset,
    # an RFC 5322 date (Segment Public API docs, current SDK).
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if retry_after is None and status == 429:
        retry_after = parse_retry_after(response.headers.get("X-RateLimit-Reset"))
    cls = TransientApiError if status == 429 or status >= 500 else PermanentApiError
    raise cls("segment", operation, status=status, code=code, detail=scrub(message), retry_after=retry_after)


def _json_or_empty(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_code_and_message(body: dict[str, Any]) -> tuple[str | None, str]:
    """Profile API: ``{"error": {"code", "message"}}``; Public API: ``{"errors": [{"type", "message"}]}``."""
    if isinstance(body.get("error"), dict):
        return body["error"].get("code"), body["error"].get("message") or ""
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return errors[0].get("type"), errors[0].get("message") or ""
    return None, ""
