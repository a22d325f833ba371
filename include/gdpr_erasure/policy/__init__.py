"""The erasure policy as code: per object kind and per Stripe live-state case, what the pipeline
does (erase, redact, retain, withhold, cancel_then_erase, hold_for_review), with the legal basis
and the periods of what it keeps.

``load_policy(policy_location())`` reads the configured policy file (the Airflow Variable
``gdpr_erasure_policy``, else ``$GDPR_ERASURE_POLICY``, else the shipped ``default.yaml``),
validates all of it against ``schema.json`` and returns a frozen :class:`ErasurePolicy`, or raises
:class:`PolicyError` naming the line at fault. docs/policy.md describes the format.
"""

from __future__ import annotations

from gdpr_erasure.policy.loader import (
    DEFAULT_POLICY_PATH,
    POLICY_ENV,
    POLICY_VARIABLE,
    SCHEMA_PATH,
    PolicyError,
    load_policy,
    policy_location,
    policy_schema,
)
from gdpr_erasure.policy.model import ErasurePolicy, Rule, StripeDecision, add_duration, stripe_cases
from gdpr_erasure.policy.names import (
    ACTIONS,
    ACTIVE_SUBSCRIPTION,
    ACTIVE_SUBSCRIPTION_STATUSES,
    CANCEL_THEN_ERASE,
    CASE_ACTIONS,
    CLOSED_DISPUTE_STATUSES,
    CUSTOMER_BALANCE,
    ERASE,
    ERASE_ONLY_KINDS,
    HOLD_FOR_REVIEW,
    LIVE_STATE_CASES,
    OBJECT_ACTIONS,
    OBJECT_KINDS,
    OPEN_DISPUTE,
    OPEN_INVOICE,
    OPEN_INVOICE_STATUSES,
    PRECEDENCE,
    REDACT,
    RETAIN,
    SEGMENT_PROFILE,
    STRIPE_CUSTOMER,
    TWILIO_COMMUNICATION_HISTORY,
    TWILIO_MEMORY_PROFILE,
    WITHHOLD,
)

__all__ = [
    "ACTIONS",
    "ACTIVE_SUBSCRIPTION",
    "ACTIVE_SUBSCRIPTION_STATUSES",
    "CANCEL_THEN_ERASE",
    "CASE_ACTIONS",
    "CLOSED_DISPUTE_STATUSES",
    "CUSTOMER_BALANCE",
    "DEFAULT_POLICY_PATH",
    "ERASE",
    "ERASE_ONLY_KINDS",
    "HOLD_FOR_REVIEW",
    "LIVE_STATE_CASES",
    "OBJECT_ACTIONS",
    "OBJECT_KINDS",
    "OPEN_DISPUTE",
    "OPEN_INVOICE",
    "OPEN_INVOICE_STATUSES",
    "POLICY_ENV",
    "POLICY_VARIABLE",
    "PRECEDENCE",
    "REDACT",
    "RETAIN",
    "SCHEMA_PATH",
    "SEGMENT_PROFILE",
    "STRIPE_CUSTOMER",
    "TWILIO_COMMUNICATION_HISTORY",
    "TWILIO_MEMORY_PROFILE",
    "WITHHOLD",
    "ErasurePolicy",
    "PolicyError",
    "Rule",
    "StripeDecision",
    "add_duration",
    "load_policy",
    "policy_location",
    "policy_schema",
    "stripe_cases",
]
