"""Emulation of the Twilio Conversations v1 endpoints (``conversations.twilio.com``).

``GET /v1/ParticipantConversations`` (by ``Address`` or ``Identity``, with the v1 ``meta`` page
envelope) and the two deletions, each both on the account's default Conversation Service
(``/v1/...``) and on a named one (``/v1/Services/{ChatServiceSid}/...``), plus the list of
services and the account's configuration. As on Twilio, the default-service paths see only the
default service's conversations: a conversation of another service answers 404 there, which is
why the pipeline deletes each conversation through its own service's path.

Deletions record whether ``X-Twilio-Webhook-Enabled`` was sent, because only an explicit
``false`` keeps Twilio from firing webhooks that would copy the data elsewhere; the
introspection API shows what each deletion carried.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from starlette.responses import Response

from sandbox.ids import TWILIO_ACCOUNT_SID, TWILIO_CHAT_SERVICE_SID, TWILIO_MESSAGING_SERVICE_SID
from sandbox.state import Conversation, ConversationService, Participant, isoformat
from sandbox.twilio_api import TwilioError, TwilioService, paginate
from sandbox.web import Call, json_response, no_content

PAGE_SIZE_MAX = 50  # ParticipantConversations (spec: 1-50)
SERVICES_PAGE_SIZE_MAX = 100  # Services (spec: 1-100)


class ConversationsService(TwilioService):
    name = "conversations.twilio.com"
    mount = "/conversations"

    def __init__(self) -> None:
        super().__init__()
        self.route("GET", "/v1/Configuration", fetch_configuration)
        self.route("GET", "/v1/Services", list_services)
        # The default service's paths, then the same operations on a named service.
        for prefix in ("/v1", "/v1/Services/{ChatServiceSid}"):
            self.route("GET", f"{prefix}/ParticipantConversations", list_participant_conversations)
            self.route("DELETE", f"{prefix}/Conversations/{{Sid}}", delete_conversation)
            self.route(
                "DELETE",
                f"{prefix}/Conversations/{{ConversationSid}}/Participants/{{Sid}}",
                delete_participant,
            )

    def missing_message(self, path: str) -> str:
        # Conversations names the resource without its version prefix.
        return f"The requested resource {path.removeprefix('/v1')} was not found"


def participant_conversation_body(call: Call, participant: Participant) -> dict[str, Any]:
    conversation: Conversation = call.state.conversations[participant.conversation_sid]
    base = call.service_url() + "/v1"
    if conversation.chat_service_sid != TWILIO_CHAT_SERVICE_SID:
        base += f"/Services/{conversation.chat_service_sid}"
    binding = None
    if participant.address:
        binding = {
            "address": participant.address,
            "proxy_address": participant.proxy_address,
            "type": "sms",
            "level": None,
            "name": None,
            "projected_address": None,
        }
    closed = conversation.state == "closed"
    return {
        "account_sid": TWILIO_ACCOUNT_SID,
        "chat_service_sid": conversation.chat_service_sid,
        "conversation_sid": conversation.sid,
        "participant_sid": participant.sid,
        "conversation_friendly_name": conversation.friendly_name,
        "conversation_state": conversation.state,
        "conversation_timers": {
            "date_inactive": None if conversation.state == "active" else isoformat(conversation.date_updated),
            "date_closed": isoformat(conversation.date_updated) if closed else None,
        },
        "conversation_attributes": "{}",
        "conversation_date_created": _iso(conversation.date_created),
        "conversation_date_updated": _iso(conversation.date_updated),
        "conversation_created_by": "system",
        "conversation_unique_name": conversation.unique_name,
        "participant_user_sid": participant.user_sid,
        "participant_identity": participant.identity,
        "participant_messaging_binding": binding,
        "links": {
            "participant": f"{base}/Conversations/{conversation.sid}/Participants/{participant.sid}",
            "conversation": f"{base}/Conversations/{conversation.sid}",
        },
    }


def _iso(moment: Any) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def list_participant_conversations(call: Call) -> Response:
    """Conversations one participant (by SMS ``Address`` or SDK ``Identity``) belongs to, in
    the service the path names (the default one for ``/v1/ParticipantConversations``)."""
    service_sid = _service_sid(call)
    address, identity = call.query.get("Address"), call.query.get("Identity")
    if (address is None) == (identity is None):
        raise TwilioError(400, 20001, "Either Identity or Address must be specified, but not both")
    state = call.state

    def matches(p: Participant) -> bool:
        if state.conversations[p.conversation_sid].chat_service_sid != service_sid:
            return False
        return p.address == address if address is not None else p.identity == identity

    def visible(p: Participant) -> bool:
        return not p.deleted and not state.conversations[p.conversation_sid].deleted

    ordered = sorted(
        (p for p in state.participants.values() if matches(p)),
        key=lambda p: (state.conversations[p.conversation_sid].date_created, p.sid),
        reverse=True,
    )
    size = _page_size(call)
    call.log["page_size"] = size  # introspection: what page size the client asked for
    page, next_token, previous_token = paginate(call, ordered, visible, lambda p: p.sid, size)
    filters = [("Address", address)] if address is not None else [("Identity", identity or "")]
    meta = _page_meta(call, "conversations", filters, size, next_token, previous_token)
    conversations = [participant_conversation_body(call, p) for p in page]
    return json_response({"conversations": conversations, "meta": meta})


def _page_meta(
    call: Call,
    key: str,
    filters: list[tuple[str, str]],
    size: int,
    next_token: str | None,
    previous_token: str | None,
) -> dict[str, Any]:
    """The v1 ``meta`` envelope of one page. Its links are absolute URLs on this sandbox (the
    real API points them at its own host), so a client following ``next_page_url`` stays here."""
    index = int(call.query.get("Page", "0") or 0)
    base = call.service_url() + call.path

    def url(page_number: int, token: str | None) -> str:
        query = [*filters, ("PageSize", str(size)), ("Page", str(page_number))]
        if token:
            query.append(("PageToken", token))
        return f"{base}?{urlencode(query, quote_via=quote)}"

    return {
        "page": index,
        "page_size": size,
        "first_page_url": url(0, None),
        "previous_page_url": url(max(index - 1, 0), previous_token) if previous_token else None,
        "url": url(index, call.query.get("PageToken")),
        "next_page_url": url(index + 1, next_token) if next_token else None,
        "key": key,
    }


def _page_size(call: Call, maximum: int = PAGE_SIZE_MAX) -> int:
    raw = call.query.get("PageSize", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise TwilioError(400, 20001, f"Invalid PageSize: must be between 1 and {maximum}")
    if not call.query.get("Page", "0").isdigit():
        raise TwilioError(400, 20001, "Invalid Page: must be a non-negative integer")
    return int(raw)


def _webhook_header(call: Call) -> str | None:
    """The ``X-Twilio-Webhook-Enabled`` value sent (``true``/``false``), or ``None`` if absent."""
    value = call.header("x-twilio-webhook-enabled")
    if value is not None and value.lower() not in ("true", "false"):
        raise TwilioError(400, 20001, "Invalid X-Twilio-Webhook-Enabled header: must be true or false")
    if value is not None:
        call.log["webhook_enabled"] = value.lower()
    return value.lower() if value is not None else None


def _record_deletion(call: Call, kind: str, sid: str, conversation_sid: str, webhook: str | None) -> None:
    call.state.conversation_deletions.append(
        {"kind": kind, "sid": sid, "conversation_sid": conversation_sid, "webhook_enabled": webhook}
    )


def delete_conversation(call: Call) -> Response:
    service_sid = _service_sid(call)
    webhook = _webhook_header(call)
    conversation = call.state.conversations.get(call.params["Sid"])
    if conversation is None or conversation.deleted or conversation.chat_service_sid != service_sid:
        raise TwilioError(404, 20404, call.service.missing_message(call.path))
    conversation.deleted = True
    for participant in call.state.participants.values():
        if participant.conversation_sid == conversation.sid:
            participant.deleted = True
    _record_deletion(call, "conversation", conversation.sid, conversation.sid, webhook)
    return no_content()


def delete_participant(call: Call) -> Response:
    service_sid = _service_sid(call)
    webhook = _webhook_header(call)
    conversation = call.state.conversations.get(call.params["ConversationSid"])
    participant = call.state.participants.get(call.params["Sid"])
    if (
        conversation is None
        or conversation.deleted
        or conversation.chat_service_sid != service_sid
        or participant is None
        or participant.deleted
        or participant.conversation_sid != conversation.sid
    ):
        raise TwilioError(404, 20404, call.service.missing_message(call.path))
    participant.deleted = True
    _record_deletion(call, "participant", participant.sid, conversation.sid, webhook)
    return no_content()


def _service_sid(call: Call) -> str:
    """The Conversation Service a path addresses: the named one, or the account's default.
    An unknown service answers 404, like Twilio."""
    sid = call.params.get("ChatServiceSid")
    if sid is None:
        return TWILIO_CHAT_SERVICE_SID
    if sid not in call.state.conversation_services:
        raise TwilioError(404, 20404, call.service.missing_message(call.path))
    return sid


def service_body(call: Call, service: ConversationService) -> dict[str, Any]:
    url = f"{call.service_url()}/v1/Services/{service.sid}"
    return {
        "account_sid": TWILIO_ACCOUNT_SID,
        "sid": service.sid,
        "friendly_name": service.friendly_name,
        "date_created": _iso(service.date_created),
        "date_updated": _iso(service.date_created),
        "url": url,
        "links": {
            "conversations": f"{url}/Conversations",
            "participant_conversations": f"{url}/ParticipantConversations",
            "users": f"{url}/Users",
            "roles": f"{url}/Roles",
            "bindings": f"{url}/Bindings",
            "configuration": f"{url}/Configuration",
        },
    }


def list_services(call: Call) -> Response:
    """Every Conversation Service of the account, the default one included, paged like v1."""
    size = _page_size(call, maximum=SERVICES_PAGE_SIZE_MAX)
    call.log["page_size"] = size  # introspection: what page size the client asked for
    ordered = sorted(call.state.conversation_services.values(), key=lambda s: (s.date_created, s.sid))
    page, next_token, previous_token = paginate(call, ordered, lambda s: True, lambda s: s.sid, size)
    meta = _page_meta(call, "services", [], size, next_token, previous_token)
    return json_response({"services": [service_body(call, s) for s in page], "meta": meta})


def fetch_configuration(call: Call) -> Response:
    """The account's Conversations configuration: which service ``/v1/Conversations`` means."""
    url = f"{call.service_url()}/v1/Configuration"
    return json_response(
        {
            "account_sid": TWILIO_ACCOUNT_SID,
            "default_chat_service_sid": TWILIO_CHAT_SERVICE_SID,
            "default_messaging_service_sid": TWILIO_MESSAGING_SERVICE_SID,
            "default_inactive_timer": None,
            "default_closed_timer": None,
            "url": url,
            "links": {"webhooks": f"{url}/Webhooks"},
        }
    )
