"""Emulation of Twilio's 2010 REST API (``api.twilio.com``, under ``/twilio/api``).

The account itself (fetch, the preflight's credential check), and Messages, Calls, Recordings
and Transcriptions: list (with the 2010 page envelope and ``PageToken`` cursors) and delete.
:class:`TwilioService` also holds what every Twilio host shares: HTTP Basic auth with an
Account SID or API key SID, the error JSON
``{"code", "message", "more_info", "status"}`` and the ``Twilio-Request-Id`` header.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from starlette.responses import Response

from sandbox.ids import TWILIO_ACCOUNT_SID, TWILIO_MESSAGING_SERVICE_SID
from sandbox.state import CALL_IN_FLIGHT, MESSAGE_IN_FLIGHT, Message, Recording
from sandbox.state import Call as CallRecord
from sandbox.web import Call, Service, json_response, no_content, parse_basic_auth

API_VERSION = "2010-04-01"
ACCOUNT_ROOT = f"/{API_VERSION}/Accounts/{{AccountSid}}"
ACCOUNT_FETCH = f"/{API_VERSION}/Accounts/{{Sid}}.json"
ACCOUNT_CREATED = datetime(2024, 1, 15, 9, 30, tzinfo=UTC)  # before every seeded record
# The account resource shows the account's auth token; the sandbox has none (it accepts any
# secret), so it shows this fixed placeholder in the token's format (32 hex digits).
AUTH_TOKEN_PLACEHOLDER = "0" * 32
SID_PATTERN = r"{prefix}[0-9a-fA-F]{{32}}"
PAGING_PARAMS = ("PageSize", "Page", "PageToken")
T = TypeVar("T")


class TwilioError(Exception):
    """A Twilio error response (``code`` is the Twilio error code, ``status`` the HTTP one)."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_body(status: int, code: int, message: str, **extra: Any) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
        **extra,
    }


def rfc2822(moment: Any) -> str:
    """Twilio's 2010 API date format, e.g. ``Fri, 24 May 2019 17:44:46 +0000``."""
    return format_datetime(moment)


class TwilioService(Service):
    """What all Twilio hosts share: credentials, error JSON, request ids, fault bodies."""

    api = "twilio"

    def authenticate(self, call: Call) -> Response | None:
        credentials = parse_basic_auth(call.header("authorization"))
        if credentials is None:
            return self.unauthorized("Authentication Error - No credentials provided")
        if not self._acceptable(*credentials):
            return self.unauthorized("Authentication Error - invalid username")
        return None

    @staticmethod
    def _acceptable(username: str, password: str) -> bool:
        """An Account SID (this sandbox's) or an API key SID, with a non-empty secret."""
        if not password:
            return False
        if re.fullmatch(SID_PATTERN.format(prefix="SK"), username):
            return True
        return username == TWILIO_ACCOUNT_SID

    def unauthorized(self, message: str = "Authenticate") -> Response:
        body = error_body(401, 20003, message, detail="Your AccountSid or AuthToken was incorrect.")
        return json_response(body, 401, {"WWW-Authenticate": 'Basic realm="Twilio API"'})

    def not_found(self, call: Call) -> Response:
        return self.error(TwilioError(404, 20404, self.missing_message(call.path)))

    def missing_message(self, path: str) -> str:
        return f"The requested resource {path} was not found"

    def error(self, exc: TwilioError) -> Response:
        return json_response(error_body(exc.status, exc.code, exc.message), exc.status)

    def fault(self, call: Call, status: int, retry_after: str) -> Response:
        code, message = {
            429: (20429, "Too Many Requests"),
            500: (20500, "Internal Server Error"),
            503: (20503, "Service Unavailable"),
        }[status]
        return self.error(TwilioError(status, code, message))

    def run(self, call: Call) -> Response:
        try:
            return super().run(call)
        except TwilioError as exc:
            return self.error(exc)

    def finish(self, call: Call, response: Response) -> Response:
        response.headers["Twilio-Request-Id"] = call.state.ids.twilio_sid("RQ")
        return response


def page_size(call: Call, default: int = 50, maximum: int = 1000) -> int:
    raw = call.query.get("PageSize", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise TwilioError(400, 20001, f"Invalid PageSize: must be between 1 and {maximum}")
    return int(raw)


def page_index(call: Call) -> int:
    raw = call.query.get("Page", "0")
    if not raw.isdigit():
        raise TwilioError(400, 20001, "Invalid Page: must be a non-negative integer")
    return int(raw)


def paginate(
    call: Call,
    ordered: list[T],
    visible: Callable[[T], bool],
    sid: Callable[[T], str],
    size: int,
) -> tuple[list[T], str | None, str | None]:
    """One page of the visible items of ``ordered`` and the next / previous page tokens.

    ``ordered`` also holds deleted items, so that a ``PageToken`` naming an item deleted since
    (the pipeline deletes what it lists) still marks a position, as Twilio's cursors do.
    """
    sids = [sid(item) for item in ordered]
    token = call.query.get("PageToken")
    if token:
        if token[:2] not in ("PA", "PB") or token[2:] not in sids:
            raise TwilioError(400, 20001, "Invalid PageToken")
        position = sids.index(token[2:])
        if token.startswith("PA"):
            page = [item for item in ordered[position + 1 :] if visible(item)][:size]
        else:
            page = [item for item in ordered[:position] if visible(item)][-size:]
    else:
        page = [item for item in ordered if visible(item)][page_index(call) * size :][:size]
    if not page:
        return page, None, None
    first, last = sids.index(sid(page[0])), sids.index(sid(page[-1]))
    more_after = any(visible(item) for item in ordered[last + 1 :])
    more_before = any(visible(item) for item in ordered[:first])
    next_token = f"PA{sid(page[-1])}" if more_after else None
    previous_token = f"PB{sid(page[0])}" if more_before else None
    return page, next_token, previous_token


def list_2010(call: Call, key: str, ordered: list[T], visible: Callable[[T], bool], sid, render) -> Response:
    """The 2010 list envelope around one page (``key`` names the items, e.g. ``messages``)."""
    size, index = page_size(call), page_index(call)
    call.log["page_size"] = size  # introspection: what page size the client asked for
    page, next_token, previous_token = paginate(call, ordered, visible, sid, size)
    filters = [(k, v) for k, v in call.query.multi_items() if k not in PAGING_PARAMS]
    path = call.path

    def uri(page_number: int, token: str | None) -> str:
        query = [*filters, ("PageSize", str(size)), ("Page", str(page_number))]
        if token:
            query.append(("PageToken", token))
        return f"{path}?{urlencode(query, quote_via=quote)}"

    start = index * size
    return json_response(
        {
            "end": start + max(len(page) - 1, 0),
            "first_page_uri": uri(0, None),
            "next_page_uri": uri(index + 1, next_token) if next_token else None,
            "page": index,
            "page_size": size,
            "previous_page_uri": uri(max(index - 1, 0), previous_token) if previous_token else None,
            key: [render(call, item) for item in page],
            "start": start,
            "uri": uri(index, call.query.get("PageToken")),
        }
    )


# --- resource bodies -------------------------------------------------------------------------------


def _account_uri(suffix: str) -> str:
    return f"/{API_VERSION}/Accounts/{TWILIO_ACCOUNT_SID}{suffix}"


def _formatted(number: str) -> str:
    """Twilio's display form for North American numbers, E.164 otherwise."""
    match = re.fullmatch(r"\+1(\d{3})(\d{3})(\d{4})", number)
    return f"({match[1]}) {match[2]}-{match[3]}" if match else number


def message_body(call: Call, message: Message) -> dict[str, Any]:
    errors = {"undelivered": (30003, "Unreachable destination handset"), "failed": (30008, "Unknown error")}
    error_code, error_message = errors.get(message.status, (None, None))
    settled = message.status not in MESSAGE_IN_FLIGHT
    uri = _account_uri(f"/Messages/{message.sid}")
    return {
        "account_sid": TWILIO_ACCOUNT_SID,
        "api_version": API_VERSION,
        "body": message.body,
        "date_created": rfc2822(message.date_created),
        "date_sent": rfc2822(message.date_sent) if settled else None,
        "date_updated": rfc2822(message.date_sent),
        "direction": message.direction,
        "error_code": error_code,
        "error_message": error_message,
        "from": message.from_,
        "messaging_service_sid": TWILIO_MESSAGING_SERVICE_SID,
        "num_media": str(message.num_media),
        "num_segments": "1",
        "price": message.price if settled else None,
        "price_unit": "USD",
        "sid": message.sid,
        "status": message.status,
        "subresource_uris": {"media": f"{uri}/Media.json", "feedback": f"{uri}/Feedback.json"},
        "to": message.to,
        "uri": f"{uri}.json",
    }


def call_body(call: Call, record: CallRecord) -> dict[str, Any]:
    uri = _account_uri(f"/Calls/{record.sid}")
    subresources = (
        "notifications",
        "recordings",
        "payments",
        "events",
        "siprec",
        "streams",
        "transcriptions",
    )
    names = {name: name.capitalize() for name in subresources} | {"siprec": "Siprec"}
    ended = record.status not in CALL_IN_FLIGHT
    end_time = record.start_time + timedelta(seconds=record.duration)
    return {
        "account_sid": TWILIO_ACCOUNT_SID,
        "answered_by": None,
        "api_version": API_VERSION,
        "caller_name": None,
        "date_created": rfc2822(record.start_time),
        "date_updated": rfc2822(record.start_time),
        "direction": record.direction,
        "duration": str(record.duration) if ended else None,
        "end_time": rfc2822(end_time) if ended else None,
        "forwarded_from": None,
        "from": record.from_,
        "from_formatted": _formatted(record.from_),
        "group_sid": None,
        "parent_call_sid": None,
        "phone_number_sid": None,
        "price": "-0.01300" if record.status == "completed" else None,
        "price_unit": "USD",
        "queue_time": "0",
        "sid": record.sid,
        "start_time": rfc2822(record.start_time),
        "status": record.status,
        "subresource_uris": {name: f"{uri}/{path}.json" for name, path in names.items()},
        "to": record.to,
        "to_formatted": _formatted(record.to),
        "trunk_sid": None,
        "uri": f"{uri}.json",
    }


def recording_body(call: Call, recording: Recording) -> dict[str, Any]:
    uri = _account_uri(f"/Recordings/{recording.sid}")
    return {
        "account_sid": TWILIO_ACCOUNT_SID,
        "api_version": API_VERSION,
        "call_sid": recording.call_sid,
        "conference_sid": None,
        "channels": recording.channels,
        "date_created": rfc2822(recording.date_created),
        "date_updated": rfc2822(recording.date_created),
        "start_time": rfc2822(recording.date_created),
        "price": "-0.00250",
        "price_unit": "USD",
        "duration": str(recording.duration),
        "sid": recording.sid,
        "source": recording.source,
        "status": "deleted" if recording.deleted else "completed",
        "error_code": None,
        "uri": f"{uri}.json",
        "subresource_uris": {
            "add_on_results": f"{uri}/AddOnResults.json",
            "transcriptions": f"{uri}/Transcriptions.json",
        },
        "encryption_details": None,
        "media_url": call.service_url() + uri,
    }


def call_recording_body(call: Call, recording: Recording) -> dict[str, Any]:
    """The call-scoped recording representation (``price`` is a number there, per the spec)."""
    return {
        "account_sid": TWILIO_ACCOUNT_SID,
        "api_version": API_VERSION,
        "call_sid": recording.call_sid,
        "conference_sid": None,
        "channels": recording.channels,
        "date_created": rfc2822(recording.date_created),
        "date_updated": rfc2822(recording.date_created),
        "start_time": rfc2822(recording.date_created),
        "duration": str(recording.duration),
        "sid": recording.sid,
        "price": -0.0025,
        "uri": _account_uri(f"/Calls/{recording.call_sid}/Recordings/{recording.sid}.json"),
        "encryption_details": None,
        "price_unit": "USD",
        "status": "completed",
        "source": recording.source,
        "error_code": None,
        "track": "both",
    }


def transcription_body(call: Call, transcription: Any) -> dict[str, Any]:
    return {
        "account_sid": TWILIO_ACCOUNT_SID,
        "api_version": API_VERSION,
        "date_created": rfc2822(transcription.date_created),
        "date_updated": rfc2822(transcription.date_created),
        "duration": str(transcription.duration),
        "price": -0.05,  # number or null in the spec (its own example shows a string)
        "price_unit": "USD",
        "recording_sid": transcription.recording_sid,
        "sid": transcription.sid,
        "status": "completed",
        "transcription_text": transcription.text,
        "type": "fast",
        "uri": _account_uri(f"/Transcriptions/{transcription.sid}.json"),
    }


def account_body() -> dict[str, Any]:
    """The sandbox account, as ``GET /2010-04-01/Accounts/{Sid}.json`` shows it (the spec's example)."""
    subresources = {
        "available_phone_numbers": "AvailablePhoneNumbers",
        "calls": "Calls",
        "conferences": "Conferences",
        "incoming_phone_numbers": "IncomingPhoneNumbers",
        "notifications": "Notifications",
        "outgoing_caller_ids": "OutgoingCallerIds",
        "recordings": "Recordings",
        "transcriptions": "Transcriptions",
        "addresses": "Addresses",
        "signing_keys": "SigningKeys",
        "connect_apps": "ConnectApps",
        "sip": "SIP",
        "authorized_connect_apps": "AuthorizedConnectApps",
        "usage": "Usage",
        "keys": "Keys",
        "applications": "Applications",
        "short_codes": "SMS/ShortCodes",
        "queues": "Queues",
        "messages": "Messages",
        "balance": "Balance",
    }
    return {
        "auth_token": AUTH_TOKEN_PLACEHOLDER,
        "date_created": rfc2822(ACCOUNT_CREATED),
        "date_updated": rfc2822(ACCOUNT_CREATED),
        "friendly_name": "GDPR erasure sandbox",
        "owner_account_sid": TWILIO_ACCOUNT_SID,
        "sid": TWILIO_ACCOUNT_SID,
        "status": "active",
        "subresource_uris": {name: _account_uri(f"/{path}.json") for name, path in subresources.items()},
        "type": "Full",
        "uri": _account_uri(".json"),
    }


# --- the 2010 API service ----------------------------------------------------------------------------


class TwilioApiService(TwilioService):
    name = "api.twilio.com"
    mount = "/api"

    def __init__(self) -> None:
        super().__init__()
        self.route("GET", ACCOUNT_FETCH, fetch_account)
        self.route("GET", f"{ACCOUNT_ROOT}/Messages.json", list_messages)
        self.route("DELETE", f"{ACCOUNT_ROOT}/Messages/{{Sid}}.json", delete_message)
        self.route("GET", f"{ACCOUNT_ROOT}/Calls.json", list_calls)
        self.route("DELETE", f"{ACCOUNT_ROOT}/Calls/{{Sid}}.json", delete_call)
        self.route("GET", f"{ACCOUNT_ROOT}/Recordings.json", list_recordings)
        self.route("GET", f"{ACCOUNT_ROOT}/Calls/{{CallSid}}/Recordings.json", list_call_recordings)
        self.route("DELETE", f"{ACCOUNT_ROOT}/Recordings/{{Sid}}.json", delete_recording)
        self.route(
            "GET", f"{ACCOUNT_ROOT}/Recordings/{{RecordingSid}}/Transcriptions.json", list_transcriptions
        )
        self.route("DELETE", f"{ACCOUNT_ROOT}/Transcriptions/{{Sid}}.json", delete_transcription)
        self.route(
            "DELETE",
            f"{ACCOUNT_ROOT}/Recordings/{{RecordingSid}}/Transcriptions/{{Sid}}.json",
            delete_transcription,
        )

    def authenticate(self, call: Call) -> Response | None:
        refused = super().authenticate(call)
        if refused is not None:
            return refused
        account = call.params.get("AccountSid")
        if call.route is not None and call.route.template == ACCOUNT_FETCH:
            account = call.params["Sid"]
        if account is not None and not re.fullmatch(SID_PATTERN.format(prefix="AC"), account):
            return self.not_found(call)
        if account is not None and account != TWILIO_ACCOUNT_SID:
            return self.unauthorized()  # the credentials do not belong to that account
        return None


def _newest_first(items: Iterable[T], moment: Callable[[T], Any], sid: Callable[[T], str]) -> list[T]:
    return sorted(items, key=lambda item: (moment(item), sid(item)), reverse=True)


def _party_filter(call: Call) -> Callable[[Any], bool]:
    """Exact E.164 match on ``To`` and ``From`` when given (Twilio does no normalisation)."""
    to, from_ = call.query.get("To"), call.query.get("From")
    return lambda item: (to is None or item.to == to) and (from_ is None or item.from_ == from_)


def _party_candidates(call: Call, collection: str) -> Iterable[Any]:
    """The items that can match the ``To``/``From`` filter (looked up, not scanned)."""
    to, from_ = call.query.get("To"), call.query.get("From")
    if to is not None:
        return call.state.grouped(collection, "to").get(to, [])
    if from_ is not None:
        return call.state.grouped(collection, "from_").get(from_, [])
    return getattr(call.state, collection).values()


def fetch_account(call: Call) -> Response:
    """The account of the credentials (``authenticate`` already refused any other)."""
    return json_response(account_body())


def list_messages(call: Call) -> Response:
    wanted = _party_filter(call)
    ordered = _newest_first(
        (m for m in _party_candidates(call, "messages") if wanted(m)), lambda m: m.date_sent, lambda m: m.sid
    )
    return list_2010(call, "messages", ordered, lambda m: not m.deleted, lambda m: m.sid, message_body)


def list_calls(call: Call) -> Response:
    wanted = _party_filter(call)
    status = call.query.get("Status")
    ordered = _newest_first(
        (c for c in _party_candidates(call, "calls") if wanted(c) and (status is None or c.status == status)),
        lambda c: c.start_time,
        lambda c: c.sid,
    )
    return list_2010(call, "calls", ordered, lambda c: not c.deleted, lambda c: c.sid, call_body)


def list_recordings(call: Call) -> Response:
    call_sid = call.query.get("CallSid")
    soft_deleted = call.query.get("IncludeSoftDeleted", "false").lower() == "true"
    ordered = _newest_first(
        call.state.recordings.values()
        if call_sid is None
        else call.state.grouped("recordings", "call_sid").get(call_sid, []),
        lambda r: r.date_created,
        lambda r: r.sid,
    )
    visible = (lambda r: True) if soft_deleted else (lambda r: not r.deleted)
    return list_2010(call, "recordings", ordered, visible, lambda r: r.sid, recording_body)


def list_call_recordings(call: Call) -> Response:
    """Recordings of one call. They outlive the call: deleting a call does not delete them."""
    call_sid = call.params["CallSid"]
    ordered = _newest_first(
        call.state.grouped("recordings", "call_sid").get(call_sid, []),
        lambda r: r.date_created,
        lambda r: r.sid,
    )
    return list_2010(
        call, "recordings", ordered, lambda r: not r.deleted, lambda r: r.sid, call_recording_body
    )


def list_transcriptions(call: Call) -> Response:
    recording_sid = call.params["RecordingSid"]
    ordered = _newest_first(
        call.state.grouped("transcriptions", "recording_sid").get(recording_sid, []),
        lambda t: t.date_created,
        lambda t: t.sid,
    )
    return list_2010(
        call, "transcriptions", ordered, lambda t: not t.deleted, lambda t: t.sid, transcription_body
    )


def _not_yet_complete() -> TwilioError:
    return TwilioError(400, 20009, "Cannot delete this resource before it is complete")


def _deletable(call: Call, store: dict[str, Any]) -> Any:
    item = store.get(call.params["Sid"])
    if item is None or item.deleted:
        raise TwilioError(404, 20404, call.service.missing_message(call.path))
    return item


def delete_message(call: Call) -> Response:
    message = _deletable(call, call.state.messages)
    if message.status in MESSAGE_IN_FLIGHT:
        raise _not_yet_complete()
    message.deleted = True  # deleting a message also deletes its media (none are seeded)
    return no_content()


def delete_call(call: Call) -> Response:
    record = _deletable(call, call.state.calls)
    if record.status in CALL_IN_FLIGHT:
        raise _not_yet_complete()
    record.deleted = True  # recordings and transcriptions stay: they are separate resources
    return no_content()


def delete_recording(call: Call) -> Response:
    _deletable(call, call.state.recordings).deleted = True
    return no_content()


def delete_transcription(call: Call) -> Response:
    transcription = _deletable(call, call.state.transcriptions)
    recording_sid = call.params.get("RecordingSid")
    if recording_sid is not None and transcription.recording_sid != recording_sid:
        raise TwilioError(404, 20404, call.service.missing_message(call.path))
    transcription.deleted = True
    return no_content()
