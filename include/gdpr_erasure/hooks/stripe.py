"""Stripe, through the official SDK (``StripeClient``).

Connection ``stripe_default``:

* ``password``: the secret key (``sk_live_...``, ``sk_test_...``, or a restricted ``rk_`` key with
  customer read/write and read access to its account, ``GET /v1/account``);
* extra ``account_id``: the ``acct_...`` id of the Stripe account the customers live in;
* extra ``api_base``: another server instead of ``https://api.stripe.com`` (the sandbox);
* extra ``redaction_method``: ``delete`` (default) or ``redaction_job`` (Stripe's Redaction Jobs,
  public preview: also strips PII from charges, invoices and PaymentIntents);
* extra ``preview_api_version``: the ``Stripe-Version`` sent on redaction-job calls.

Facts that shape this hook (see docs/api-notes.md): ``DELETE /v1/customers/{id}`` is final and
afterwards ``GET`` returns only ``{"id", "object", "deleted": true}`` without metadata, so any
tag must be written and confirmed before the delete; ``list(email=...)`` is exact and
case-sensitive; stripe-python does not retry 429, so :mod:`gdpr_erasure.hooks.retry` does.

What counts as "not there" (docs/api-notes.md, "Stripe: what counts as gone"): only the
deleted-customer object (``deleted: true`` and our id) or a 404 ``invalid_request_error`` on the
customer's own path (retrieve, update, delete ``/v1/customers/{id}``), with ``code:
resource_missing`` or without a code. Never a 401/403, a 5xx, an answer that is not Stripe's
error shape, Stripe's "Unrecognized request URL" 404 (a wrong ``api_base``), its "a similar
object exists in live/test mode" 404 (a key of the wrong mode), or a 200 without ``deleted``.
A 404 without a code is trusted only once the same server has answered ``GET /v1/customers``
with a list, so a server that answers every URL with a bare 404 proves nothing.

Live state (issue 15, docs/api-notes.md "Stripe: live state before an erasure"): before any write
the operator reads what must not be erased blindly, with read-only calls of the official spec
(``latest/openapi.spec3.json`` @ ``19be337d``): subscriptions (``status=all``), open or uncollectible
invoices, disputes on the customer's charges (the spec has no ``customer`` filter on disputes:
``GET /v1/charges?customer=`` and ``GET /v1/disputes?charge=`` for each charge marked ``disputed``)
and the customer's ``balance``. A list is never read as "none" unless the customer is proven: it
is retrieved first, the key's account is proven, and every listed object must be that customer's
(a filter the server dropped would list everyone's). A cancel that Stripe answers 404 (it does for
a subscription already canceled) is proven by retrieving the subscription.

Which account (docs/no-silent-success.md): a valid key of another Stripe account (another
project's test key, a sister company's account) lists nobody and answers every customer with a
404, exactly like a person without data. ``GET /v1/account`` ("Retrieve account" without an id)
answers the key's own account, so the preflight check ``account`` requires its ``id`` to equal
the connection's ``account_id``, and every customer or redaction-job call first requires that
proof in this process (:meth:`StripeHook.verify_account`, cached like the connection): a task run
without the preflight still cannot read another account's "nobody" as "no data".
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Iterable
from functools import cached_property
from typing import Any, Literal, TypedDict, TypeVar

import stripe
from airflow.sdk import BaseHook

from gdpr_erasure.hooks.checks import CheckFailed, CheckResult, connection_test, run_check
from gdpr_erasure.hooks.connections import cached_connection, form_widgets, ui_field_behaviour
from gdpr_erasure.hooks.errors import ApiConfigurationError, PermanentApiError, TransientApiError
from gdpr_erasure.hooks.limiter import ProviderLimiter, limiter_for
from gdpr_erasure.hooks.retry import DEFAULT_POLICY, RetryPolicy, call_with_retries, parse_retry_after
from gdpr_erasure.pii import quiet_identifier_loggers, scrub

T = TypeVar("T")

REDACTION_JOBS_PATH = "/v1/privacy/redaction_jobs"
DEFAULT_PREVIEW_VERSION = "2026-10-28.preview"

#: What our own delete found: Stripe answered the deleted-customer object, or a 404 (gone before).
DeleteOutcome = Literal["deleted", "already_absent"]
#: How a customer id reads at Stripe: a live customer, the deleted-customer object, or a 404.
Presence = Literal["present", "deleted_stub", "not_found"]

#: Stripe's message for a path it does not serve (a wrong api_base), a 404 without a code.
UNRECOGNIZED_URL = "Unrecognized request URL"
#: Stripe's 404 for an id that exists in the other mode (a test key and a live customer).
OTHER_MODE = "a similar object exists in"
#: Key prefixes and the mode they select; a publishable key cannot call the API at all.
KEY_MODES = {"sk_test_": "test", "rk_test_": "test", "sk_live_": "live", "rk_live_": "live"}
#: How long a server that answered ``GET /v1/customers`` with a list is trusted for bare 404s.
TRUST_SECONDS = 300.0

#: How long this process trusts an account proven by ``GET /v1/account`` (as connections, 300 s).
ACCOUNT_TRUST_SECONDS = 300.0
#: The restricted-key permission that Stripe's API permissions reference lists for ``GET /v1/account``.
ACCOUNT_PERMISSION = "connected_account_read"
#: How Stripe's 403 names the permission a restricted key lacks ("Having the 'x' permission would ...").
_PERMISSION_NAMED = re.compile(r"Having the '([A-Za-z0-9_]+)' permission")

#: Stripe's largest page (``limit`` "can range between 1 and 100"): fewest calls per customer.
LIST_PAGE_MAX = 100

# Live-state policy cases (issue 15; the names are shared with the policy and the operator).
ACTIVE_SUBSCRIPTION = "active_subscription"
OPEN_INVOICE = "open_invoice"
OPEN_DISPUTE = "open_dispute"
CUSTOMER_BALANCE = "customer_balance"
LIVE_STATE_CASES = (ACTIVE_SUBSCRIPTION, OPEN_INVOICE, OPEN_DISPUTE, CUSTOMER_BALANCE)
# Status sets, from the enums of latest/openapi.spec3.json @ 19be337d (2026-07-29.dahlia):
# subscription.status: active, canceled, incomplete, incomplete_expired, past_due, paused, trialing,
# unpaid; invoice.status: draft, open, paid, uncollectible, void; dispute.status: lost,
# needs_response, prevented, under_review, warning_closed, warning_needs_response,
# warning_under_review, won (x-stripeBypassValidation: new values may come, so a dispute is open
# unless its status is a known closed one).
ACTIVE_SUBSCRIPTION_STATUSES = frozenset({"active", "trialing", "past_due", "unpaid", "paused"})
OPEN_INVOICE_STATUSES = ("open", "uncollectible")
INVOICE_STATUSES = frozenset({"draft", "open", "paid", "uncollectible", "void"})
CLOSED_DISPUTE_STATUSES = frozenset({"won", "lost", "warning_closed", "prevented"})

_trusted_bases: dict[tuple[str, str | None], float] = {}
#: (conn_id, api_base, key digest, account_id) -> when the key was proven to be of that account.
_verified_accounts: dict[tuple[str, str | None, str, str | None], float] = {}
_trusted_lock = threading.Lock()


class StripeConfigurationError(PermanentApiError):
    """Stripe's answer shows the connection is wrong (an unknown URL: the ``api_base``; an
    object of the other mode: the key), so it says nothing about the customer. Never "gone"."""


class StripeAccountError(StripeConfigurationError):
    """The key's account is not proven to be the connection's ``account_id`` (another account,
    ``account_id`` unset, or Stripe refused ``GET /v1/account``): every answer about customers
    would be another account's, so none is read. The detail is one line saying what to do."""


class LiveState(TypedDict):
    """What :meth:`StripeHook.live_state` found on one customer.

    ``customer`` says whether it is there at all (``deleted_stub`` and ``not_found`` have no live
    state: nothing is listed). The other keys are the policy cases: the ids of the objects in each
    (for the operator, which tags them before logging), and the non-zero balance in the customer's
    currency's smallest unit (``None`` when it is zero).
    """

    customer: Presence
    active_subscription: list[str]
    open_invoice: list[str]
    open_dispute: list[str]
    customer_balance: int | None


def live_state_cases(state: LiveState) -> tuple[str, ...]:
    """The policy cases present in ``state``, in :data:`LIVE_STATE_CASES` order."""
    return tuple(
        case
        for case in LIVE_STATE_CASES
        if (state[case] is not None if case == CUSTOMER_BALANCE else bool(state[case]))
    )


def idempotency_key(request_id: str, step: str, *parts: str) -> str:
    """A deterministic Idempotency-Key: the same request, step and object always give the same
    key, so a retried task replays Stripe's stored response instead of acting twice."""
    material = "\x1f".join([request_id, step, *parts])
    return f"gdpr-erasure-{hashlib.sha256(material.encode()).hexdigest()[:40]}"


def is_deleted_stub(answer: Any, customer_id: str) -> bool:
    """Whether ``answer`` is Stripe's deleted-customer object for ``customer_id``: ``deleted``
    exactly ``true`` and the same id (a 200 without ``deleted`` is a customer, not a proof)."""
    return (
        isinstance(answer, dict)
        and answer.get("deleted") is True
        and answer.get("id") == customer_id
        and answer.get("object", "customer") == "customer"
    )


def key_mode(key: str | None) -> str | None:
    """``test`` or ``live`` from a secret or restricted key's prefix; None if it has neither."""
    for prefix, mode in KEY_MODES.items():
        if key and key.startswith(prefix):
            return mode
    return None


class StripeHook(BaseHook):
    """Read, tag, delete and redact Stripe customers.

    :param stripe_conn_id: Airflow connection with the secret key (see module docs).
    :param retry_policy: backoff for 429, 5xx and connection errors.
    """

    conn_name_attr = "stripe_conn_id"
    default_conn_name = "stripe_default"
    conn_type = "stripe"
    hook_name = "Stripe"

    # The form as the pre-3.2 hook API; Airflow 3.3 reads the same from get_provider_info.
    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        return form_widgets(cls.conn_type)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return ui_field_behaviour(cls.conn_type)

    def __init__(
        self, stripe_conn_id: str = default_conn_name, retry_policy: RetryPolicy = DEFAULT_POLICY
    ) -> None:
        super().__init__()
        self.stripe_conn_id = stripe_conn_id
        self.retry_policy = retry_policy
        quiet_identifier_loggers()

    @cached_property
    def _conn(self):
        return cached_connection(self.stripe_conn_id)

    @cached_property
    def extra(self) -> dict[str, Any]:
        return self._conn.extra_dejson or {}

    @property
    def redaction_method(self) -> str:
        # An empty value is unset: a connection form saves its empty fields as "" or null.
        method = self.extra.get("redaction_method") or "delete"
        if method not in ("delete", "redaction_job"):
            raise ApiConfigurationError(
                f"{self.stripe_conn_id}: redaction_method must be delete or redaction_job"
            )
        return method

    @property
    def account_id(self) -> str | None:
        """The ``acct_`` id the customers live in (extra ``account_id``); None when unset or empty."""
        value = self.extra.get("account_id")
        return value.strip() if isinstance(value, str) and value.strip() else None

    @property
    def preview_api_version(self) -> str:
        """The ``Stripe-Version`` of redaction-job calls (empty in the connection: ours)."""
        return self.extra.get("preview_api_version") or DEFAULT_PREVIEW_VERSION

    def get_conn(self) -> stripe.StripeClient:
        return self.client

    @cached_property
    def limiter(self) -> ProviderLimiter:
        """The account's call budget: Stripe limits operations per second per account and mode
        (docs/limits.md); without an ``account_id`` the key stands for its account."""
        key = self._conn.password or ""
        provider = "stripe_live" if key_mode(key) == "live" else "stripe_test"
        return limiter_for(provider, self.account_id or f"key:{key}", self.extra, self.stripe_conn_id)

    @cached_property
    def client(self) -> stripe.StripeClient:
        key = self._conn.password
        if not key:
            raise ApiConfigurationError(f"connection {self.stripe_conn_id} has no secret key (password)")
        base = self.extra.get("api_base")
        return stripe.StripeClient(
            key,
            base_addresses={"api": base.rstrip("/")} if base else None,
            max_network_retries=0,  # one retry loop, ours, which also handles 429
        )

    # -- customers -------------------------------------------------------------------------

    def retrieve_customer(self, customer_id: str) -> dict[str, Any] | None:
        """The customer, the ``{"deleted": true}`` object if deleted, or None on a 404 for its
        path (never existed, or deleted on a server that answers deleted customers with 404)."""
        return self._call(
            "retrieve customer",
            lambda: self.client.v1.customers.retrieve(customer_id),
            missing_ok=True,
        )

    def customer_presence(self, customer_id: str) -> Presence:
        """How ``customer_id`` reads now: ``present``, ``deleted_stub`` or ``not_found``."""
        answer = self.retrieve_customer(customer_id)
        if answer is None:
            return "not_found"
        return "deleted_stub" if is_deleted_stub(answer, customer_id) else "present"

    def list_customers_by_email(self, email: str, page_size: int = 100) -> list[dict[str, Any]]:
        """Every live customer whose email matches exactly (Stripe compares case-sensitively)."""
        customers: list[dict[str, Any]] = []
        starting_after: str | None = None
        while True:
            params: dict[str, Any] = {"email": email, "limit": page_size}
            if starting_after:
                params["starting_after"] = starting_after
            page = self._call("list customers", lambda p=params: self.client.v1.customers.list(p))
            data = page["data"]
            customers.extend(data)
            if not page.get("has_more") or not data:
                return customers
            starting_after = data[-1]["id"]

    def update_customer_metadata(
        self, customer_id: str, metadata: dict[str, str], *, idempotency_key: str
    ) -> dict[str, Any] | None:
        """Set metadata keys; returns the updated customer, or None on a 404 for its path (it is
        gone: Stripe answers an update of a deleted customer with 404, with or without a code)."""
        return self._call(
            "update customer metadata",
            lambda: self.client.v1.customers.update(
                customer_id, {"metadata": metadata}, {"idempotency_key": idempotency_key}
            ),
            missing_ok=True,
        )

    def delete_customer(self, customer_id: str) -> DeleteOutcome:
        """Delete a customer: ``deleted`` when Stripe answers the deleted-customer object,
        ``already_absent`` on a 404 for its path (a repeated delete). Any other answer raises:
        a 200 that does not say ``deleted: true`` proves nothing."""
        result = self._call(
            "delete customer",
            lambda: self.client.v1.customers.delete(customer_id),
            missing_ok=True,
        )
        if result is None:
            return "already_absent"
        if is_deleted_stub(result, customer_id):
            return "deleted"
        raise PermanentApiError(
            "stripe",
            "delete customer",
            status=200,
            detail="the answer is not the deleted-customer object (deleted: true): not proof of deletion",
        )

    # -- live state: what an erasure must not delete blindly (read-only, but the cancel) ------

    def list_subscriptions(self, customer_id: str) -> list[dict[str, Any]]:
        """Every subscription of the customer whatever its status (``status=all``; without it Stripe
        leaves out canceled ones), all pages of :data:`LIST_PAGE_MAX`."""
        return self._list_all(
            "list subscriptions",
            self.client.v1.subscriptions.list,
            {"customer": customer_id, "status": "all"},
            owner=("customer", customer_id),
        )

    def list_invoices(
        self, customer_id: str, statuses: Iterable[str] = OPEN_INVOICE_STATUSES
    ) -> list[dict[str, Any]]:
        """The customer's invoices in ``statuses``, newest first: one listing of all its invoices
        (every page), filtered here. The ``status`` filter takes one value, so asking Stripe per
        status costs a call per status; a customer's invoices fit one page of
        :data:`LIST_PAGE_MAX` but for the longest histories, and every item is still checked to
        be the customer's. The filter is Stripe's own: ``status`` equal to one of ``statuses``.

        :param statuses: values of the spec's invoice ``status`` enum.
        :raises ValueError: for a status that is not in the enum (Stripe would answer 400).
        """
        wanted = set(statuses)
        unknown = wanted - INVOICE_STATUSES
        if unknown:
            raise ValueError(f"not an invoice status: {sorted(unknown)!r}")
        invoices = self._list_all(
            "list invoices",
            self.client.v1.invoices.list,
            {"customer": customer_id},
            owner=("customer", customer_id),
        )
        if any(invoice.get("status") not in INVOICE_STATUSES for invoice in invoices):
            # Filtered here, an invoice without a known status would silently read as "none owed".
            raise self._unfiltered("list invoices", "held an invoice without a known status")
        return [invoice for invoice in invoices if invoice["status"] in wanted]

    def list_charges(self, customer_id: str) -> list[dict[str, Any]]:
        """Every charge of the customer, all pages."""
        return self._list_all(
            "list charges",
            self.client.v1.charges.list,
            {"customer": customer_id},
            owner=("customer", customer_id),
        )

    def list_disputes(self, customer_id: str) -> list[dict[str, Any]]:
        """Every dispute on the customer's charges, whatever its status. Disputes cannot be listed
        by customer: the customer's charges are listed and, for each one Stripe marks
        ``disputed`` (true once a dispute was opened, whatever its outcome), its disputes."""
        disputes: list[dict[str, Any]] = []
        for charge in self.list_charges(customer_id):
            if charge.get("disputed") is True:
                disputes += self._list_all(
                    "list disputes",
                    self.client.v1.disputes.list,
                    {"charge": charge["id"]},
                    owner=("charge", charge["id"]),
                )
        return disputes

    def retrieve_subscription(self, subscription_id: str) -> dict[str, Any]:
        """The subscription, canceled ones included. A 404 raises: it never means "canceled"."""
        return self._call(
            "retrieve subscription", lambda: self.client.v1.subscriptions.retrieve(subscription_id)
        )

    def cancel_subscription(self, subscription_id: str, *, customer_id: str) -> dict[str, Any]:
        """Cancel the subscription now (``DELETE /v1/subscriptions/{id}``); returns the canceled
        subscription, which must be ``customer_id``'s.

        Stripe answers a second cancel with 404 "No such subscription" (stripe/stripe-go#1887) and
        ignores ``Idempotency-Key`` on DELETE, so a retried cancel is proven by retrieving the
        subscription: canceled and the customer's is success, anything else raises.

        :param customer_id: the customer the subscription must belong to (the one being erased).
        """
        try:
            answer = self._call(
                "cancel subscription", lambda: self.client.v1.subscriptions.cancel(subscription_id)
            )
        except PermanentApiError as exc:
            if (
                exc.status != 404
                or exc.code != "resource_missing"
                or isinstance(exc, StripeConfigurationError)
            ):
                raise
            answer = self.retrieve_subscription(subscription_id)  # canceled before? (a retried task)
        if not (
            isinstance(answer, dict)
            and answer.get("object") == "subscription"
            and answer.get("id") == subscription_id
            and answer.get("customer") == customer_id
            and answer.get("status") == "canceled"
        ):
            raise PermanentApiError(
                "stripe",
                "cancel subscription",
                status=200,
                detail="the answer is not the customer's subscription with status canceled: not proof of "
                "cancellation",
            )
        return answer

    def live_state(self, customer_id: str) -> LiveState:
        """The policy cases present on the customer (see :class:`LiveState`): the customer is
        retrieved first (its ``balance``, and proof that lists about it mean something), then its
        subscriptions, open or uncollectible invoices and disputes are listed."""
        state: LiveState = {
            "customer": "not_found",
            ACTIVE_SUBSCRIPTION: [],
            OPEN_INVOICE: [],
            OPEN_DISPUTE: [],
            CUSTOMER_BALANCE: None,
        }
        customer = self.retrieve_customer(customer_id)
        if customer is None:
            return state
        if is_deleted_stub(customer, customer_id):
            state["customer"] = "deleted_stub"
            return state
        balance = customer.get("balance")
        if customer.get("id") != customer_id or not isinstance(balance, int) or isinstance(balance, bool):
            raise StripeConfigurationError(
                "stripe",
                "retrieve customer",
                detail="the answer is not the customer with an integer balance: check the api_base extra of "
                f"connection {self.stripe_conn_id}",
            )
        state["customer"] = "present"
        state[CUSTOMER_BALANCE] = balance or None
        state[ACTIVE_SUBSCRIPTION] = [
            s["id"]
            for s in self.list_subscriptions(customer_id)
            if s.get("status") in ACTIVE_SUBSCRIPTION_STATUSES
        ]
        state[OPEN_INVOICE] = [i["id"] for i in self.list_invoices(customer_id, OPEN_INVOICE_STATUSES)]
        state[OPEN_DISPUTE] = [
            d["id"] for d in self.list_disputes(customer_id) if d.get("status") not in CLOSED_DISPUTE_STATUSES
        ]
        return state

    def _list_all(
        self,
        operation: str,
        list_page: Callable[[dict[str, Any]], Any],
        params: dict[str, Any],
        *,
        owner: tuple[str, str],
    ) -> list[dict[str, Any]]:
        """Every item of a Stripe list, page after page of :data:`LIST_PAGE_MAX` (``starting_after``
        the last id), each checked to be ``owner``'s (``("customer", id)``: its ``customer`` field).

        An answer that is not a list, an item of another owner or a cursor that does not advance
        raises :class:`StripeConfigurationError`: the server did not apply the filter or the
        paging, so its "nothing more" cannot be trusted.
        """
        field, owner_id = owner
        items: list[dict[str, Any]] = []
        starting_after: str | None = None
        while True:
            page_params = {**params, "limit": LIST_PAGE_MAX}
            if starting_after:
                page_params["starting_after"] = starting_after
            page = self._call(operation, lambda p=page_params: list_page(p))
            data = page.get("data") if isinstance(page, dict) and page.get("object") == "list" else None
            if not isinstance(data, list):
                raise self._unfiltered(operation, "did not answer a list")
            for item in data:
                if not isinstance(item, dict) or item.get(field) != owner_id or not item.get("id"):
                    raise self._unfiltered(
                        operation, f"answered an object whose {field} is not the one asked for"
                    )
            items += data
            if not page.get("has_more") or not data:
                return items
            if data[-1]["id"] == starting_after:
                raise self._unfiltered(operation, "did not move past starting_after")
            starting_after = data[-1]["id"]

    def _unfiltered(self, operation: str, what: str) -> StripeConfigurationError:
        return StripeConfigurationError(
            "stripe",
            operation,
            detail=f"the list {what}: the server ignored a filter or the paging, so it proves nothing; check "
            f"the api_base extra of connection {self.stripe_conn_id}",
        )

    # -- redaction jobs (public preview; no SDK class in stripe-python 16) -------------------

    def create_redaction_job(self, customer_ids: list[str], *, idempotency_key: str) -> dict[str, Any]:
        params: dict[str, Any] = {"objects": {"customers": list(customer_ids)}}
        return self._raw("post", REDACTION_JOBS_PATH, "create redaction job", params, idempotency_key)

    def retrieve_redaction_job(self, job_id: str) -> dict[str, Any]:
        return self._raw("get", f"{REDACTION_JOBS_PATH}/{job_id}", "retrieve redaction job")

    def run_redaction_job(self, job_id: str, *, idempotency_key: str) -> dict[str, Any]:
        return self._raw(
            "post", f"{REDACTION_JOBS_PATH}/{job_id}/run", "run redaction job", {}, idempotency_key
        )

    def list_redaction_jobs(self, limit: int = 1) -> dict[str, Any]:
        """``GET /v1/privacy/redaction_jobs``: a read that proves the endpoint is reachable (a
        preflight check: it reads nothing as absent, so it needs no proven account)."""
        return self._raw("get", REDACTION_JOBS_PATH, "list redaction jobs", {"limit": limit}, bound=False)

    def _raw(
        self,
        method: str,
        path: str,
        operation: str,
        params: dict[str, Any] | None = None,
        key: str | None = None,
        *,
        bound: bool = True,
    ) -> dict[str, Any]:
        options: dict[str, Any] = {"stripe_version": self.preview_api_version}
        if key:
            options["idempotency_key"] = key

        def call():
            response = self.client.raw_request(method, path, **options, **(params or {}))
            return self.client.deserialize(response, api_mode="V1")

        return self._call(operation, call, bound=bound)

    # -- the account the key belongs to ----------------------------------------------------------

    def retrieve_account_id(self) -> str:
        """``GET /v1/account`` (stripe-python: ``accounts.retrieve_current``): the id of the account
        the key belongs to. An answer that is not an ``account`` object raises."""
        answer = self._call(
            "retrieve account", lambda: self.client.v1.accounts.retrieve_current(), bound=False
        )
        account_id = answer.get("id") if isinstance(answer, dict) else None
        if not (
            isinstance(answer, dict)
            and answer.get("object") == "account"
            and isinstance(account_id, str)
            and account_id.startswith("acct_")
        ):
            raise StripeConfigurationError(
                "stripe",
                "retrieve account",
                detail=f"GET /v1/account did not answer an account: check the api_base extra of connection "
                f"{self.stripe_conn_id}",
            )
        return account_id

    def verify_account(self) -> str:
        """Raise :class:`StripeAccountError` unless the key is proven, in this process within
        :data:`ACCOUNT_TRUST_SECONDS`, to belong to ``account_id``; returns the account id.

        Every customer and redaction-job call runs it first, so a task run without the preflight
        (a manual rerun) cannot read another account's empty list or 404 as "no data".
        """
        cache_key = self._account_cache_key()
        now = time.monotonic()
        with _trusted_lock:
            proven_at = _verified_accounts.get(cache_key)
        if proven_at is not None and now - proven_at < ACCOUNT_TRUST_SECONDS:
            return cache_key[3] or ""
        return self._prove_account()

    def _account_cache_key(self) -> tuple[str, str | None, str, str | None]:
        # The key's digest, not the key: a rotated key or a changed account_id is proven again.
        digest = hashlib.sha256((self._conn.password or "").encode()).hexdigest()[:16]
        return (self.stripe_conn_id, self.extra.get("api_base"), digest, self.account_id)

    def _prove_account(self) -> str:
        """Ask Stripe whose key this is and compare with ``account_id``; remember a match."""
        conn, expected = self.stripe_conn_id, self.account_id
        if (self._conn.password or "").startswith("pk_"):
            # A publishable key cannot call the API: say so without sending it to Stripe.
            raise _account_error(
                None, f"connection {conn}: the password is a publishable key (pk_): set a secret key"
            )
        try:
            actual = self.retrieve_account_id()
        except StripeConfigurationError:
            raise
        except PermanentApiError as exc:
            if exc.status == 401:
                raise _account_error(
                    401,
                    f"connection {conn}: Stripe rejected the secret key (HTTP 401): put a valid sk_/rk_ key "
                    f"of {expected or 'the account your customers are in'} in the connection's password",
                ) from None
            if exc.status == 403:
                named = _PERMISSION_NAMED.search(exc.detail or "")
                asks = f"; Stripe's answer names {named.group(1)}" if named else ""
                raise _account_error(
                    403,
                    f"connection {conn}: the key may not read its account (HTTP 403): give the restricted "
                    f"key read access to the account (GET /v1/account: {ACCOUNT_PERMISSION}){asks}",
                ) from None
            raise
        if expected is None:
            raise _account_error(
                None,
                f"connection {conn}: set the connection's account_id to the acct_ id of the account your "
                f"customers are in; this key's account is {actual}",
            )
        if actual != expected:
            raise _account_error(
                None,
                f"connection {conn}: the key belongs to {actual}, the connection expects {expected}: "
                "wrong key",
            )
        now = time.monotonic()
        with _trusted_lock:
            for stale in [k for k, at in _verified_accounts.items() if now - at >= ACCOUNT_TRUST_SECONDS]:
                del _verified_accounts[stale]
            _verified_accounts[self._account_cache_key()] = now
        return actual

    # -- preflight checks ----------------------------------------------------------------------

    def checks(self) -> list[CheckResult]:
        """Read-only checks: the key is valid and can read customers (``GET /v1/customers?limit=1``),
        its mode; it belongs to the connection's ``account_id`` (``GET /v1/account``); with
        ``redaction_method=redaction_job``, the redaction-jobs endpoint answers a list. Each result
        is one line without the key."""
        results = [
            run_check("stripe", "secret key", self._check_customers),
            run_check("stripe", "account", self._check_account),
        ]
        try:
            method = self.redaction_method
        except ApiConfigurationError as exc:
            results.append(CheckResult("stripe", "redaction method", False, str(exc)))
        else:
            if method == "redaction_job":
                results.append(run_check("stripe", "redaction jobs", self._check_redaction_jobs))
        results.append(run_check("stripe", "call budget", lambda: self.limiter.describe()))
        return results

    def test_connection(self) -> tuple[bool, str]:
        """The Airflow UI's Test button: the same read-only checks as ``gdpr-erasure check``, with
        brief retries; one line, never the key."""
        return connection_test(self)

    def _check_customers(self) -> str:
        conn = self.stripe_conn_id
        key = self._conn.password or ""
        if key.startswith("pk_"):
            raise CheckFailed(
                f"connection {conn}: the password is a publishable key (pk_): "
                "set a secret key (sk_...) or a restricted key (rk_...) with Customers read and write"
            )
        mode = key_mode(key)
        try:
            page = self._call(
                "list customers", lambda: self.client.v1.customers.list({"limit": 1}), bound=False
            )
        except PermanentApiError as exc:
            if exc.status == 401:
                raise CheckFailed(
                    f"connection {conn}: Stripe rejected the secret key (HTTP 401): "
                    "put a valid sk_/rk_ key of this account in the connection's password"
                ) from None
            if exc.status == 403:
                raise CheckFailed(
                    f"connection {conn}: the key may not read customers (HTTP 403): "
                    "give the restricted key Customers read and write"
                ) from None
            raise
        if not isinstance(page, dict) or page.get("object") != "list":
            raise CheckFailed(
                f"connection {conn}: GET /v1/customers did not answer a list: check the api_base extra"
            )
        livemode = next((c.get("livemode") for c in page.get("data") or [] if "livemode" in c), None)
        if livemode is not None and mode is not None and livemode != (mode == "live"):
            raise CheckFailed(
                f"connection {conn}: the key is a {mode} mode key but Stripe answered "
                f"livemode={str(livemode).lower()}: check the key and the api_base extra"
            )
        where = "api_base set" if self.extra.get("api_base") else "api.stripe.com"
        mode_text = f"{mode} mode" if mode else "unknown mode (key prefix is not sk_/rk_ test/live)"
        seen = f", livemode={str(livemode).lower()}" if livemode is not None else ""
        return f"valid key, {mode_text}{seen}, can read customers ({where})"

    def _check_account(self) -> str:
        # Always asks Stripe (a check proves, it does not trust a cache); a pass is remembered.
        try:
            account = self._prove_account()
        except StripeAccountError as exc:
            raise CheckFailed(exc.detail) from None
        return f"the key belongs to {account}, the connection's account_id"

    def _check_redaction_jobs(self) -> str:
        conn = self.stripe_conn_id
        try:
            page = self.list_redaction_jobs(limit=1)
        except PermanentApiError as exc:
            if exc.status in (403, 404):
                raise CheckFailed(
                    f"connection {conn}: the redaction-jobs endpoint answered HTTP {exc.status}: the "
                    "account or key lacks the Redaction Jobs preview; ask Stripe for access or set "
                    "redaction_method=delete"
                ) from None
            raise
        if not isinstance(page, dict) or page.get("object") != "list":
            raise CheckFailed(f"connection {conn}: GET {REDACTION_JOBS_PATH} did not answer a list")
        return f"redaction jobs reachable (Stripe-Version {self.preview_api_version})"

    # -- error mapping -----------------------------------------------------------------------

    def _call(
        self, operation: str, call: Callable[[], T], *, missing_ok: bool = False, bound: bool = True
    ) -> T | None:
        """Run ``call`` with retries. ``missing_ok`` is only for calls on ``/v1/customers/{id}``:
        a 404 there that means "no such customer" returns None (see the module docs). ``bound``
        calls first need the key proven to be of ``account_id`` (:meth:`verify_account`); only the
        account lookup itself and the preflight's reads are not bound."""
        if bound:
            self.verify_account()

        def attempt():
            try:
                result = call()
            except stripe.StripeError as exc:
                if missing_ok and self._customer_not_found(exc, operation):
                    return None
                raise _translate(exc, operation) from None
            return result.to_dict() if hasattr(result, "to_dict") else result

        return call_with_retries(
            lambda: self.limiter.run(attempt, api="stripe", operation=operation), policy=self.retry_policy
        )

    def _customer_not_found(self, exc: stripe.StripeError, operation: str) -> bool:
        """Whether ``exc`` (from a call on the customer's own path) says the customer is not there."""
        error = _error_body(exc)
        if exc.http_status != 404 or not isinstance(exc, stripe.InvalidRequestError) or error is None:
            return False  # 401/403/5xx, or not Stripe's error shape: says nothing about the customer
        if error.get("type") != "invalid_request_error" or _config_problem(error):
            return False  # _translate raises the right error
        code = error.get("code")
        if code == "resource_missing":
            return error.get("param") in (None, "", "id", "customer")
        if code:
            return False  # another code: not "no such customer"
        # A 404 without a code: trusted once this server has shown it serves the customers API.
        self._confirm_customers_api(operation)
        return True

    def _confirm_customers_api(self, operation: str) -> None:
        """Raise unless the connection's server answers ``GET /v1/customers?limit=1`` with a list
        (cached per connection and api_base for :data:`TRUST_SECONDS`)."""
        trust_key = (self.stripe_conn_id, self.extra.get("api_base"))
        now = time.monotonic()
        with _trusted_lock:
            trusted_at = _trusted_bases.get(trust_key)
        if trusted_at is not None and now - trusted_at < TRUST_SECONDS:
            return
        try:
            page = self.client.v1.customers.list({"limit": 1})
        except stripe.StripeError as exc:
            translated = _translate(exc, "list customers")
            if isinstance(translated, TransientApiError):
                raise translated from None
            raise StripeConfigurationError(
                "stripe",
                operation,
                status=404,
                detail=f"a 404 without a code, and GET /v1/customers failed too ({translated}): "
                f"check the api_base extra of connection {self.stripe_conn_id}",
            ) from None
        if getattr(page, "object", None) != "list":
            raise StripeConfigurationError(
                "stripe",
                operation,
                status=404,
                detail="a 404 without a code from a server whose GET /v1/customers is not a list: "
                f"check the api_base extra of connection {self.stripe_conn_id}",
            )
        with _trusted_lock:
            _trusted_bases[trust_key] = now


def _account_error(status: int | None, detail: str) -> StripeAccountError:
    return StripeAccountError("stripe", "verify account", status=status, detail=detail)


def _error_body(exc: stripe.StripeError) -> dict[str, Any] | None:
    body = exc.json_body
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else None


def _config_problem(error: dict[str, Any]) -> str | None:
    """What a Stripe 404 says about the connection rather than the object, if anything."""
    message = error.get("message") or ""
    if message.startswith(UNRECOGNIZED_URL):
        return "Stripe does not serve this URL (Unrecognized request URL): check the api_base extra"
    if OTHER_MODE in message:
        return (
            "the object exists in the other mode (live vs test): the key's mode does not match the "
            "customer's; use a key of the mode the customer was created in"
        )
    return None


def _translate(exc: stripe.StripeError, operation: str):
    """Map an SDK error to ours: transient (retry) or permanent (fail now), with a scrubbed message."""
    status = exc.http_status
    code = getattr(exc, "code", None)
    error = _error_body(exc)
    problem = _config_problem(error) if status == 404 and error is not None else None
    if problem is not None:
        return StripeConfigurationError("stripe", operation, status=status, code=code, detail=problem)
    detail = scrub(exc.user_message or "")
    retry_after = parse_retry_after(
        (exc.headers or {}).get("retry-after") or (exc.headers or {}).get("Retry-After")
    )
    transient = (
        isinstance(exc, stripe.RateLimitError | stripe.APIConnectionError)
        or status == 429
        or (status is not None and status >= 500)
        or (status == 409 and code in ("lock_timeout", "idempotency_key_in_use", None))
    )
    cls = TransientApiError if transient else PermanentApiError
    return cls("stripe", operation, status=status, code=code, detail=detail, retry_after=retry_after)
