"""Twilio Segment: the Profile API (find a person's ids) and the Public API (regulations).

Both are plain HTTP APIs, so the hook is built on providers-http's :class:`HttpHook`, one
instance per API, configured from a single connection ``segment_default`` of type ``segment``
(one of type ``http`` with the same fields works too, without the form and the Test button):

* ``host``: Public API base URL (default ``https://api.segmentapis.com``);
* ``password``: Public API token (sent as ``Authorization: Bearer``);
* extra ``space_id``: the Unify space whose profiles we read;
* extra ``profile_api_token``: the space's Profile API access token (HTTP Basic username);
* extra ``profile_api_url``: default ``https://profiles.segment.com``
  (EU workspaces: ``https://profiles.euw1.segment.com``);
* extras ``email_id_type`` (default ``email``) and ``phone_id_type`` (default ``phone``): the
  external id types the space's identity resolution uses for emails and phones. They are per-space
  settings: phone is a custom type (Segment's own examples use ``phone`` and ``phone_number``);
* extra ``check_user_id``: the ``user_id`` of a profile that carries an email and a phone (an
  internal test person), read by the preflight to prove the space, the token and the two types.

Facts that shape this hook (see docs/api-notes.md): there is no "identify" lookup endpoint; a
profile is read with ``GET .../profiles/<type>:<value>/external_ids`` and a missing one is a 404
``{"error":{"code":"not_found"}}``. Deletion is ``POST /regulations`` with ``USER_ID`` subjects
only, so emails and phones must first be resolved to the profile's ``user_id`` values.

An unknown external id type, a wrong space or a wrong region also answer 404, exactly like "no
profile": nothing in one answer tells them apart. So "no profile" is read only from Segment's
documented 404 body, and :meth:`SegmentHook.checks` proves the configuration (it finds the
``check_user_id`` profile and the configured types on it) before any run claims a request.
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal
from urllib.parse import quote

import requests
from airflow.providers.http.hooks.http import HttpHook
from airflow.sdk import BaseHook
from requests.auth import AuthBase, HTTPBasicAuth

from gdpr_erasure.hooks.checks import CheckFailed, CheckResult, connection_test, run_check
from gdpr_erasure.hooks.connections import cached_connection, form_widgets, ui_field_behaviour
from gdpr_erasure.hooks.errors import ApiConfigurationError, PermanentApiError, TransientApiError
from gdpr_erasure.hooks.limiter import LIMIT_EXTRAS, ProviderLimiter, limiter_for
from gdpr_erasure.hooks.retry import DEFAULT_POLICY, RetryPolicy, call_with_retries, parse_retry_after
from gdpr_erasure.pii import quiet_identifier_loggers, scrub

DEFAULT_PUBLIC_API_URL = "https://api.segmentapis.com"
DEFAULT_PROFILE_API_URL = "https://profiles.segment.com"
MAX_SUBJECT_IDS = 5000  # per regulation (Segment Public API limit)
PROFILE_PAGE_LIMIT = 100
# Our settings in the connection's extra; HttpHook would otherwise send them as HTTP headers.
_CONFIG_KEYS = (
    "space_id",
    "profile_api_token",
    "profile_api_url",
    "email_id_type",
    "phone_id_type",
    "check_user_id",
)
#: External id types used when the connection does not name them (see the module docs).
DEFAULT_ID_TYPES = {"email": "email", "phone": "phone"}
_ID_TYPE_RE = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")

SegmentApi = Literal["public", "profiles"]
#: What we look a profile up by: the kind of identifier, mapped to the space's external id type.
IdKind = Literal["user_id", "email", "phone", "segment_id"]
REGULATION_FINAL = frozenset({"FINISHED", "FAILED", "PARTIAL_SUCCESS", "INVALID", "NOT_SUPPORTED"})


# The Profile API answers {"error": {"code": "not_found"}}; the Public API {"errors": [{"type":
# "not-found"}]} (checked against the sandbox and Segment's docs: docs/api-notes.md).
_NOT_FOUND_CODES = frozenset({"not_found", "not-found", "NotFound"})

_SEGMENT_ID_IN_URL = re.compile(r"/profiles/(use_[A-Za-z0-9]+)/")

#: Per thread: (conn_id, api, method) -> (the connection it was built from, the API's HttpHook).
_thread_http = threading.local()


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

    def get_conn(self, headers: dict[str, Any] | None = None, extra_options: dict[str, Any] | None = None):
        """One configured session for every call of this hook: providers-http builds a new
        ``requests.Session`` (a new TCP and TLS connection) on each call, which costs a handshake
        per Profile API read. The per-call ``headers`` are not merged into it: :meth:`run` sends
        them with each request.

        :param headers: unused here (``run`` sends them per request).
        :param extra_options: as :meth:`HttpHook.get_conn`; a session is kept per set of options.
        """
        options = dict(extra_options or {})
        key = repr(sorted(options.items()))
        if key not in self._sessions:
            session = super().get_conn(None, options)  # sets base_url and merged_extra
            self._sessions[key] = (session, getattr(self, "merged_extra", {}))
        session, self.merged_extra = self._sessions[key]  # run() reads merged_extra
        return session

    @cached_property
    def _sessions(self) -> dict[str, tuple[requests.Session, dict[str, Any]]]:
        return {}

    def close(self) -> None:
        """Close the sessions (their pooled connections)."""
        for session, _ in self._sessions.values():
            session.close()
        self._sessions.clear()

    def _configure_session_from_extra(self, session, connection, extra_options):
        session = super()._configure_session_from_extra(session, connection, extra_options)
        # HttpHook sends a connection's extras as headers: ours are settings, not headers.
        for key in (*_CONFIG_KEYS, *LIMIT_EXTRAS):
            session.headers.pop(key, None)
        return session


class SegmentHook(BaseHook):
    """Resolve Segment profiles and request their deletion.

    :param segment_conn_id: Airflow connection (see module docs).
    :param retry_policy: backoff for 429, 5xx and connection errors.
    """

    conn_name_attr = "segment_conn_id"
    default_conn_name = "segment_default"
    conn_type = "segment"
    hook_name = "Twilio Segment"

    # The form as the pre-3.2 hook API; Airflow 3.3 reads the same from get_provider_info.
    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        return form_widgets(cls.conn_type)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return ui_field_behaviour(cls.conn_type)

    def __init__(
        self, segment_conn_id: str = default_conn_name, retry_policy: RetryPolicy = DEFAULT_POLICY
    ) -> None:
        super().__init__()
        self.segment_conn_id = segment_conn_id
        self.retry_policy = retry_policy
        quiet_identifier_loggers()

    @cached_property
    def extra(self) -> dict[str, Any]:
        return cached_connection(self.segment_conn_id).extra_dejson or {}

    @cached_property
    def space_id(self) -> str:
        space = self.extra.get("space_id")
        if not space:
            raise ApiConfigurationError(f"connection {self.segment_conn_id} has no space_id extra")
        return space

    @cached_property
    def id_types(self) -> dict[str, str]:
        """The space's external id type for each kind of identifier we look up."""
        types = {"user_id": "user_id"}
        for kind, default in DEFAULT_ID_TYPES.items():
            value = str(self.extra.get(f"{kind}_id_type") or default)
            if not _ID_TYPE_RE.match(value):
                raise ApiConfigurationError(
                    f"connection {self.segment_conn_id}: {kind}_id_type must be an external id type "
                    "of the space, e.g. phone or phone_number"
                )
            types[kind] = value
        return types

    def _http(self, api: SegmentApi, method: str) -> SegmentApiHttpHook:
        """The API's :class:`HttpHook`, kept per thread and reused by every Segment hook of this
        process while the connection it was built from is the cached one (five minutes; a changed
        connection builds a new one): its session keeps the TCP and TLS connection open across the
        calls of a batch. Per thread: a ``requests.Session`` is not documented thread-safe, and a
        batch works in threads."""
        connection = cached_connection(self.segment_conn_id)
        hooks = _thread_http.__dict__.setdefault("hooks", {})
        key = (self.segment_conn_id, api, method)
        built_from, http = hooks.get(key, (None, None))
        if http is not None and built_from is connection:
            return http
        if http is not None:
            http.close()
        http = SegmentApiHttpHook(api, method, self.segment_conn_id)
        hooks[key] = (connection, http)
        return http

    # -- Profile API -----------------------------------------------------------------------

    def get_profile(self, kind: IdKind, value: str) -> SegmentProfile | None:
        """The profile holding this identifier with all its external ids; None if there is none.

        ``kind`` is mapped to the space's external id type (``phone`` -> ``phone_id_type``...).

        Each external id has ``type`` (``user_id``, ``email``, ``anonymous_id``...) and ``id``. The
        profile's own ``segment_id`` (``use_...``) is read from the cursor URL, which Segment
        builds from it.
        """
        path = self._profile_path(kind, value, "external_ids")
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

    def profile_exists(self, kind: IdKind, value: str) -> bool:
        path = self._profile_path(kind, value, "external_ids")
        body = self._request(
            "profiles", "GET", path, "get external ids", params={"limit": 1}, missing_ok=True
        )
        return body is not None

    def _profile_path(self, kind: IdKind, value: str, resource: str) -> str:
        # Segment ids (use_...) are addressed bare; everything else as <type>:<value>. Quote all of
        # it: '+' must be %2B (documented), and '/' or '?' in a user id must not change the path.
        if kind == "segment_id":
            key = quote(value, safe="")
        else:
            key = f"{self.id_types[kind]}:{quote(value, safe='')}"
        return f"/v1/spaces/{self.space_id}/collections/users/profiles/{key}/{resource}"

    # -- Public API: regulations -------------------------------------------------------------

    def create_regulation(self, user_ids: list[str], regulation_type: str = "SUPPRESS_WITH_DELETE") -> str:
        """Create a regulation for these ``userId`` values; returns its ``regulateId``.

        Segment has no idempotency key: callers record the id right away and never call this
        twice for the same request (see ``SegmentRegulationOperator``).
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

    # -- preflight ---------------------------------------------------------------------------

    def checks(self) -> list[CheckResult]:
        """Read-only proof that both tokens work and that a lookup's 404 can mean "no profile"."""
        return [
            run_check("segment", "Public API token", self._check_public_api),
            run_check("segment", "Profile API token", self._check_profile_api),
            run_check("segment", "external id types", self._check_id_types),
            run_check("segment", "call budget", lambda: self.limiter.describe()),
        ]

    def test_connection(self) -> tuple[bool, str]:
        """The Airflow UI's Test button: the preflight's read-only checks with brief retries, one
        line, never a token."""
        return connection_test(self)

    def _check_public_api(self) -> str:
        self._request("public", "GET", "/regulations", "list regulations", params={"pagination.count": 1})
        return "regulations readable"

    def _check_profile_api(self) -> str:
        # An id nobody has: the token and space are right only if Segment answers its documented
        # "not found" (401/403 raise; a 404 of another shape is not read as "no profile").
        if self.get_profile("user_id", f"gdpr-erasure-preflight-{uuid.uuid4().hex}") is not None:
            raise CheckFailed("an id nobody has returned a profile: is profile_api_url a real Profile API?")
        return f"space {self.space_id}: an unknown id answers 404 not_found"

    def _check_id_types(self) -> str:
        user_id = self.extra.get("check_user_id")
        if not user_id:
            raise CheckFailed(
                f"connection {self.segment_conn_id} has no check_user_id extra: set it to the user_id "
                "of a test profile with an email and a phone, so the external id types can be proven"
            )
        profile = self.get_profile("user_id", str(user_id))
        if profile is None:
            raise CheckFailed(
                f"the check_user_id profile was not found in space {self.space_id}: check space_id, "
                "profile_api_url (EU: https://profiles.euw1.segment.com) and check_user_id"
            )
        present = {item.get("type") for item in profile.external_ids}
        missing = [
            f"{kind}_id_type={self.id_types[kind]}"
            for kind in DEFAULT_ID_TYPES
            if self.id_types[kind] not in present
        ]
        if missing:
            raise CheckFailed(
                f"the check profile has no external id of type {', '.join(missing)} (it has: "
                f"{', '.join(sorted(t for t in present if t))}): set the connection's id types to the space's"
            )
        return f"email as {self.id_types['email']}, phone as {self.id_types['phone']}"

    # -- plumbing ----------------------------------------------------------------------------

    @cached_property
    def limiter(self) -> ProviderLimiter:
        """The space's Profile API budget: 100 requests/s per space (docs/limits.md)."""
        return limiter_for("segment", self.space_id, self.extra, self.segment_conn_id)

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

        if api == "profiles":
            return call_with_retries(
                lambda: self.limiter.run(attempt, api="segment", operation=operation),
                policy=self.retry_policy,
            )
        # The Public API publishes no rate; its few calls (a regulation per request, its proof)
        # are paced by the 429 and X-RateLimit-Reset it sends.
        return call_with_retries(attempt, policy=self.retry_policy)


def _interpret(response: requests.Response, operation: str, missing_ok: bool) -> dict[str, Any] | None:
    status = response.status_code
    if 200 <= status < 300:
        return response.json()
    code, message = _error_code_and_message(_json_or_empty(response))
    # Only Segment's own "not found" answer means absent; a 404 from a proxy or a wrong URL
    # (HTML, an empty body, another code) fails loud instead of reading as "no profile".
    if status == 404 and missing_ok and code in _NOT_FOUND_CODES:
        return None
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
