"""Stripe, through the official SDK (``StripeClient``).

Connection ``stripe_default``:

* ``password``: the secret key (``sk_live_...``, ``sk_test_...``, or a restricted ``rk_`` key with
  customer read/write);
* extra ``api_base``: another server instead of ``https://api.stripe.com`` (the sandbox);
* extra ``redaction_method``: ``delete`` (default) or ``redaction_job`` (Stripe's Redaction Jobs,
  public preview: also strips PII from charges, invoices and PaymentIntents);
* extra ``preview_api_version``: the ``Stripe-Version`` sent on redaction-job calls.

Facts that shape this hook (see docs/api-notes.md): ``DELETE /v1/customers/{id}`` is final and
afterwards ``GET`` returns only ``{"id", "object", "deleted": true}`` without metadata, so any
tag must be written and confirmed before the delete; ``list(email=...)`` is exact and
case-sensitive; stripe-python does not retry 429, so :mod:`gdpr_erasure.hooks.retry` does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import cached_property
from typing import Any, Literal, TypeVar

import stripe
from airflow.sdk import BaseHook

from gdpr_erasure.hooks.connections import cached_connection
from gdpr_erasure.hooks.errors import ApiConfigurationError, PermanentApiError, TransientApiError
from gdpr_erasure.hooks.retry import DEFAULT_POLICY, RetryPolicy, call_with_retries, parse_retry_after
from gdpr_erasure.pii import quiet_identifier_loggers, scrub

T = TypeVar("T")

REDACTION_JOBS_PATH = "/v1/privacy/redaction_jobs"
DEFAULT_PREVIEW_VERSION = "2026-10-28.preview"

DeleteOutcome = Literal["deleted", "already_absent"]


def idempotency_key(request_id: str, step: str, *parts: str) -> str:
    """A deterministic Idempotency-Key: the same request, step and object always give the same
    key, so a retried task replays Stripe's stored response instead of acting twice."""
    material = "\x1f".join([request_id, step, *parts])
    return f"gdpr-erasure-{hashlib.sha256(material.encode()).hexdigest()[:40]}"


class StripeHook(BaseHook):
    """Read, tag, delete and redact Stripe customers.

    :param stripe_conn_id: Airflow connection with the secret key (see module docs).
    :param retry_policy: backoff for 429, 5xx and connection errors.
    """

    conn_name_attr = "stripe_conn_id"
    default_conn_name = "stripe_default"
    conn_type = "stripe"
    hook_name = "Stripe"

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema", "port", "login", "host"],
            "relabeling": {"password": "Secret key (sk_...)"},
        }

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
        method = self.extra.get("redaction_method", "delete")
        if method not in ("delete", "redaction_job"):
            raise ApiConfigurationError(
                f"{self.stripe_conn_id}: redaction_method must be delete or redaction_job"
            )
        return method

    def get_conn(self) -> stripe.StripeClient:
        return self.client

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
        """The customer, the ``{"deleted": true}`` stub if deleted, or None if it never existed."""
        return self._call(
            "retrieve customer",
            lambda: self.client.v1.customers.retrieve(customer_id),
            missing_ok=True,
        )

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
        """Set metadata keys; returns the updated customer, or None if it does not exist."""
        return self._call(
            "update customer metadata",
            lambda: self.client.v1.customers.update(
                customer_id, {"metadata": metadata}, {"idempotency_key": idempotency_key}
            ),
            missing_ok=True,
        )

    def delete_customer(self, customer_id: str) -> DeleteOutcome:
        """Delete a customer. A customer that is already gone is ``already_absent``, not an error."""
        result = self._call(
            "delete customer",
            lambda: self.client.v1.customers.delete(customer_id),
            missing_ok=True,
        )
        return "deleted" if result is not None and result.get("deleted") else "already_absent"

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

    def _raw(
        self,
        method: str,
        path: str,
        operation: str,
        params: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> dict[str, Any]:
        options: dict[str, Any] = {
            "stripe_version": self.extra.get("preview_api_version", DEFAULT_PREVIEW_VERSION)
        }
        if key:
            options["idempotency_key"] = key

        def call():
            response = self.client.raw_request(method, path, **options, **(params or {}))
            return self.client.deserialize(response, api_mode="V1")

        return self._call(operation, call)

    # -- error mapping -----------------------------------------------------------------------

    def _call(self, operation: str, call: Callable[[], T], *, missing_ok: bool = False) -> T | None:
        def attempt():
            try:
                result = call()
            except stripe.StripeError as exc:
                if missing_ok and exc.http_status == 404 and getattr(exc, "code", None) == "resource_missing":
                    return None
                raise _translate(exc, operation) from None
            return result.to_dict() if hasattr(result, "to_dict") else result

        return call_with_retries(attempt, policy=self.retry_policy)


def _translate(exc: stripe.StripeError, operation: str):
    """Map an SDK error to ours: transient (retry) or permanent (fail now), with a scrubbed message."""
    status = exc.http_status
    code = getattr(exc, "code", None)
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
