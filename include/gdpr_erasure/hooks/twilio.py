"""Twilio, through the official SDK (twilio-python): Memory profiles, the 2010 API
(Messages, Calls, Recordings, Transcriptions) and Conversations.

Connection ``twilio_default``:

* ``login``: an API key SID (``SK...``, recommended) or the Account SID (``AC...``);
* ``password``: the API key secret or auth token;
* extra ``account_sid``: the ``AC...`` account (required when ``login`` is an API key);
* extra ``memory_store_id``: the Memory store (``mem_store_...``) holding unified profiles;
* extra ``api_base``: another server instead of ``https://<subdomain>.twilio.com`` (the sandbox);
  requests go to ``<api_base>/<subdomain>/<path>``.

Facts that shape this hook (see docs/api-notes.md): there is no ``Profiles`` resource in the 2010
API; unified profiles live in Memory (``/v1/Stores/{store}/Profiles``). Messages are listed with
two queries (``To`` and ``From``, exact E.164). ``X-Twilio-Webhook-Enabled`` exists only on
Conversations. twilio-python does not retry 429 (error 20429), so :mod:`.retry` does.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from functools import cached_property
from typing import Any, Literal, TypeVar

from airflow.sdk import BaseHook
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client
from twilio.rest.memory.v1.lookup import LookupList

from gdpr_erasure.hooks.checks import CheckFailed, CheckResult, connection_test, run_check
from gdpr_erasure.hooks.connections import cached_connection, form_widgets, ui_field_behaviour
from gdpr_erasure.hooks.errors import (
    ApiConfigurationError,
    ExternalApiError,
    PermanentApiError,
    TransientApiError,
)
from gdpr_erasure.hooks.limiter import ProviderLimiter, limiter_for
from gdpr_erasure.hooks.retry import DEFAULT_POLICY, RetryPolicy, call_with_retries, parse_retry_after
from gdpr_erasure.pii import quiet_identifier_loggers, scrub

T = TypeVar("T")
DeleteOutcome = Literal["deleted", "already_absent"]

#: The 2010 API's largest page (``PageSize`` 1-1000, twilio_api_v2010 spec): fewest list calls.
PAGE_SIZE = 1000
#: The two queries that find messages and calls (the 2010 API has no OR filter).
Direction = Literal["to", "from"]
DIRECTIONS: tuple[Direction, ...] = ("to", "from")
#: How long this process reuses the account's Conversation Services list (see
#: :meth:`TwilioHook.conversation_services`).
SERVICES_TRUST_SECONDS = 60.0
CONVERSATIONS_PAGE_SIZE = 50  # ParticipantConversations' maximum (twilio_conversations_v1)
SERVICES_PAGE_SIZE = 100  # Services' maximum
_TWILIO_HOST = re.compile(r"^https://(?P<sub>[a-z0-9-]+)(?:\.[a-z0-9-]+)*\.twilio\.com(?P<path>/.*)?$")
# Twilio answers 404 with code 20404 when a resource does not exist (or no longer does).
_NOT_FOUND_CODES = {20404}
# 20429 too many requests; 20009 "message cannot be deleted yet" (delivery not final): both pass.
_TRANSIENT_CODES = {20429, 20009}
#: (conn_id, account, api_base) -> (when listed, the Conversation Service SIDs).
_services_listed: dict[tuple[str, str, str | None], tuple[float, tuple[str, ...]]] = {}
_services_lock = threading.Lock()


class RoutingHttpClient(TwilioHttpClient):
    """Sends ``https://<sub>.twilio.com/<path>`` to ``<base>/<sub>/<path>`` (the sandbox).

    twilio-python builds absolute URLs per product domain and has no base-URL setting, so
    the rewrite happens at the transport. Request logging is left to the quiet logger.
    """

    def __init__(self, base_url: str | None, timeout: float = 30.0) -> None:
        super().__init__(timeout=timeout)
        self.base_url = base_url.rstrip("/") if base_url else None
        #: The SDK's exceptions drop response headers; the hook reads Retry-After from here.
        self.last_response: Response | None = None

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        if self.base_url:
            match = _TWILIO_HOST.match(url)
            if match:
                url = f"{self.base_url}/{match['sub']}{match['path'] or ''}"
        self.last_response = None
        self.last_response = super().request(method, url, *args, **kwargs)
        return self.last_response


class TwilioHook(BaseHook):
    """Find and erase a person's Twilio data.

    :param twilio_conn_id: Airflow connection (see module docs).
    :param retry_policy: backoff for 429 (20429), 5xx, 20009 and connection errors.
    """

    conn_name_attr = "twilio_conn_id"
    default_conn_name = "twilio_default"
    conn_type = "twilio"
    hook_name = "Twilio"

    # The form as the pre-3.2 hook API; Airflow 3.3 reads the same from get_provider_info.
    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        return form_widgets(cls.conn_type)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return ui_field_behaviour(cls.conn_type)

    def __init__(
        self, twilio_conn_id: str = default_conn_name, retry_policy: RetryPolicy = DEFAULT_POLICY
    ) -> None:
        super().__init__()
        self.twilio_conn_id = twilio_conn_id
        self.retry_policy = retry_policy
        quiet_identifier_loggers()

    @cached_property
    def _conn(self):
        return cached_connection(self.twilio_conn_id)

    @cached_property
    def extra(self) -> dict[str, Any]:
        return self._conn.extra_dejson or {}

    @cached_property
    def account_sid(self) -> str:
        sid = self.extra.get("account_sid") or self._conn.login
        if not sid or not str(sid).startswith("AC"):
            raise ApiConfigurationError(f"connection {self.twilio_conn_id} needs an AC... account_sid")
        return sid

    @cached_property
    def memory_store_id(self) -> str:
        store = self.extra.get("memory_store_id")
        if not store:
            raise ApiConfigurationError(f"connection {self.twilio_conn_id} has no memory_store_id extra")
        return store

    def get_conn(self) -> Client:
        return self.client

    @cached_property
    def limiter(self) -> ProviderLimiter:
        """The account's budget of concurrent requests (error 20429; docs/limits.md)."""
        return limiter_for("twilio", self.account_sid, self.extra, self.twilio_conn_id)

    @cached_property
    def client(self) -> Client:
        login, secret = self._conn.login, self._conn.password
        if not login or not secret:
            raise ApiConfigurationError(f"connection {self.twilio_conn_id} needs login and password")
        return Client(
            username=login,
            password=secret,
            account_sid=self.account_sid,
            http_client=RoutingHttpClient(self.extra.get("api_base")),
        )

    # -- Memory (unified profiles) ---------------------------------------------------------

    def lookup_memory_profiles(self, id_type: Literal["email", "phone"], value: str) -> list[str]:
        """Profile ids (``mem_profile_...``) holding this identifier; empty when none do."""
        identifier = LookupList.Identifier({"idType": id_type, "value": value})
        lookup = self._call(
            "lookup memory profiles",
            lambda: self.client.memory.v1.lookup(self.memory_store_id).create(identifier),
            missing_ok=True,
        )
        return list(lookup.profiles or []) if lookup is not None else []

    def memory_profile_exists(self, profile_id: str) -> bool:
        found = self._call(
            "fetch memory profile",
            lambda: self.client.memory.v1.profiles(self.memory_store_id, profile_id).fetch(),
            missing_ok=True,
        )
        return found is not None

    def delete_memory_profile(self, profile_id: str) -> DeleteOutcome:
        """Ask Memory to delete a profile (202: asynchronous; verify with :meth:`memory_profile_exists`)."""
        return self._delete(
            "delete memory profile",
            lambda: self.client.memory.v1.profiles(self.memory_store_id, profile_id).delete(),
        )

    # -- 2010 API: communication history ---------------------------------------------------

    def list_message_sids(self, phone: str) -> list[str]:
        """SIDs of messages sent to or from ``phone`` (two queries; the API has no OR filter)."""
        return _unique([sid for d in DIRECTIONS for sid in self.list_message_sids_by_direction(phone, d)])

    def list_message_sids_by_direction(self, phone: str, direction: Direction) -> list[str]:
        """SIDs of messages sent ``to`` or ``from`` ``phone``: one query, all pages."""
        messages = self.client.api.v2010.account.messages
        where = {"to": phone} if direction == "to" else {"from_": phone}
        return self._collect("list messages", lambda: messages.page(**where, page_size=PAGE_SIZE))

    def delete_message(self, sid: str) -> DeleteOutcome:
        """Delete a message and its media. Too recent (20009) is retried by the policy."""
        return self._delete("delete message", lambda: self.client.api.v2010.account.messages(sid).delete())

    def list_call_sids(self, phone: str) -> list[str]:
        """SIDs of calls to or from ``phone`` (two queries, as for messages)."""
        return _unique([sid for d in DIRECTIONS for sid in self.list_call_sids_by_direction(phone, d)])

    def list_call_sids_by_direction(self, phone: str, direction: Direction) -> list[str]:
        """SIDs of calls ``to`` or ``from`` ``phone``: one query, all pages."""
        calls = self.client.api.v2010.account.calls
        where = {"to": phone} if direction == "to" else {"from_": phone}
        return self._collect("list calls", lambda: calls.page(**where, page_size=PAGE_SIZE))

    def delete_call(self, sid: str) -> DeleteOutcome:
        return self._delete("delete call", lambda: self.client.api.v2010.account.calls(sid).delete())

    def list_recording_sids(self, call_sid: str) -> list[str]:
        recordings = self.client.api.v2010.account.recordings
        return self._collect(
            "list recordings", lambda: recordings.page(call_sid=call_sid, page_size=PAGE_SIZE)
        )

    def delete_recording(self, sid: str) -> DeleteOutcome:
        return self._delete(
            "delete recording", lambda: self.client.api.v2010.account.recordings(sid).delete()
        )

    def list_transcription_sids(self, recording_sid: str) -> list[str]:
        transcriptions = self.client.api.v2010.account.recordings(recording_sid).transcriptions
        return self._collect("list transcriptions", lambda: transcriptions.page(page_size=PAGE_SIZE))

    def delete_transcription(self, sid: str) -> DeleteOutcome:
        return self._delete(
            "delete transcription", lambda: self.client.api.v2010.account.transcriptions(sid).delete()
        )

    # -- Conversations -----------------------------------------------------------------------
    #
    # ``/v1/Conversations`` and ``/v1/ParticipantConversations`` reach only the account's default
    # Conversation Service; every other service's conversations live under
    # ``/v1/Services/{ChatServiceSid}/...`` (twilio_conversations_v1 spec). So the person is
    # looked up in every service and each conversation is deleted through its own service's
    # path: a 404 there means gone, a 404 on the default path would mean nothing.

    def list_conversation_services(self) -> list[str]:
        """SIDs (``IS...``) of every Conversation Service of the account, the default included."""
        services = self.client.conversations.v1.services
        return self._collect(
            "list conversation services", lambda: services.page(page_size=SERVICES_PAGE_SIZE)
        )

    def conversation_services(self, max_age: float = SERVICES_TRUST_SECONDS) -> list[str]:
        """:meth:`list_conversation_services`, reused by this process for ``max_age`` seconds.

        The list is the account's configuration, not the person's data: every request of a batch
        (and the requests of the next minute) search the same services, so one listing serves
        them. A service created after the listing is not searched, exactly as one created a
        second after a fresh listing would not be; the preflight always lists afresh.

        :param max_age: seconds a listing is reused; 0 lists now (and remembers it).
        """
        key = (self.twilio_conn_id, self.account_sid, self.extra.get("api_base"))
        now = time.monotonic()
        with _services_lock:
            cached = _services_listed.get(key)
        if cached is not None and now - cached[0] < max_age:
            return list(cached[1])
        services = self.list_conversation_services()
        with _services_lock:
            _services_listed[key] = (now, tuple(services))
        return services

    def list_participant_conversations(
        self,
        *,
        address: str | None = None,
        identity: str | None = None,
        chat_service_sids: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Conversations where the person takes part, in every Conversation Service, found by
        messaging ``address`` (their phone) or by chat ``identity`` (often an email or user id):
        ids and state only, each with the service whose path found it.

        :param chat_service_sids: the services to search (default: all of the account's).
        """
        if (address is None) == (identity is None):
            raise ValueError("give exactly one of address or identity")
        query = {"address": address} if address is not None else {"identity": identity}
        services = self.list_conversation_services() if chat_service_sids is None else chat_service_sids
        found: list[dict[str, Any]] = []
        for service_sid in services:
            pcs = self.client.conversations.v1.services(service_sid).participant_conversations
            for item in self._pages(
                "list participant conversations",
                lambda pcs=pcs: pcs.page(**query, page_size=CONVERSATIONS_PAGE_SIZE),
            ):
                found.append(
                    {
                        # The path that found it owns it; the body's own field is informative.
                        "chat_service_sid": service_sid,
                        "conversation_sid": item.conversation_sid,
                        "participant_sid": item.participant_sid,
                        "conversation_state": item.conversation_state,
                    }
                )
        return found

    def delete_conversation(self, chat_service_sid: str, conversation_sid: str) -> DeleteOutcome:
        """Delete a conversation through its own service's path (404 there: already gone)."""
        return self._delete_without_webhooks(
            "delete conversation", f"/Services/{chat_service_sid}/Conversations/{conversation_sid}"
        )

    def delete_participant(
        self, chat_service_sid: str, conversation_sid: str, participant_sid: str
    ) -> DeleteOutcome:
        return self._delete_without_webhooks(
            "delete conversation participant",
            f"/Services/{chat_service_sid}/Conversations/{conversation_sid}/Participants/{participant_sid}",
        )

    def _delete_without_webhooks(self, operation: str, uri: str) -> DeleteOutcome:
        """DELETE on Conversations with ``X-Twilio-Webhook-Enabled: false``, so erasing personal
        data fires no webhooks that would copy it elsewhere.

        Sent through the SDK's version object rather than ``conversations(sid).delete(
        x_twilio_webhook_enabled=...)``: twilio-python 9.13 builds that header and then
        overwrites it with an empty dict, so the documented argument never reaches Twilio.
        """
        version = self.client.conversations.v1
        return self._delete(
            operation,
            lambda: version.delete(method="DELETE", uri=uri, headers={"X-Twilio-Webhook-Enabled": "false"}),
        )

    # -- preflight ---------------------------------------------------------------------------

    def checks(self) -> list[CheckResult]:
        """Read-only proof that the credentials work, the Memory store exists and the
        Conversation Services can be listed (a 404 on a lookup must never mean misconfiguration)."""
        return [
            run_check("twilio", "credentials", self._check_account),
            run_check("twilio", "Memory store", self._check_memory_store),
            run_check("twilio", "Conversation Services", self._check_conversation_services),
            run_check("twilio", "call budget", lambda: self.limiter.describe()),
        ]

    def test_connection(self) -> tuple[bool, str]:
        """The Airflow UI's Test button: the preflight's read-only checks with brief retries, one
        line, never the secret."""
        return connection_test(self)

    def _check_account(self) -> str:
        # Standard API keys (SK...) may not read /Accounts (Twilio docs); a one-item message list
        # proves the same credentials against the same account with the access the erasure needs.
        api_key = str(self._conn.login or "").startswith("SK")
        try:
            if api_key:
                messages = self.client.api.v2010.account.messages
                self._call("list messages", lambda: messages.page(page_size=1))
                return f"API key accepted for account {self.account_sid}"
            account = self._call(
                "fetch account", lambda: self.client.api.v2010.accounts(self.account_sid).fetch()
            )
        except PermanentApiError as exc:
            if exc.status in (401, 403):
                raise CheckFailed(
                    f"Twilio refused connection {self.twilio_conn_id}'s credentials ({exc}): check its "
                    "login (SK... or AC...), password and account_sid"
                ) from None
            raise
        if account.status != "active":
            raise CheckFailed(f"account {self.account_sid} is {account.status}, not active")
        return f"account {self.account_sid} is active"

    def _check_memory_store(self) -> str:
        try:
            store = self._call(
                "fetch memory store", lambda: self.client.memory.v1.stores(self.memory_store_id).fetch()
            )
        except PermanentApiError as exc:
            if exc.status == 404:
                raise CheckFailed(
                    f"Memory store {self.memory_store_id} does not exist in this account: set "
                    f"connection {self.twilio_conn_id}'s memory_store_id to a store of the account"
                ) from None
            raise
        if store.status != "ACTIVE":
            raise CheckFailed(f"Memory store {self.memory_store_id} is {store.status}, not ACTIVE")
        return f"Memory store {self.memory_store_id} is ACTIVE"

    def _check_conversation_services(self) -> str:
        return f"{len(self.list_conversation_services())} Conversation Service(s) to search"

    # -- plumbing ----------------------------------------------------------------------------

    def _pages(self, operation: str, first_page: Callable[[], Any]) -> Iterator[Any]:
        """Every record of every page; each page fetch is retried on its own."""
        page = self._call(operation, first_page)
        while page is not None:
            yield from page
            current = page
            page = self._call(operation, lambda p=current: p.next_page())

    def _collect(self, operation: str, first_page: Callable[[], Any]) -> list[str]:
        return [item.sid for item in self._pages(operation, first_page)]

    def _delete(self, operation: str, call: Callable[[], Any]) -> DeleteOutcome:
        result = self._call(operation, lambda: call() or True, missing_ok=True)
        return "already_absent" if result is None else "deleted"

    def _call(self, operation: str, call: Callable[[], T], *, missing_ok: bool = False) -> T | None:
        def attempt():
            try:
                return call()
            except TwilioRestException as exc:
                status, code, message = exc.status, exc.code, exc.msg
            except TwilioException as exc:
                # Page fetches raise a plain TwilioException("Unable to fetch page", response).
                response = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], Response) else None
                if response is None:
                    raise TransientApiError(
                        "twilio", operation, detail=scrub(str(exc.args[0]) if exc.args else "")
                    ) from None
                status, code, message = response.status_code, *_code_and_message(response.text)
            except OSError as exc:  # requests' connection errors; their text holds the URL
                raise TransientApiError("twilio", operation, detail=type(exc).__name__) from None
            # Only Twilio's own "not found" (20404) means absent; a 404 without it (a proxy, a
            # wrong api_base) fails loud instead of reading as "already gone" or "no profile".
            if missing_ok and status == 404 and code in _NOT_FOUND_CODES:
                return None
            raise self._translate(operation, status, code, message) from None

        return call_with_retries(
            lambda: self.limiter.run(attempt, api="twilio", operation=operation), policy=self.retry_policy
        )

    def _translate(self, operation: str, status: int, code: int | None, message: str) -> ExternalApiError:
        last = getattr(self.client.http_client, "last_response", None)
        headers = getattr(last, "headers", None) or {}
        retry_after = parse_retry_after(headers.get("Retry-After") or headers.get("retry-after"))
        transient = status == 429 or status >= 500 or code in _TRANSIENT_CODES
        cls = TransientApiError if transient else PermanentApiError
        # Twilio's message and the request URI can carry the phone number: scrub, drop the URI.
        return cls(
            "twilio", operation, status=status, code=code, detail=scrub(message), retry_after=retry_after
        )


def _code_and_message(text: str) -> tuple[int | None, str]:
    try:
        body = json.loads(text)
    except ValueError:
        return None, ""
    if not isinstance(body, dict):
        return None, ""
    return body.get("code"), str(body.get("message") or "")


def _unique(sids: list[str]) -> list[str]:
    """Messages to self appear in both queries; keep the first of each."""
    return list(dict.fromkeys(sids))
