"""Emulation of the Twilio Memory v1 endpoints the pipeline calls (``memory.twilio.com``).

The store itself (``GET /v1/ControlPlane/Stores/{storeId}``, the preflight's check of
``memory_store_id``: 404 for any other well-formed store id) and its profiles: lookup by
identifier (phone numbers normalised to E.164, emails to lower case), fetch and
asynchronous delete: ``DELETE`` answers 202 and the profile disappears only after
``memory_delete_seconds``; until then it can still be fetched and looked up, as the real API
warns ("Downstream caches ... may take time to reflect the deletion"). Error bodies are the
spec's ``TwilioError`` (code, message, more_info, status, and nothing else).
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from starlette.responses import Response

from sandbox.ids import MEMORY_STORE_ID
from sandbox.state import MemoryProfile
from sandbox.twilio_api import TwilioError, TwilioService
from sandbox.web import Call, json_response

STORE_PATTERN = r"mem_(store|service)_[0-7][0-9a-z]{25}"
PROFILE_PATTERN = r"mem_profile_[0-7][0-9a-z]{25}"
LOOKUP_TYPES = ("phone", "email")
INTELLIGENCE_SERVICE_ID = "intelligence_service_01sandboxintelligence00000"

# Messages of the spec's example error responses (components.responses).
MESSAGES = {
    400: (400, "Failed to complete request due to a bad request"),
    401: (20003, "Failed to complete request due to lack of authentication credentials"),
    404: (20404, "Not Found"),
    429: (20429, "Too many requests. Please retry according to the Retry-After response header."),
    500: (20500, "Internal Server Error"),
    503: (20503, "Service Unavailable"),
}


def spec_error(status: int, message: str | None = None) -> TwilioError:
    code, default = MESSAGES[status]
    return TwilioError(status, code, message or default)


class MemoryService(TwilioService):
    name = "memory.twilio.com"
    mount = "/memory"

    def __init__(self) -> None:
        super().__init__()
        self.route("GET", "/v1/ControlPlane/Stores/{storeId}", fetch_store)
        self.route("POST", "/v1/Stores/{storeId}/Profiles/Lookup", lookup_profiles)
        self.route("GET", "/v1/Stores/{storeId}/Profiles/{profileId}", fetch_profile)
        self.route("DELETE", "/v1/Stores/{storeId}/Profiles/{profileId}", delete_profile)

    def unauthorized(self, message: str = "") -> Response:
        return self.error(spec_error(401))  # the spec's body, whatever went wrong

    def not_found(self, call: Call) -> Response:
        return self.error(spec_error(404))

    def fault(self, call: Call, status: int, retry_after: str) -> Response:
        return self.error(spec_error(status))


def normalize(id_type: str, value: str) -> str:
    """The value Memory matches on: E.164 for phones, lower case for emails."""
    if id_type == "email":
        value = value.strip().lower()
        if not re.fullmatch(r"[^@\s]+@[^@\s]+", value):
            raise spec_error(400, "The email address is not valid.")
        return value
    stripped = value.strip()
    digits = re.sub(r"\D", "", stripped)
    if stripped.startswith("00"):
        digits = digits[2:]
    elif not stripped.startswith("+") and len(digits) == 10:
        digits = "1" + digits  # a national North American number
    if not 8 <= len(digits) <= 15:
        raise spec_error(400, "The phone number is not valid.")
    return "+" + digits


def _store(call: Call) -> None:
    store_id = call.params["storeId"]
    if not re.fullmatch(STORE_PATTERN, store_id):
        raise spec_error(400, "storeId does not match the expected format.")
    if store_id != MEMORY_STORE_ID:
        raise spec_error(404)


def _profile(call: Call) -> MemoryProfile:
    _store(call)
    profile_id = call.params["profileId"]
    if not re.fullmatch(PROFILE_PATTERN, profile_id):
        raise spec_error(400, "profileId does not match the expected format.")
    profile = call.state.live_memory_profile(profile_id)
    if profile is None:
        raise spec_error(404)
    return profile


def fetch_store(call: Call) -> Response:
    """The sandbox's one store (the spec's ``Store``), with an ``ETag`` for its version."""
    _store(call)
    version = 1
    tag = json.dumps({"id": MEMORY_STORE_ID, "v": version}, separators=(",", ":")).encode()
    body = {
        "displayName": "gdpr-erasure-sandbox",
        "description": "Unified profiles of the GDPR erasure sandbox's fake people",
        "id": MEMORY_STORE_ID,
        "status": "ACTIVE",
        "intelligenceServiceId": INTELLIGENCE_SERVICE_ID,
        "version": version,
    }
    return json_response(body, headers={"ETag": base64.urlsafe_b64encode(tag).decode().rstrip("=")})


def lookup_profiles(call: Call) -> Response:
    _store(call)
    try:
        body = call.json()
    except ValueError:
        raise spec_error(400, "The request body is not valid JSON.") from None
    if not isinstance(body, dict) or set(body) != {"idType", "value"}:
        raise spec_error(400, "The request body must have exactly idType and value.")
    id_type, value = body["idType"], body["value"]
    if not isinstance(id_type, str) or not isinstance(value, str):
        raise spec_error(400, "idType and value must be strings.")
    if id_type not in LOOKUP_TYPES:
        raise spec_error(400, f"idType {id_type!r} is not configured for this store.")
    normalized = normalize(id_type, value)
    trait = "email" if id_type == "email" else "phone"
    found = [
        profile.id
        for profile in call.state.memory_profiles.values()
        if not profile.deleted and str(profile.traits.get("Contact", {}).get(trait, "")).lower() == normalized
    ]
    return json_response({"normalizedValue": normalized, "profiles": found[:100]})


def fetch_profile(call: Call) -> Response:
    profile = _profile(call)
    traits: dict[str, Any] = profile.traits
    groups = call.query.get("traitGroups")
    if groups is not None:
        wanted = {g.strip() for g in groups.split(",") if g.strip()}
        traits = {name: values for name, values in traits.items() if name in wanted}
    body = {"id": profile.id, "createdAt": profile.created_at, "traits": traits}
    return json_response(body)


def delete_profile(call: Call) -> Response:
    profile = _profile(call)
    call.state.request_memory_delete(profile)
    return json_response({"message": "Profile accepted for deletion."}, 202)
