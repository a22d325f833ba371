"""Emulation of Segment's Profile API (``profiles.segment.com``) and Public API regulations.

Profile API, under ``/segment/profiles``: a profile's ``external_ids`` and ``traits`` by
``<type>:<value>`` or by segment id (``use_...``), HTTP Basic with the access token as username
and an empty password, errors ``{"error": {"code", "message"}}``. Lookups are case-sensitive, and
a literal ``+`` in the path reads as a space, which is why Segment documents ``%2B``.

Public API, under ``/segment/api``: ``POST /regulations`` and ``GET /regulations/{regulateId}``
with Bearer auth and the ``{"data": ...}`` / ``{"errors": [...]}`` envelopes of
``segment.subset.json``. A regulation moves INITIALIZED -> RUNNING -> FINISHED over
``regulation_seconds``; when it finishes, the profiles of its user ids are gone (404). Seeded
people flagged ``segment_failed`` or ``segment_stuck`` make it end FAILED or stay RUNNING.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import unquote

from starlette.responses import Response

from sandbox.ids import SEGMENT_SOURCE_ID, SEGMENT_SPACE_ID, SEGMENT_WORKSPACE_ID
from sandbox.state import Regulation, SandboxState, SegmentProfile, isoformat
from sandbox.web import Call, Service, bearer_token, json_response, parse_basic_auth

PROFILE_ROOT = "/v1/spaces/{space_id}/collections/{collection}/profiles/{identifier}"
ID_TYPES = ("user_id", "email", "phone", "anonymous_id")
#: The sandbox space's Profile API access tokens all start with this; any other token is refused.
PROFILE_TOKEN_PREFIX = "sandbox-"
REGULATION_TYPES = (
    "DELETE_INTERNAL",
    "DELETE_ONLY",
    "SUPPRESS_ONLY",
    "SUPPRESS_WITH_DELETE",
    "SUPPRESS_WITH_DELETE_INTERNAL",
    "UNSUPPRESS",
)
SUBJECT_TYPES = ("OBJECT_ID", "USER_ID")
MAX_SUBJECT_IDS = 5000
MAX_BODY_BYTES = 4 * 1024 * 1024
RATE_LIMIT_PER_HOUR = 1000  # what the sandbox reports in X-RateLimit-* headers
DESTINATIONS = (("segment", "Segment"), ("webhooks-actions", "Webhooks (Actions)"))


class ProfileError(Exception):
    """A Profile API error: ``{"error": {"code": ..., "message": ...}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def profile_missing() -> ProfileError:
    return ProfileError(404, "not_found", "Profile was not found.")


class ProfileService(Service):
    api = "segment"
    name = "profiles.segment.com"
    mount = "/profiles"

    def __init__(self) -> None:
        super().__init__()
        self.route("GET", PROFILE_ROOT + "/external_ids", get_external_ids)
        self.route("GET", PROFILE_ROOT + "/traits", get_traits)

    def authenticate(self, call: Call) -> Response | None:
        credentials = parse_basic_auth(call.header("authorization"))
        if credentials is None or not credentials[0] or credentials[1]:
            message = (
                "No valid Access Token provided: send it as the Basic auth username with an empty password."
            )
            return self._error(ProfileError(401, "authentication_error", message))
        if not credentials[0].startswith(PROFILE_TOKEN_PREFIX):
            # Access tokens belong to one space: another space's (or a revoked) token is refused.
            return self._error(ProfileError(401, "authentication_error", "Invalid Access Token."))
        return None

    def not_found(self, call: Call) -> Response:
        return self._error(ProfileError(404, "not_found", "The requested resource doesn't exist."))

    def fault(self, call: Call, status: int, retry_after: str) -> Response:
        if status == 429:
            return self._error(
                ProfileError(429, "rate_limit_error", "Too many requests hit the API too quickly.")
            )
        return self._error(ProfileError(status, "internal_error", "Something went wrong on Segment's side."))

    def run(self, call: Call) -> Response:
        try:
            return super().run(call)
        except ProfileError as exc:
            return self._error(exc)

    def _error(self, exc: ProfileError) -> Response:
        return json_response({"error": {"code": exc.code, "message": exc.message}}, exc.status)

    def finish(self, call: Call, response: Response) -> Response:
        response.headers["Request-Id"] = call.state.ids.uuid()
        return response


def _identifier(call: Call) -> tuple[str, str]:
    """``(type, value)`` of the path identifier; a bare ``use_...`` is a segment id."""
    # A literal "+" reads as a space (form decoding), so phones must be sent as %2B.
    raw = call.raw_params["identifier"]
    if ":" not in raw:
        raw = re.sub("%3[aA]", ":", raw, count=1)  # a client may have encoded the separator
    id_type, sep, raw_value = raw.partition(":")
    if not sep:
        decoded = unquote(raw)
        if decoded.startswith("use_"):
            return "segment_id", decoded
        message = "The profile identifier must be <id_type>:<value>, e.g. user_id:u1234."
        raise ProfileError(400, "invalid_request_error", message)
    return unquote(id_type), unquote(raw_value.replace("+", " "))


def _find_profile(call: Call) -> SegmentProfile:
    if call.params["space_id"] != SEGMENT_SPACE_ID:
        raise ProfileError(404, "not_found", "Space was not found.")
    if call.params["collection"] != "users":
        raise profile_missing()
    id_type, value = _identifier(call)
    if id_type not in (*ID_TYPES, "segment_id"):
        raise profile_missing()
    for profile in call.state.segment_profiles.values():
        if not profile.deleted and profile.matches(id_type, value):
            return profile
    raise profile_missing()


def _limit(call: Call, default: int, maximum: int) -> int:
    raw = call.query.get("limit", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise ProfileError(400, "validation_error", f"The parameter `limit` must be between 1 and {maximum}.")
    return int(raw)


def _offset(call: Call, prefix: str) -> int:
    cursor = call.query.get("next", "")
    if not cursor:
        return 0
    if not cursor.startswith(prefix) or not cursor[len(prefix) :].isdigit():
        raise ProfileError(400, "validation_error", "The parameter `next` is not a valid cursor.")
    return int(cursor[len(prefix) :])


def _cursor(profile: SegmentProfile, kind: str, has_more: bool, next_cursor: str) -> dict[str, Any]:
    url = f"/v1/spaces/{SEGMENT_SPACE_ID}/collections/users/profiles/{profile.segment_id}/{kind}"
    return {"url": url, "has_more": has_more, "next": next_cursor if has_more else ""}


def get_external_ids(call: Call) -> Response:
    profile = _find_profile(call)
    limit, offset = _limit(call, 25, 100), _offset(call, "map_")
    call.log["page_size"] = limit  # introspection: what page size the client asked for
    include = {t.strip() for t in call.query.get("include", "").split(",") if t.strip()}
    ids = [x for x in profile.external_ids if not include or x["type"] in include]
    page = ids[offset : offset + limit]
    has_more = offset + limit < len(ids)
    cursor = _cursor(profile, "external_ids", has_more, f"map_{offset + limit}")
    return json_response({"data": [dict(x) for x in page], "cursor": cursor})


def get_traits(call: Call) -> Response:
    profile = _find_profile(call)
    limit, offset = _limit(call, 10, 200), _offset(call, "trt_")
    include = {t.strip() for t in call.query.get("include", "").split(",") if t.strip()}
    names = [name for name in profile.traits if not include or name in include]
    page = names[offset : offset + limit]
    has_more = offset + limit < len(names)
    if call.query.get("verbose", "false").lower() == "true":
        first_source = profile.external_ids[0]["created_at"]
        traits: dict[str, Any] = {
            name: {"value": profile.traits[name], "source_id": SEGMENT_SOURCE_ID, "updated_at": first_source}
            for name in page
        }
    else:
        traits = {name: profile.traits[name] for name in page}
    return json_response(
        {"traits": traits, "cursor": _cursor(profile, "traits", has_more, f"trt_{offset + limit}")}
    )


# --- Public API: regulations ------------------------------------------------------------------------


class PublicApiError(Exception):
    """A Public API error: ``{"errors": [{"type", "message", "field"?}]}``."""

    def __init__(self, status: int, error_type: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = {"type": error_type, "message": message} | ({"field": field} if field else {})


class PublicApiService(Service):
    api = "segment"
    name = "api.segmentapis.com"
    mount = "/api"

    def __init__(self) -> None:
        super().__init__()
        self.route("POST", "/regulations", create_regulation)
        self.route("GET", "/regulations/{regulateId}", get_regulation)
        self.route("GET", "/regulations", list_regulations)

    def authenticate(self, call: Call) -> Response | None:
        if bearer_token(call.header("authorization")) is None:
            return self._errors(PublicApiError(401, "unauthorized", "Missing or invalid API token."))
        return None

    def not_found(self, call: Call) -> Response:
        return self._errors(PublicApiError(404, "NotFound", "Resource not found"))

    def fault(self, call: Call, status: int, retry_after: str) -> Response:
        if status == 429:
            response = self._errors(PublicApiError(429, "RateLimited", "Rate limit exceeded"))
            response.headers.update(_rate_limit_headers(call.state, remaining=0))
            return response
        return self._errors(PublicApiError(status, "InternalServerError", "Internal server error"))

    def run(self, call: Call) -> Response:
        try:
            return super().run(call)
        except PublicApiError as exc:
            return self._errors(exc)

    def _errors(self, exc: PublicApiError) -> Response:
        return json_response({"errors": [exc.error]}, exc.status)


def _rate_limit_headers(state: SandboxState, remaining: int) -> dict[str, str]:
    reset = state.now_utc().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return {
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Consumed": str(RATE_LIMIT_PER_HOUR - remaining),
        "X-RateLimit-Reset": format_datetime(reset, usegmt=True),
    }


def _regulation_input(call: Call) -> tuple[str, str, list[str]]:
    """The validated create input, or a 422 ``input-validation`` error naming the field."""
    if len(call.body) > MAX_BODY_BYTES:
        raise PublicApiError(413, "payload-too-large", "The request body is larger than 4 MB.")
    try:
        body = json.loads(call.body or b"null")
    except ValueError:
        raise PublicApiError(422, "input-validation", "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise PublicApiError(422, "input-validation", "The request body must be a JSON object.")
    for name in ("regulationType", "subjectType", "subjectIds"):
        if name not in body:
            raise PublicApiError(422, "input-validation", f'"{name}" is required', name)
    regulation_type, subject_type, subject_ids = (
        body["regulationType"],
        body["subjectType"],
        body["subjectIds"],
    )
    if regulation_type not in REGULATION_TYPES:
        allowed = ", ".join(REGULATION_TYPES)
        raise PublicApiError(
            422, "input-validation", f'"regulationType" must be one of {allowed}', "regulationType"
        )
    if subject_type not in SUBJECT_TYPES:
        message = f'"subjectType" must be one of {", ".join(SUBJECT_TYPES)}'
        raise PublicApiError(422, "input-validation", message, "subjectType")
    if not isinstance(subject_ids, list) or not all(isinstance(i, str) and i for i in subject_ids):
        raise PublicApiError(
            422, "input-validation", '"subjectIds" must be an array of strings', "subjectIds"
        )
    if not subject_ids:
        raise PublicApiError(
            422, "input-validation", '"subjectIds" must contain at least 1 item', "subjectIds"
        )
    if len(subject_ids) > MAX_SUBJECT_IDS:
        message = f'"subjectIds" must contain at most {MAX_SUBJECT_IDS} items'
        raise PublicApiError(422, "input-validation", message, "subjectIds")
    return regulation_type, subject_type, subject_ids


def _outcome(state: SandboxState, subject_ids: list[str]) -> str:
    """How the regulation ends, from the flags of the seeded people it covers."""
    flags = {flag for uid in subject_ids if (p := state.person_by_user_id(uid)) for flag in p.flags}
    if "segment_stuck" in flags:
        return "stuck"
    return "fail" if "segment_failed" in flags else "finish"


def _created(regulation: Regulation) -> datetime:
    return datetime.strptime(regulation.created_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _quota_window(state: SandboxState, now: datetime) -> tuple[datetime, datetime]:
    """The current window of the regulation quota, ``[start, reset)``: the calendar month (UTC),
    or with ``regulation_quota_seconds`` windows of that length back to back from the first
    regulation."""
    period = state.settings.regulation_quota_seconds
    if not period:
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        return start, (start + timedelta(days=32)).replace(day=1)
    first = min((_created(r) for r in state.regulations.values()), default=now)
    windows = math.floor((now - first).total_seconds() / period)
    start = first + timedelta(seconds=windows * period)
    return start, start + timedelta(seconds=period)


def _quota_refusal(state: SandboxState, subjects: int) -> Response | None:
    """Segment's monthly regulation quota (110,000 users a calendar month per workspace; here
    ``regulation_quota`` users per window): a regulation that would exceed it is refused with a
    429 whose ``Retry-After`` and ``X-RateLimit-Reset`` name the reset, and creates nothing."""
    quota = state.settings.regulation_quota
    if not quota:
        return None
    now = state.now_utc()
    start, reset = _quota_window(state, now)
    used = sum(len(r.subject_ids) for r in state.regulations.values() if _created(r) >= start)
    if used + subjects <= quota:
        return None
    message = (
        f"Regulation limit reached: this workspace may regulate {quota:g} users per "
        f"{'calendar month' if not state.settings.regulation_quota_seconds else 'quota window'}."
    )
    headers = {
        "Retry-After": str(math.ceil((reset - now).total_seconds())),
        "X-RateLimit-Remaining": str(max(0, int(quota - used))),
        "X-RateLimit-Reset": format_datetime(reset, usegmt=True),
    }
    return json_response({"errors": [{"type": "RateLimited", "message": message}]}, 429, headers)


def create_regulation(call: Call) -> Response:
    regulation_type, subject_type, subject_ids = _regulation_input(call)
    state = call.state
    refused = _quota_refusal(state, len(subject_ids))
    if refused is not None:
        return refused
    regulation = Regulation(
        id=state.ids.ksuid(),
        created_at=isoformat(state.now_utc()),
        started=state.clock(),
        duration=state.settings.regulation_seconds,
        regulation_type=regulation_type,
        subject_type=subject_type,
        subject_ids=list(subject_ids),
        outcome=_outcome(state, subject_ids) if subject_type == "USER_ID" else "finish",
    )
    state.add_regulation(regulation)
    headers = _rate_limit_headers(state, remaining=RATE_LIMIT_PER_HOUR - len(state.regulations))
    return json_response({"data": {"regulateId": regulation.id}}, 200, headers)


def _stream_status(regulation: Regulation, status: str) -> list[dict[str, Any]]:
    if status == "INITIALIZED":
        return []
    finished_at = regulation.finished_at or ""
    destinations = []
    for index, (destination_id, name) in enumerate(DESTINATIONS):
        state, error = status, ""
        if status == "FAILED" and index == 0:
            state = "FINISHED"
        elif status == "FAILED":
            error = "Destination returned HTTP 500 to the deletion request; it was not retried."
        destinations.append(
            {
                "name": name,
                "id": destination_id,
                "status": state,
                "errString": error,
                "finishedAt": finished_at if state in ("FINISHED", "FAILED") else "",
            }
        )
    return [{"id": SEGMENT_SOURCE_ID, "destinationStatus": destinations}]


def regulation_body(regulation: Regulation, status: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": regulation.id,
        "workspaceId": SEGMENT_WORKSPACE_ID,
        "overallStatus": status,
        "createdAt": regulation.created_at,
        "streamStatus": _stream_status(regulation, status),
    }
    if regulation.finished_at and status in ("FINISHED", "FAILED"):
        body["finishedAt"] = regulation.finished_at
    return body


def get_regulation(call: Call) -> Response:
    regulation = call.state.regulations.get(call.params["regulateId"])
    if regulation is None:
        raise PublicApiError(404, "NotFound", "Resource not found")
    status = regulation.status(call.state.clock())
    return json_response({"data": {"regulation": regulation_body(regulation, status)}})


# --- Public API: listing regulations (listWorkspaceRegulations) -------------------------------------

LIST_COUNT_DEFAULT = 200  # "If pagination is optional and not provided, the count will default to 200"
LIST_COUNT_MAX = 1000


def _list_query(call: Call, name: str) -> str | None:
    """``pagination.count`` as the docs write it, or ``pagination[count]`` as the Go SDK does."""
    outer, inner = name.split(".")
    return call.query.get(name, call.query.get(f"{outer}[{inner}]"))


def _list_count(call: Call) -> int:
    raw = _list_query(call, "pagination.count")
    if raw is None:
        return LIST_COUNT_DEFAULT
    if not raw.isdigit() or not 1 <= int(raw) <= LIST_COUNT_MAX:
        message = f'"pagination.count" must be an integer between 1 and {LIST_COUNT_MAX}'
        raise PublicApiError(422, "input-validation", message, "pagination.count")
    return int(raw)


def _cursor_at(offset: int) -> str:
    """Opaque cursors like Segment's (``MA==``, ``Mw==``): the base64 of the offset."""
    return base64.b64encode(str(offset).encode()).decode()


def _list_offset(call: Call) -> int:
    raw = _list_query(call, "pagination.cursor")
    if not raw:
        return 0
    try:
        decoded = base64.b64decode(raw, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    if not decoded.isdigit():
        raise PublicApiError(422, "input-validation", '"pagination.cursor" is not valid', "pagination.cursor")
    return int(decoded)


def _list_filters(call: Call) -> tuple[str | None, set[str]]:
    """The ``status`` and ``regulationTypes`` filters (``regulationTypes`` repeated, or
    ``regulationTypes.0=``... as the Go SDK sends them)."""
    types = {
        value
        for key, value in call.query.multi_items()
        if key == "regulationTypes" or re.fullmatch(r"regulationTypes(\.\d+|\[\d*\])", key)
        for value in value.split(",")
        if value
    }
    return call.query.get("status"), types


def list_regulations(call: Call) -> Response:
    """The workspace's regulations, newest first, in pages of ``pagination.count``."""
    count, offset = _list_count(call), _list_offset(call)
    wanted_status, wanted_types = _list_filters(call)
    now = call.state.clock()
    entries = []
    for regulation in sorted(
        call.state.regulations.values(), key=lambda r: (r.created_at, r.id), reverse=True
    ):
        status = regulation.status(now)
        if wanted_status and status != wanted_status:
            continue
        if wanted_types and regulation.regulation_type not in wanted_types:
            continue
        entry: dict[str, Any] = {
            "id": regulation.id,
            "subjectType": regulation.subject_type,
            "subjects": list(regulation.subject_ids),
            "status": status,
            "createdAt": regulation.created_at,
            "regulationType": regulation.regulation_type,
        }
        if regulation.finished_at and status in ("FINISHED", "FAILED"):
            entry["finishedAt"] = regulation.finished_at
        entries.append(entry)
    page = entries[offset : offset + count]
    pagination = {
        "current": _cursor_at(offset),
        "next": _cursor_at(offset + count) if offset + count < len(entries) else None,
        "previous": _cursor_at(max(offset - count, 0)) if offset > 0 else None,
        "totalEntries": len(entries),
    }
    return json_response({"data": {"regulations": page, "pagination": pagination}})
