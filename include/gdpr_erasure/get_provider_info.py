"""What Airflow's providers manager knows about this package (entry point
``apache_airflow_provider`` in pyproject.toml), laid out as apache/airflow's providers do.

With it, ``airflow providers list`` shows ``gdpr-erasure``, the connection types ``stripe``,
``twilio`` and ``segment`` resolve to our hooks (``Connection.get_hook()``, the UI's Test button),
and the connection form shows each type's fields.

Since Airflow 3.2 the form is read from ``conn-fields`` and ``ui-field-behaviour`` here, without
importing any hook: a hook's ``get_connection_form_widgets()`` and ``get_ui_field_behaviour()``
are the older API, which Airflow only calls for types that declare neither. Our hooks still offer
both (built from :data:`CONNECTION_TYPES` by :mod:`gdpr_erasure.hooks.connections`), so the two
can never disagree. Every Airflow process imports this module: it stays plain data.

The extras keep the names the hooks have always read, so existing connections keep working.
"""

from __future__ import annotations

import copy
from typing import Any

from gdpr_erasure import __version__

PACKAGE_NAME = "gdpr-erasure"

STRIPE, TWILIO, SEGMENT, PIPELINE = "Stripe", "Twilio", "Twilio Segment", "GDPR erasure"


def _text(label: str, description: str, **schema: Any) -> dict[str, Any]:
    """A ``conn-fields`` entry for an optional string extra."""
    return {"label": label, "description": description, "schema": {"type": ["string", "null"], **schema}}


#: The three connection types, keyed by type, in the providers manager's ``connection-types`` form.
CONNECTION_TYPES: dict[str, dict[str, Any]] = {
    "stripe": {
        "hook-class-name": "gdpr_erasure.hooks.stripe.StripeHook",
        "hook-name": STRIPE,
        "connection-type": "stripe",
        "conn-fields": {
            "account_id": _text(
                "Account id",
                "The acct_... id of the Stripe account your customers are in (Dashboard: Settings > "
                "Business > Account details). Test and the preflight require the key to belong to it: "
                "a key of another account finds nobody, which would read as erased.",
            ),
            "redaction_method": _text(
                "Redaction method",
                "delete: tag, delete and prove deleted: true. redaction_job: Stripe Redaction Jobs "
                "(public preview; the account needs it), which also redact charges, invoices and "
                "PaymentIntents.",
                default="delete",
                enum=["delete", "redaction_job"],
            ),
            "preview_api_version": _text(
                "Preview API version",
                "Stripe-Version sent on redaction-job calls. Empty: the version the hook was tested with.",
            ),
            "rate_per_second": _text(
                "Rate limit (operations/s)",
                "The account's Stripe rate limit, if Stripe raised it. Empty: 25 for test keys, 100 for "
                "live (docs.stripe.com/rate-limits). The pipeline uses 0.8 of it (extra fraction).",
            ),
        },
        "ui-field-behaviour": {
            # api_base (sandbox only) stays in the Extra JSON, never a form field.
            "hidden-fields": ["schema", "port", "login", "host"],
            "relabeling": {"password": "Secret key (sk_... or restricted rk_...)"},
            "placeholders": {"password": "rk_live_... with Customers read and write"},
        },
    },
    "twilio": {
        "hook-class-name": "gdpr_erasure.hooks.twilio.TwilioHook",
        "hook-name": TWILIO,
        "connection-type": "twilio",
        "conn-fields": {
            "account_sid": _text(
                "Account SID",
                "The account (AC...) whose data is erased. Required when the login is an API key (SK...).",
            ),
            "memory_store_id": _text(
                "Memory store id",
                "The Twilio Memory store (mem_store_...) holding the unified profiles.",
            ),
            "concurrency": _text(
                "Concurrent requests limit",
                "The account's limit on concurrent REST requests (error 20429), if Twilio told you. "
                "Empty: 10. The pipeline uses 0.8 of it (extra fraction).",
            ),
        },
        "ui-field-behaviour": {
            "hidden-fields": ["schema", "port", "host"],
            "relabeling": {
                "login": "API key SID (SK...) or Account SID (AC...)",
                "password": "API key secret or auth token",
            },
            "placeholders": {"login": "SK..."},
        },
    },
    "segment": {
        "hook-class-name": "gdpr_erasure.hooks.segment.SegmentHook",
        "hook-name": SEGMENT,
        "connection-type": "segment",
        "conn-fields": {
            "space_id": _text("Space id", "The Unify space whose profiles are looked up."),
            "profile_api_token": _text(
                "Profile API token", "The space's Profile API access token (read).", format="password"
            ),
            "profile_api_url": _text(
                "Profile API URL",
                "EU workspaces: https://profiles.euw1.segment.com",
                default="https://profiles.segment.com",
            ),
            "email_id_type": _text(
                "Email external id type",
                "The external id type the space's identity resolution uses for emails.",
                default="email",
            ),
            "phone_id_type": _text(
                "Phone external id type",
                "The external id type the space uses for phones (a custom type, often phone_number).",
                default="phone",
            ),
            "check_user_id": _text(
                "Check profile user_id",
                "user_id of a test profile with an email and a phone: Test and the preflight read it "
                "to prove the space, the token, the region and both id types. Never erase it.",
            ),
            "rate_per_second": _text(
                "Profile API rate limit (requests/s)",
                "The space's Profile API limit. Empty: 100 (Segment's documented limit). The pipeline "
                "uses 0.8 of it (extra fraction).",
            ),
        },
        "ui-field-behaviour": {
            "hidden-fields": ["schema", "port", "login"],
            "relabeling": {"host": "Public API URL", "password": "Public API token"},
            "placeholders": {"host": "https://api.segmentapis.com (EU: https://eu1.api.segmentapis.com)"},
        },
    },
}

# The modules of each integration, as the providers list them (docs and `airflow providers get`).
_MODULES: dict[str, dict[str, list[str]]] = {
    "hooks": {
        STRIPE: ["gdpr_erasure.hooks.stripe"],
        TWILIO: ["gdpr_erasure.hooks.twilio"],
        SEGMENT: ["gdpr_erasure.hooks.segment"],
    },
    "operators": {
        STRIPE: ["gdpr_erasure.operators.stripe"],
        TWILIO: ["gdpr_erasure.operators.twilio"],
        SEGMENT: ["gdpr_erasure.operators.segment"],
        PIPELINE: [
            "gdpr_erasure.operators.base",
            "gdpr_erasure.operators.preflight",
            "gdpr_erasure.operators.claim",
            "gdpr_erasure.operators.resolve",
            "gdpr_erasure.operators.ledger_record",
            "gdpr_erasure.operators.retention",
            "gdpr_erasure.operators.summary",
        ],
    },
    "sensors": {
        STRIPE: ["gdpr_erasure.sensors.stripe"],
        TWILIO: ["gdpr_erasure.sensors.twilio"],
        SEGMENT: ["gdpr_erasure.sensors.segment"],
        PIPELINE: ["gdpr_erasure.sensors.base"],
    },
    # Trigger modules only: the provider checks the trigger polls (gdpr_erasure.proofs) are
    # plain classes, which Airflow's "triggers" list is not for.
    "triggers": {
        PIPELINE: ["gdpr_erasure.triggers.proof"],
    },
}

_INTEGRATIONS = [
    {
        "integration-name": STRIPE,
        "external-doc-url": "https://docs.stripe.com/api/customers",
        "tags": ["service"],
    },
    {
        "integration-name": TWILIO,
        "external-doc-url": "https://www.twilio.com/docs/usage/api",
        "tags": ["service"],
    },
    {
        "integration-name": SEGMENT,
        "external-doc-url": "https://segment.com/docs/privacy/user-deletion-and-suppression/",
        "tags": ["service"],
    },
    {
        "integration-name": PIPELINE,
        "external-doc-url": "https://gdpr-info.eu/art-17-gdpr/",
        "tags": ["software"],
    },
]


def get_provider_info() -> dict[str, Any]:
    """The provider's description (a fresh copy: the providers manager adds keys to it).

    No ``plugins``: the intake and auditor plugins live in the plugins folder (``plugins/``), and
    registering them here too would load each twice.
    """
    info: dict[str, Any] = {
        "package-name": PACKAGE_NAME,
        "name": "GDPR erasure (Stripe, Twilio, Twilio Segment)",
        "description": "The right to be forgotten for Stripe, Twilio and Twilio Segment: hooks, "
        "operators, deferrable sensors and triggers that erase a person and prove each deletion.\n",
        "versions": [__version__],
        "integrations": _INTEGRATIONS,
        **{
            kind: [{"integration-name": name, "python-modules": modules} for name, modules in by.items()]
            for kind, by in _MODULES.items()
        },
        "notifications": ["gdpr_erasure.notifiers.ComplianceAlertNotifier"],
        "connection-types": list(CONNECTION_TYPES.values()),
    }
    return copy.deepcopy(info)
