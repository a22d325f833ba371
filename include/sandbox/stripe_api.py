"""Emulation of the Stripe endpoints the pipeline calls (``api.stripe.com``, under ``/stripe``).

The key's own account (``GET /v1/account``), customers (list by email, retrieve, update, delete),
the live state read before an erasure (subscriptions, with retrieve and cancel; invoices; charges
and their disputes; the customer's ``balance``) and the preview Redaction Jobs API. Bodies are
form-encoded as stripe-python sends them; responses follow ``stripe.subset.json`` and every one
carries a ``Request-Id`` header. POST requests honour ``Idempotency-Key`` the way Stripe documents
it: the first result is stored and replayed for the same key and parameters, and a reuse with other
parameters or on another endpoint is an ``idempotency_error``. Stripe ignores the key on GET and
DELETE; a repeated cancel answers 404 like Stripe's.

A deleted customer answers as Stripe does (``GET``: the ``deleted: true`` object; update and
delete: a 404 ``resource_missing``) unless the answer knob ``stripe:deleted_customer_answer``
says otherwise (``not_found``: a 404 ``resource_missing`` for ``GET`` too; ``bare_404``: a 404
``invalid_request_error`` without ``code`` for every call, like some Stripe-compatible servers).

Lists filtered by ``customer`` (subscriptions, invoices, charges) answer an id the account does not
hold with a 400 ``resource_missing`` naming ``param: customer`` (Stripe's answer for an unknown id in
a parameter; the spec documents none for list filters), never with an empty list, so "no
subscriptions" cannot be read off a wrong id. A deleted customer's objects stay listable, as on
Stripe. Every successful write that concerns a customer or one of its objects (update, delete,
cancel a subscription, create or act on a redaction job naming it) is counted per customer
(``SandboxState.customer_writes``) and names the customer in the request log
(``stripe_customers``); reads name it too, and an idempotent replay is no write.

Every key belongs to the sandbox's account (:data:`sandbox.ids.STRIPE_ACCOUNT_ID`) except keys
starting ``sk_test_other_`` or ``rk_test_other_``: they belong to another account
(:data:`sandbox.ids.STRIPE_OTHER_ACCOUNT_ID`) that has no customers and sees none of the sandbox's
redaction jobs. Such a key answers every list with nobody and every customer with a 404, exactly
like a valid key of another Stripe account: the case only ``GET /v1/account`` tells apart.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.responses import Response

from sandbox import ids
from sandbox.state import Charge, Customer, Dispute, Invoice, RedactionJob, SandboxState, Subscription
from sandbox.web import Call, Service, json_response, parse_basic_auth

DEFAULT_API_VERSION = "2026-07-29.dahlia"
SUPPORT = "Please see https://stripe.com/docs or we can help at https://support.stripe.com/."
UPDATABLE_FIELDS = ("email", "name", "phone", "description")
ADDRESS_FIELDS = ("city", "country", "line1", "line2", "postal_code", "state")
REDACTION_OBJECT_KINDS = (
    "charges",
    "checkout_sessions",
    "customers",
    "identity_verification_sessions",
    "invoices",
    "issuing_cardholders",
    "payment_intents",
    "radar_value_list_items",
    "setup_intents",
)
LIST_LIMIT_MAX = 100
#: Key prefixes of the other account (see the module docs).
OTHER_ACCOUNT_KEY_PREFIXES = ("sk_test_other_", "rk_test_other_")
#: When the sandbox's accounts were created (fixed, so answers are reproducible).
ACCOUNT_CREATED = 1735689600
JOB_STATUSES = ("canceled", "canceling", "created", "failed", "ready", "redacting", "succeeded", "validating")
# Enums of the spec (latest/openapi.spec3.json @ 19be337d, 2026-07-29.dahlia): the list filters
# and the objects' statuses.
SUBSCRIPTION_STATUSES = (
    "active", "canceled", "incomplete", "incomplete_expired", "past_due", "paused", "trialing", "unpaid",
)  # fmt: skip
SUBSCRIPTION_FILTERS = (*SUBSCRIPTION_STATUSES, "all", "ended")
INVOICE_STATUSES = ("draft", "open", "paid", "uncollectible", "void")
COLLECTION_METHODS = ("charge_automatically", "send_invoice")
DISPUTE_CLOSED = frozenset({"lost", "prevented", "warning_closed", "won"})
#: The fields of a dispute's ``evidence`` (the spec's fixture), all unset: nothing submitted.
DISPUTE_EVIDENCE_FIELDS = (
    "access_activity_log",
    "billing_address",
    "cancellation_policy",
    "cancellation_policy_disclosure",
    "cancellation_rebuttal",
    "customer_communication",
    "customer_email_address",
    "customer_name",
    "customer_purchase_ip",
    "customer_signature",
    "duplicate_charge_documentation",
    "duplicate_charge_explanation",
    "duplicate_charge_id",
    "product_description",
    "receipt",
    "refund_policy",
    "refund_policy_disclosure",
    "refund_refusal_explanation",
    "service_date",
    "service_documentation",
    "shipping_address",
    "shipping_carrier",
    "shipping_date",
    "shipping_documentation",
    "shipping_tracking_number",
    "uncategorized_file",
    "uncategorized_text",
)
CANCELLATION_FEEDBACK = (
    "", "customer_service", "low_quality", "missing_features", "other", "switched_service", "too_complex",
    "too_expensive", "unused",
)  # fmt: skip
#: Subscriptions a cancel answers 404 for: Stripe reads a canceled one as gone (stripe/stripe-go#1887).
SUBSCRIPTION_ENDED = frozenset({"canceled", "incomplete_expired"})


class StripeError(Exception):
    """A Stripe error response: ``{"error": {...}}`` with an HTTP status."""

    def __init__(self, status: int, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.status = status
        self.error = {"message": message, "type": "invalid_request_error", **fields}


def missing(kind: str, object_id: str, param: str = "id") -> StripeError:
    """Stripe's 404 for an unknown (or deleted) object."""
    return StripeError(
        404,
        f"No such {kind}: '{object_id}'",
        code="resource_missing",
        doc_url="https://stripe.com/docs/error-codes/resource-missing",
        param=param,
    )


def missing_param(kind: str, object_id: str, param: str) -> StripeError:
    """Stripe's 400 for an unknown id passed as a parameter (not in the path)."""
    error = missing(kind, object_id, param)
    error.status = 400
    return error


def bare_missing(kind: str, object_id: str) -> StripeError:
    """A 404 ``invalid_request_error`` without ``code``, ``param`` or ``doc_url``."""
    return StripeError(404, f"No such {kind}: '{object_id}'")


def parse_nested(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Decode Stripe's bracket notation: ``metadata[k]=v``, ``objects[customers][0]=cus_1``.

    Both ``a[]=x`` and the indexed ``a[0]=x`` (what stripe-python sends) become lists.
    """
    root: dict[str, Any] = {}
    for key, value in pairs:
        head, _, rest = key.partition("[")
        parts = [head] + (re.findall(r"\[([^\]]*)\]", "[" + rest) if rest else [])
        node: Any = root
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            following = None if last else parts[index + 1]
            is_list = following == "" or (following is not None and following.isdigit())
            if isinstance(node, list):
                if last:
                    node.append(value)
                    break
                child_container: Any = [] if is_list else {}
                node.append(child_container)
                node = child_container
                continue
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, [] if is_list else {})
    return root


def customer_body(customer: Customer) -> dict[str, Any]:
    """The full ``customer`` object (field set of the spec's customer fixture)."""
    return {
        "id": customer.id,
        "object": "customer",
        "address": customer.address,
        "balance": customer.balance,
        "created": customer.created,
        "currency": "usd",
        "default_source": None,
        "delinquent": False,
        "description": customer.description,
        "discount": None,
        "email": customer.email,
        "invoice_prefix": customer.id[4:11].upper(),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": dict(customer.metadata),
        "name": customer.name,
        "next_invoice_sequence": 1,
        "phone": customer.phone,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }


def deleted_customer_body(customer_id: str) -> dict[str, Any]:
    return {"id": customer_id, "object": "customer", "deleted": True}


def subscription_body(sub: Subscription) -> dict[str, Any]:
    """The ``subscription`` object (field set of the spec's fixture) with its one item."""
    canceled = sub.status == "canceled"
    item = {
        "id": sub.item_id,
        "object": "subscription_item",
        "billing_thresholds": None,
        "created": sub.created,
        "current_period_end": sub.current_period_end,
        "current_period_start": sub.current_period_start,
        "discounts": [],
        "metadata": {},
        "price": {
            "id": sub.price_id,
            "object": "price",
            "active": True,
            "billing_scheme": "per_unit",
            "created": sub.created - 86400,
            "currency": sub.currency,
            "livemode": False,
            "lookup_key": None,
            "metadata": {},
            "nickname": None,
            "product": sub.product_id,
            "recurring": {
                "interval": "month",
                "interval_count": 1,
                "meter": None,
                "trial_period_days": None,
                "usage_type": "licensed",
            },
            "tax_behavior": "unspecified",
            "tiers_mode": None,
            "transform_quantity": None,
            "type": "recurring",
            "unit_amount": sub.unit_amount,
            "unit_amount_decimal": str(sub.unit_amount),
        },
        "quantity": 1,
        "subscription": sub.id,
        "tax_rates": [],
    }
    return {
        "id": sub.id,
        "object": "subscription",
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": sub.created,
        "billing_cycle_anchor_config": None,
        "billing_mode": {"type": "classic"},
        "billing_schedules": [],
        "billing_thresholds": None,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": sub.canceled_at,
        "cancellation_details": {
            "comment": None,
            "feedback": None,
            "reason": sub.cancellation_reason if canceled else None,
        },
        "collection_method": "charge_automatically",
        "created": sub.created,
        "currency": sub.currency,
        "customer": sub.customer,
        "customer_account": None,
        "days_until_due": None,
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "ended_at": sub.ended_at,
        "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
        "items": {
            "object": "list",
            "data": [item],
            "has_more": False,
            "url": f"/v1/subscription_items?subscription={sub.id}",
        },
        "latest_invoice": sub.latest_invoice,
        "livemode": False,
        "metadata": {},
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": None,
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": None,
        "start_date": sub.created,
        "status": sub.status,
        "test_clock": None,
        "transfer_data": None,
        "trial_end": sub.trial_end,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": sub.trial_start,
    }


def invoice_body(invoice: Invoice) -> dict[str, Any]:
    """The ``invoice`` object (the spec's properties; its fixture still has ``subscription``, which
    the 2026 spec moved to ``parent.subscription_details``, and lacks ``amount_paid_off_stripe``)."""
    finalized = invoice.status != "draft"
    url = f"https://invoice.stripe.com/i/acct_sandbox/{invoice.id}" if finalized else None
    parent = (
        {
            "quote_details": None,
            "subscription_details": {"metadata": {}, "subscription": invoice.subscription},
            "type": "subscription_details",
        }
        if invoice.subscription
        else None
    )
    return {
        "id": invoice.id,
        "object": "invoice",
        "account_country": "US",
        "account_name": "GDPR erasure sandbox",
        "account_tax_ids": None,
        "amount_due": invoice.amount_due,
        "amount_overpaid": 0,
        "amount_paid": invoice.amount_paid,
        "amount_paid_off_stripe": 0,
        "amount_remaining": invoice.amount_due - invoice.amount_paid,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": 1 if invoice.subscription else 0,
        "attempted": bool(invoice.subscription),
        "auto_advance": invoice.status in ("draft", "open"),
        "automatic_tax": {
            "disabled_reason": None,
            "enabled": False,
            "liability": None,
            "provider": None,
            "status": None,
        },
        "automatically_finalizes_at": None,
        "billing_reason": "subscription_cycle" if invoice.subscription else "manual",
        "collection_method": "charge_automatically" if invoice.subscription else "send_invoice",
        "created": invoice.created,
        "currency": invoice.currency,
        "custom_fields": None,
        "customer": invoice.customer,
        "customer_account": None,
        "customer_address": invoice.customer_address,
        "customer_email": invoice.customer_email,
        "customer_name": invoice.customer_name,
        "customer_phone": invoice.customer_phone,
        "customer_shipping": None,
        "customer_tax_exempt": "none",
        "customer_tax_ids": [],
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "due_date": invoice.due_date,
        "effective_at": invoice.finalized_at,
        "ending_balance": 0 if finalized else None,
        "footer": None,
        "from_invoice": None,
        "hosted_invoice_url": url,
        "invoice_pdf": f"{url}/pdf" if url else None,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "lines": {"object": "list", "data": [], "has_more": False, "url": f"/v1/invoices/{invoice.id}/lines"},
        "livemode": False,
        "metadata": {},
        "next_payment_attempt": None,
        "number": invoice.number,
        "on_behalf_of": None,
        "parent": parent,
        "payment_settings": {
            "default_mandate": None,
            "payment_method_options": None,
            "payment_method_types": None,
        },
        "period_end": invoice.period_end,
        "period_start": invoice.period_start,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": invoice.status,
        "status_transitions": {
            "finalized_at": invoice.finalized_at,
            "marked_uncollectible_at": invoice.marked_uncollectible_at,
            "paid_at": invoice.paid_at,
            "voided_at": None,
        },
        "subtotal": invoice.amount_due,
        "subtotal_excluding_tax": invoice.amount_due,
        "test_clock": None,
        "total": invoice.amount_due,
        "total_discount_amounts": [],
        "total_excluding_tax": invoice.amount_due,
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "webhooks_delivered_at": invoice.created,
    }


def charge_body(charge: Charge) -> dict[str, Any]:
    """The ``charge`` object (field set of the spec's fixture), a captured card payment."""
    return {
        "id": charge.id,
        "object": "charge",
        "amount": charge.amount,
        "amount_captured": charge.amount,
        "amount_refunded": 0,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": "txn_" + charge.id[3:],
        "billing_details": {**charge.billing_details, "tax_id": None},
        "calculated_statement_descriptor": "GDPR SANDBOX",
        "captured": True,
        "created": charge.created,
        "currency": charge.currency,
        "customer": charge.customer,
        "description": charge.description,
        "disputed": charge.disputed,
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "fraud_details": {},
        "livemode": False,
        "metadata": {},
        "on_behalf_of": None,
        "outcome": {
            "advice_code": None,
            "network_advice_code": None,
            "network_decline_code": None,
            "network_status": "approved_by_network",
            "reason": None,
            "risk_level": "normal",
            "seller_message": "Payment complete.",
            "type": "authorized",
        },
        "paid": True,
        "payment_intent": None,
        "payment_method": None,
        "payment_method_details": {
            "card": {"brand": "visa", "country": "US", "exp_month": 8, "exp_year": 2030, "last4": "4242"},
            "type": "card",
        },
        "receipt_email": charge.receipt_email,
        "receipt_number": None,
        "receipt_url": None,
        "refunded": False,
        "refunds": {
            "object": "list",
            "data": [],
            "has_more": False,
            "url": f"/v1/charges/{charge.id}/refunds",
        },
        "review": None,
        "shipping": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "succeeded",
        "transfer_data": None,
        "transfer_group": None,
    }


def dispute_body(dispute: Dispute) -> dict[str, Any]:
    """The ``dispute`` object (field set of the spec's fixture); no evidence submitted."""
    return {
        "id": dispute.id,
        "object": "dispute",
        "amount": dispute.amount,
        "balance_transactions": [],
        "charge": dispute.charge,
        "created": dispute.created,
        "currency": dispute.currency,
        "enhanced_eligibility_types": [],
        "evidence": {**dict.fromkeys(DISPUTE_EVIDENCE_FIELDS), "enhanced_evidence": {}},
        "evidence_details": {
            "due_by": dispute.evidence_due_by,
            "enhanced_eligibility": {},
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
        "is_charge_refundable": dispute.status not in DISPUTE_CLOSED,
        "livemode": False,
        "metadata": {},
        "payment_intent": None,
        "payment_method_details": {
            "card": {"brand": "visa", "case_type": "chargeback", "network_reason_code": "13.1"},
            "type": "card",
        },
        "reason": dispute.reason,
        "status": dispute.status,
    }


def account_body(account_id: str) -> dict[str, Any]:
    """The ``account`` object of a Standard account retrieving itself, with the field set of the
    spec's account fixture (``openapi/fixtures3.json``); ``external_accounts`` is left out, as
    Stripe returns it only to a controlling platform."""
    name = "GDPR erasure sandbox" if account_id == ids.STRIPE_ACCOUNT_ID else "Another Stripe account"
    no_requirements = {
        "alternatives": [],
        "current_deadline": None,
        "currently_due": [],
        "disabled_reason": None,
        "errors": [],
        "eventually_due": [],
        "past_due": [],
        "pending_verification": [],
    }
    return {
        "id": account_id,
        "object": "account",
        "business_profile": {
            "annual_revenue": None,
            "estimated_worker_count": None,
            "mcc": None,
            "minority_owned_business_designation": None,
            "name": name,
            "product_description": None,
            "support_address": None,
            "support_email": None,
            "support_phone": None,
            "support_url": None,
            "url": None,
        },
        "business_type": "company",
        "capabilities": {"card_payments": "active", "transfers": "active"},
        "charges_enabled": True,
        "controller": {"type": "account"},
        "country": "US",
        "created": ACCOUNT_CREATED,
        "default_currency": "usd",
        "details_submitted": True,
        "email": None,
        "future_requirements": dict(no_requirements),
        "metadata": {},
        "payouts_enabled": True,
        "requirements": dict(no_requirements),
        "settings": {
            "branding": {"icon": None, "logo": None, "primary_color": None, "secondary_color": None},
            "card_payments": {
                "decline_on": {"avs_failure": True, "cvc_failure": True},
                "statement_descriptor_prefix": None,
                "statement_descriptor_prefix_kana": None,
                "statement_descriptor_prefix_kanji": None,
            },
            "dashboard": {"display_name": name, "timezone": "Etc/UTC"},
            "payments": {
                "statement_descriptor": None,
                "statement_descriptor_kana": None,
                "statement_descriptor_kanji": None,
                "statement_descriptor_prefix_kana": None,
                "statement_descriptor_prefix_kanji": None,
            },
        },
        "tos_acceptance": {"date": None, "ip": None, "user_agent": None},
        "type": "standard",
    }


def job_body(job: RedactionJob) -> dict[str, Any]:
    """The ``privacy.redaction_job`` object."""
    return {
        "id": job.id,
        "object": "privacy.redaction_job",
        "created": job.created,
        "livemode": False,
        "objects": {kind: job.objects.get(kind) for kind in REDACTION_OBJECT_KINDS},
        "status": job.status,
        "validation_behavior": job.validation_behavior,
        "validation_errors": {
            "object": "list",
            "data": job.validation_errors[:10],
            "has_more": len(job.validation_errors) > 10,
            "url": f"/v1/privacy/redaction_jobs/{job.id}/validation_errors",
        },
    }


class StripeService(Service):
    api = "stripe"
    name = "api.stripe.com"

    def __init__(self) -> None:
        super().__init__()
        self.route("GET", "/v1/account", retrieve_account)
        self.route("GET", "/v1/customers", list_customers)
        self.route("GET", "/v1/customers/search", search_customers)
        self.route("GET", "/v1/customers/{customer}", retrieve_customer)
        self.route("POST", "/v1/customers/{customer}", update_customer)
        self.route("DELETE", "/v1/customers/{customer}", delete_customer)
        self.route("GET", "/v1/subscriptions", list_subscriptions)
        self.route("GET", "/v1/subscriptions/{subscription_exposed_id}", retrieve_subscription)
        self.route("DELETE", "/v1/subscriptions/{subscription_exposed_id}", cancel_subscription)
        self.route("GET", "/v1/invoices", list_invoices)
        self.route("GET", "/v1/charges", list_charges)
        self.route("GET", "/v1/disputes", list_disputes)
        self.route("GET", "/v1/privacy/redaction_jobs", list_jobs)
        self.route("POST", "/v1/privacy/redaction_jobs", create_job)
        self.route("GET", "/v1/privacy/redaction_jobs/{job}", retrieve_job)
        self.route("POST", "/v1/privacy/redaction_jobs/{job}/run", run_job)
        self.route("POST", "/v1/privacy/redaction_jobs/{job}/validate", validate_job)
        self.route("POST", "/v1/privacy/redaction_jobs/{job}/cancel", cancel_job)
        self.route("GET", "/v1/privacy/redaction_jobs/{job}/validation_errors", list_validation_errors)

    # -- service hooks -----------------------------------------------------------------------

    def authenticate(self, call: Call) -> Response | None:
        key = _api_key(call.header("authorization"))
        if key is None:
            message = (
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, "
                "or we can help at https://support.stripe.com/."
            )
            return self._unauthorized(message)
        if not re.fullmatch(r"(sk|rk)_test_\w+", key):
            # Only test-mode keys are accepted: a live key must never be used with the sandbox.
            return self._unauthorized(f"Invalid API Key provided: {key[:8]}****{key[-4:]}")
        return None

    def _unauthorized(self, message: str) -> Response:
        body = {"error": {"message": message, "type": "invalid_request_error"}}
        return json_response(body, 401, {"WWW-Authenticate": 'Basic realm="Stripe"'})

    def not_found(self, call: Call) -> Response:
        message = f"Unrecognized request URL ({call.method}: {call.path}). {SUPPORT}"
        return json_response({"error": {"message": message, "type": "invalid_request_error"}}, 404)

    def fault(self, call: Call, status: int, retry_after: str) -> Response:
        if status == 429:
            error = {
                "code": "rate_limit",
                "doc_url": "https://stripe.com/docs/error-codes/rate-limit",
                "message": "Request rate limit exceeded. You can learn more about rate limits here "
                "https://stripe.com/docs/rate-limits.",
                "type": "invalid_request_error",
            }
        else:
            error = {"message": "An unknown error occurred", "type": "api_error"}
        return json_response({"error": error}, status)

    def run(self, call: Call) -> Response:
        """Run the handler, turning :class:`StripeError` into Stripe's error body.

        POST requests go through the idempotency layer first.
        """
        key = call.header("idempotency-key")
        if call.method == "POST" and key:
            return self._idempotent(call, key)
        return self._execute(call)

    def _execute(self, call: Call) -> Response:
        try:
            return super().run(call)
        except StripeError as exc:
            return json_response({"error": exc.error}, exc.status)

    def _idempotent(self, call: Call, key: str) -> Response:
        """Replay the stored result of ``key`` or store the result of this first request."""
        store = call.state.idempotency
        endpoint = f"{call.method} {call.path}"
        params = sorted(call.form_pairs())
        seen = store.get(key)
        if seen is None:
            response = self._execute(call)
            if response.status_code == 400:
                # Stripe saves no result when the parameters failed validation: a retry with
                # corrected parameters may reuse the key.
                return response
            store[key] = {
                "endpoint": endpoint,
                "params": params,
                "status": response.status_code,
                "body": bytes(response.body),
                "request_id": call.state.ids.request_id(),
            }
            response.headers["Request-Id"] = store[key]["request_id"]
            return response
        if seen["endpoint"] != endpoint:
            message = (
                "Keys for idempotent requests can only be used for the same endpoint they were first "
                f"used for ('{seen['endpoint']}' vs '{endpoint}'). Try using a key other than "
                f"'{key}' if you meant to execute a different request."
            )
            return json_response({"error": {"message": message, "type": "idempotency_error"}}, 400)
        if seen["params"] != params:
            message = (
                "Keys for idempotent requests can only be used with the same parameters they were "
                f"first used with. Try using a key other than '{key}' if you meant to execute a "
                "different request."
            )
            return json_response({"error": {"message": message, "type": "idempotency_error"}}, 400)
        replay = Response(seen["body"], status_code=seen["status"], media_type="application/json")
        replay.headers["Idempotent-Replayed"] = "true"
        call.log["idempotent_replay"] = True  # introspection: a replay changed nothing
        replay.headers["Original-Request"] = seen["request_id"]
        return replay

    def finish(self, call: Call, response: Response) -> Response:
        if "request-id" not in response.headers:
            response.headers["Request-Id"] = call.state.ids.request_id()
        response.headers["Stripe-Version"] = call.header("stripe-version") or DEFAULT_API_VERSION
        key = call.header("idempotency-key")
        if key is not None:
            call.log["idempotency_key"] = key  # logged for faulted calls too
        if key and call.method == "POST":
            response.headers["Idempotency-Key"] = key
        return response


def account_of(call: Call) -> str:
    """The Stripe account the call's key belongs to (the key was accepted by ``authenticate``)."""
    key = _api_key(call.header("authorization")) or ""
    return (
        ids.STRIPE_OTHER_ACCOUNT_ID if key.startswith(OTHER_ACCOUNT_KEY_PREFIXES) else ids.STRIPE_ACCOUNT_ID
    )


def _customers(call: Call) -> dict[str, Customer]:
    """The customers the call's account holds: the sandbox's, or none for the other account."""
    return call.state.customers if account_of(call) == ids.STRIPE_ACCOUNT_ID else {}


def _holds(call: Call, collection: str) -> dict[str, Any]:
    """One of the account's collections (``subscriptions``, ``invoices``, ``charges``, ``disputes``):
    the sandbox's, or none for the other account."""
    return getattr(call.state, collection) if account_of(call) == ids.STRIPE_ACCOUNT_ID else {}


def _names(call: Call, *customer_ids: str) -> None:
    """Name the customers a call concerned in the request log (ids only, never personal data)."""
    named = call.log.setdefault("stripe_customers", [])
    named.extend(c for c in customer_ids if c not in named)


def _wrote(call: Call, *customer_ids: str) -> None:
    """A successful write to these customers or their objects: counted, and named in the log."""
    _names(call, *customer_ids)
    for customer_id in dict.fromkeys(customer_ids):
        call.state.count_customer_write(customer_id)


def _api_key(header: str | None) -> str | None:
    """The secret key from ``Bearer <key>`` or from Basic auth with the key as username."""
    if header and header.lower().startswith("bearer "):
        return header[7:].strip() or None
    basic = parse_basic_auth(header)
    return basic[0] or None if basic else None


# --- parameter helpers --------------------------------------------------------------------------


def _params(call: Call) -> dict[str, Any]:
    pairs = call.form_pairs() if call.method == "POST" else list(call.query.multi_items())
    return parse_nested(pairs)


def _reject_unknown(params: dict[str, Any], allowed: set[str]) -> None:
    for name in params:
        if name not in allowed:
            raise StripeError(400, f"Received unknown parameter: {name}", param=name)


def _limit(params: dict[str, Any]) -> int:
    raw = params.get("limit", "10")
    if not isinstance(raw, str) or not re.fullmatch(r"-?\d+", raw):
        raise StripeError(400, f"Invalid integer: {raw}", param="limit")
    limit = int(raw)
    if limit < 1:
        raise StripeError(400, "This value must be greater than or equal to 1.", param="limit")
    if limit > LIST_LIMIT_MAX:
        raise StripeError(400, "This value must be less than or equal to 100.", param="limit")
    return limit


def _page(items: list[Any], params: dict[str, Any], key: Any, kind: str) -> tuple[list[Any], bool]:
    """Cursor paging over ``items`` (newest first) with starting_after / ending_before."""
    limit = _limit(params)
    ids = [key(item) for item in items]
    after, before = params.get("starting_after"), params.get("ending_before")
    if after is not None:
        if after not in ids:
            raise missing(kind, after, "starting_after")
        start = ids.index(after) + 1
        return items[start : start + limit], start + limit < len(items)
    if before is not None:
        if before not in ids:
            raise missing(kind, before, "ending_before")
        end = ids.index(before)
        return items[max(0, end - limit) : end], end - limit > 0
    return items[:limit], limit < len(items)


def _live_customer(call: Call, customer_id: str) -> Customer:
    customer = _customers(call).get(customer_id)
    if customer is None:
        raise missing("customer", customer_id)
    if customer.deleted:
        raise _deleted(call.state, customer_id)
    return customer


def _deleted(state: SandboxState, customer_id: str) -> StripeError:
    """The 404 a deleted customer answers with (Stripe's, or the knob's bare form)."""
    if state.faults.answer("stripe", "deleted_customer_answer") == "bare_404":
        return bare_missing("customer", customer_id)
    return missing("customer", customer_id)


# --- account ------------------------------------------------------------------------------------


def retrieve_account(call: Call) -> Response:
    """``GET /v1/account``: the account of the key (Stripe's "Retrieve account" without an id)."""
    _reject_unknown(_params(call), {"expand"})
    return json_response(account_body(account_of(call)))


# --- customers ----------------------------------------------------------------------------------


def list_customers(call: Call) -> Response:
    params = _params(call)
    _reject_unknown(params, {"email", "limit", "starting_after", "ending_before", "created", "expand"})
    email = params.get("email")
    customers = sorted(
        (c for c in _customers(call).values() if not c.deleted and (email is None or c.email == email)),
        key=lambda c: (-c.created, c.id),
    )
    page, has_more = _page(customers, params, lambda c: c.id, "customer")
    body = {"object": "list", "data": [customer_body(c) for c in page], "has_more": has_more}
    return json_response({**body, "url": "/v1/customers"})


def search_customers(call: Call) -> Response:
    """``/v1/customers/search`` for ``email:'x'`` (and ``name``/``phone``) exact-match queries."""
    params = _params(call)
    _reject_unknown(params, {"query", "limit", "page", "expand"})
    query = params.get("query")
    if not query:
        raise StripeError(400, "Missing required param: query.", param="query")
    clauses = re.findall(r"(email|name|phone)\s*:\s*['\"]([^'\"]*)['\"]", query)
    if not clauses:
        raise StripeError(400, f"Invalid search query: {query}", param="query")
    customers = [
        customer_body(c)
        for c in sorted(_customers(call).values(), key=lambda c: (-c.created, c.id))
        if not c.deleted and all(getattr(c, field) == value for field, value in clauses)
    ][: _limit(params)]
    body = {"object": "search_result", "data": customers, "has_more": False, "next_page": None}
    return json_response({**body, "url": "/v1/customers/search"})


def retrieve_customer(call: Call) -> Response:
    customer_id = call.params["customer"]
    customer = _customers(call).get(customer_id)
    if customer is None:
        raise missing("customer", customer_id)
    if customer.deleted:
        if call.state.faults.answer("stripe", "deleted_customer_answer") == "stub":
            return json_response(deleted_customer_body(customer.id))
        raise _deleted(call.state, customer_id)
    _names(call, customer.id)
    return json_response(customer_body(customer))


def update_customer(call: Call) -> Response:
    customer = _live_customer(call, call.params["customer"])
    params = _params(call)
    _reject_unknown(params, {*UPDATABLE_FIELDS, "metadata", "address", "expand"})
    metadata = _metadata_changes(params.get("metadata"))
    address = params.get("address")
    if address is not None and not isinstance(address, dict | str):
        raise StripeError(400, "Invalid address", param="address")
    # Validation done: apply everything at once so a rejected request changes nothing.
    for name in UPDATABLE_FIELDS:
        if name in params:
            setattr(customer, name, params[name] or None)
    if isinstance(address, dict):
        current = customer.address or dict.fromkeys(ADDRESS_FIELDS)
        customer.address = {**current, **{k: v or None for k, v in address.items() if k in ADDRESS_FIELDS}}
    elif address == "":
        customer.address = None
    if metadata is None:
        customer.metadata = {}
    else:
        for meta_key, value in metadata.items():
            if value:
                customer.metadata[meta_key] = value
            else:
                customer.metadata.pop(meta_key, None)
    _wrote(call, customer.id)
    return json_response(customer_body(customer))


def _metadata_changes(raw: Any) -> dict[str, str] | None:
    """Validated metadata changes; ``None`` means ``metadata=`` (unset every key)."""
    if raw is None:
        return {}
    if raw == "":
        return None
    if not isinstance(raw, dict):
        raise StripeError(400, "Invalid object", param="metadata")
    for meta_key, value in raw.items():
        if not isinstance(value, str):
            raise StripeError(400, "Invalid string", param=f"metadata[{meta_key}]")
        if len(meta_key) > 40:
            raise StripeError(400, "Metadata keys can have up to 40 characters.", param="metadata")
        if len(value) > 500:
            raise StripeError(400, "Metadata values can have up to 500 characters.", param="metadata")
    return raw


def delete_customer(call: Call) -> Response:
    """Delete the customer; as Stripe documents, this "also immediately cancels any active
    subscriptions on the customer"."""
    customer = _live_customer(call, call.params["customer"])
    customer.deleted = True
    for sub in call.state.subscriptions.values():
        if sub.customer == customer.id and sub.status not in SUBSCRIPTION_ENDED:
            _end_subscription(call.state, sub)
    _wrote(call, customer.id)
    return json_response(deleted_customer_body(customer.id))


# --- live state: subscriptions, invoices, charges, disputes -------------------------------------


def _filter_customer(call: Call, params: dict[str, Any]) -> str | None:
    """The ``customer`` filter, which must name a customer of the account (deleted ones included)."""
    customer_id = params.get("customer")
    if customer_id is None:
        return None
    if not isinstance(customer_id, str) or customer_id not in _customers(call):
        raise missing_param("customer", str(customer_id), "customer")
    _names(call, customer_id)
    return customer_id


def _choice(params: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str | None:
    value = params.get(name)
    if value is not None and value not in allowed:
        raise StripeError(400, f"Invalid {name}: must be one of {', '.join(allowed)}", param=name)
    return value


def _listed(call: Call, items: list[Any], params: dict[str, Any], kind: str, url: str, body: Any) -> Response:
    """One page of ``items`` (newest first), in Stripe's list envelope."""
    ordered = sorted(items, key=lambda item: (-item.created, item.id))
    page, has_more = _page(ordered, params, lambda item: item.id, kind)
    call.log["page_size"] = _limit(params)  # introspection: what page size the client asked for
    return json_response(
        {"object": "list", "data": [body(i) for i in page], "has_more": has_more, "url": url}
    )


def list_subscriptions(call: Call) -> Response:
    """``GET /v1/subscriptions``: without ``status``, every subscription not canceled; ``ended`` is
    canceled and incomplete_expired, ``all`` everything."""
    params = _params(call)
    _reject_unknown(
        params,
        {
            "automatic_tax", "collection_method", "created", "current_period_end", "current_period_start",
            "customer", "customer_account", "ending_before", "expand", "limit", "price", "starting_after",
            "status", "test_clock",
        },
    )  # fmt: skip
    customer_id = _filter_customer(call, params)
    status = _choice(params, "status", SUBSCRIPTION_FILTERS)
    _choice(params, "collection_method", COLLECTION_METHODS)
    price = params.get("price")

    def wanted(sub: Subscription) -> bool:
        if customer_id is not None and sub.customer != customer_id:
            return False
        if price is not None and sub.price_id != price:
            return False
        if status is None:
            return sub.status != "canceled"
        if status == "ended":
            return sub.status in SUBSCRIPTION_ENDED
        return status == "all" or sub.status == status

    subs = [s for s in _holds(call, "subscriptions").values() if wanted(s)]
    return _listed(call, subs, params, "subscription", "/v1/subscriptions", subscription_body)


def _subscription(call: Call) -> Subscription:
    sub_id = call.params["subscription_exposed_id"]
    sub = _holds(call, "subscriptions").get(sub_id)
    if sub is None:
        raise missing("subscription", sub_id)
    return sub


def retrieve_subscription(call: Call) -> Response:
    """``GET /v1/subscriptions/{id}``: canceled subscriptions are still retrieved (status canceled)."""
    _reject_unknown(_params(call), {"expand"})
    sub = _subscription(call)
    _names(call, sub.customer)
    return json_response(subscription_body(sub))


def cancel_subscription(call: Call) -> Response:
    """``DELETE /v1/subscriptions/{id}``: cancel now; a subscription already canceled answers 404
    ``No such subscription``, as Stripe does (stripe/stripe-go#1887), so a repeat is no write."""
    params = _params(call)
    _reject_unknown(params, {"cancellation_details", "expand", "invoice_now", "prorate"})
    details = params.get("cancellation_details") or {}
    if not isinstance(details, dict):
        raise StripeError(400, "Invalid object", param="cancellation_details")
    _choice(details, "feedback", CANCELLATION_FEEDBACK)
    sub = _subscription(call)
    if sub.status in SUBSCRIPTION_ENDED:
        raise missing("subscription", sub.id)
    _end_subscription(call.state, sub)
    _wrote(call, sub.customer)
    return json_response(subscription_body(sub))


def _end_subscription(state: SandboxState, sub: Subscription) -> None:
    sub.status = "canceled"
    sub.canceled_at = sub.ended_at = int(state.wall())
    sub.cancellation_reason = "cancellation_requested"


def list_invoices(call: Call) -> Response:
    """``GET /v1/invoices``: every status unless ``status`` names one."""
    params = _params(call)
    _reject_unknown(
        params,
        {
            "collection_method", "created", "customer", "customer_account", "due_date", "ending_before",
            "expand", "limit", "starting_after", "status", "subscription",
        },
    )  # fmt: skip
    customer_id = _filter_customer(call, params)
    status = _choice(params, "status", INVOICE_STATUSES)
    method = _choice(params, "collection_method", COLLECTION_METHODS)
    subscription = params.get("subscription")
    invoices = [
        i
        for i in _holds(call, "invoices").values()
        if (customer_id is None or i.customer == customer_id)
        and (status is None or i.status == status)
        and (subscription is None or i.subscription == subscription)
        and (method is None or invoice_body(i)["collection_method"] == method)
    ]
    return _listed(call, invoices, params, "invoice", "/v1/invoices", invoice_body)


def list_charges(call: Call) -> Response:
    """``GET /v1/charges``; the sandbox's charges have no PaymentIntent and no transfer group."""
    params = _params(call)
    _reject_unknown(
        params,
        {"created", "customer", "ending_before", "expand", "limit", "payment_intent", "starting_after",
         "transfer_group"},
    )  # fmt: skip
    customer_id = _filter_customer(call, params)
    unmatched = params.get("payment_intent") is not None or params.get("transfer_group") is not None
    charges = [
        c
        for c in _holds(call, "charges").values()
        if not unmatched and (customer_id is None or c.customer == customer_id)
    ]
    return _listed(call, charges, params, "charge", "/v1/charges", charge_body)


def list_disputes(call: Call) -> Response:
    """``GET /v1/disputes``: the spec has no ``customer`` filter; ``charge`` must name a charge of
    the account (400 ``resource_missing`` otherwise, like an unknown customer)."""
    params = _params(call)
    _reject_unknown(
        params, {"charge", "created", "ending_before", "expand", "limit", "payment_intent", "starting_after"}
    )
    charge_id = params.get("charge")
    if charge_id is not None:
        charge = _holds(call, "charges").get(charge_id)
        if charge is None:
            raise missing_param("charge", str(charge_id), "charge")
        _names(call, charge.customer)
    unmatched = params.get("payment_intent") is not None
    disputes = [
        d
        for d in _holds(call, "disputes").values()
        if not unmatched and (charge_id is None or d.charge == charge_id)
    ]
    return _listed(call, disputes, params, "dispute", "/v1/disputes", dispute_body)


# --- redaction jobs -----------------------------------------------------------------------------


def _job(call: Call, job_id: str) -> RedactionJob:
    job = call.state.redaction_jobs.get(job_id)
    if job is None or job.account != account_of(call):
        raise missing("redaction job", job_id, "job")
    return job


def list_jobs(call: Call) -> Response:
    """``GET /v1/privacy/redaction_jobs`` (newest first; ``status`` filters)."""
    params = _params(call)
    _reject_unknown(params, {"limit", "starting_after", "ending_before", "status", "expand"})
    status = params.get("status")
    if status is not None and status not in JOB_STATUSES:
        expected = ", ".join(JOB_STATUSES)
        raise StripeError(400, f"Invalid status: must be one of {expected}", param="status")
    jobs = sorted(
        (
            j
            for j in call.state.redaction_jobs.values()
            if j.account == account_of(call) and (status is None or j.status == status)
        ),
        key=lambda j: (-j.created, j.id),
    )
    page, has_more = _page(jobs, params, lambda j: j.id, "redaction job")
    body = {"object": "list", "data": [job_body(j) for j in page], "has_more": has_more}
    return json_response({**body, "url": "/v1/privacy/redaction_jobs"})


def create_job(call: Call) -> Response:
    params = _params(call)
    _reject_unknown(params, {"objects", "validation_behavior", "expand"})
    objects = params.get("objects")
    if not objects:
        raise StripeError(400, "Missing required param: objects.", param="objects")
    if not isinstance(objects, dict):
        raise StripeError(400, "Invalid object", param="objects")
    for kind, object_ids in objects.items():
        if kind not in (*REDACTION_OBJECT_KINDS, "issuing_cards"):
            raise StripeError(400, f"Received unknown parameter: objects[{kind}]", param=f"objects[{kind}]")
        if not isinstance(object_ids, list) or not all(isinstance(i, str) and i for i in object_ids):
            raise StripeError(400, "Invalid array", param=f"objects[{kind}]")
    behavior = params.get("validation_behavior", "error")
    if behavior not in ("error", "fix"):
        message = f"Invalid validation_behavior: must be one of error or fix (got {behavior!r})"
        raise StripeError(400, message, param="validation_behavior")
    state = call.state
    job = RedactionJob(
        id=state.ids.stripe("prj"),
        created=int(state.wall()),
        objects={kind: list(object_ids) for kind, object_ids in objects.items()},
        validation_behavior=behavior,
        since=state.clock(),
        account=account_of(call),
    )
    state.redaction_jobs[job.id] = job
    _wrote(call, *_job_customers(state, job))
    return json_response(job_body(job))


def _job_customers(state: SandboxState, job: RedactionJob) -> list[str]:
    """The sandbox customers a job concerns: those it names and those of the charges and invoices it
    names (a job of the other account concerns none)."""
    if job.account != ids.STRIPE_ACCOUNT_ID:
        return []
    named = [c for c in job.objects.get("customers", []) if c in state.customers]
    for kind, store in (("charges", state.charges), ("invoices", state.invoices)):
        named += [store[i].customer for i in job.objects.get(kind, []) if i in store]
    return list(dict.fromkeys(named))


def retrieve_job(call: Call) -> Response:
    return json_response(job_body(_job(call, call.params["job"])))


def _transition(call: Call, allowed: set[str], status: str, action: str) -> Response:
    job = _job(call, call.params["job"])
    if job.status not in allowed:
        expected = " or ".join(f"`{s}`" for s in sorted(allowed))
        message = (
            f"You cannot {action} this redaction job because its status is `{job.status}`. "
            f"It must be {expected}."
        )
        raise StripeError(400, message, param="job")
    job.status, job.since = status, call.state.clock()
    if status == "validating":
        job.validation_errors = []
    _wrote(call, *_job_customers(call.state, job))
    return json_response(job_body(job))


def run_job(call: Call) -> Response:
    return _transition(call, {"ready"}, "redacting", "run")


def validate_job(call: Call) -> Response:
    return _transition(call, {"failed"}, "validating", "validate")


def cancel_job(call: Call) -> Response:
    return _transition(call, {"ready", "failed"}, "canceling", "cancel")


def list_validation_errors(call: Call) -> Response:
    job = _job(call, call.params["job"])
    params = _params(call)
    _reject_unknown(params, {"limit", "starting_after", "ending_before", "expand"})
    page, has_more = _page(job.validation_errors, params, lambda e: e["id"], "validation error")
    url = f"/v1/privacy/redaction_jobs/{job.id}/validation_errors"
    return json_response({"object": "list", "data": page, "has_more": has_more, "url": url})
