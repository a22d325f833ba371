"""The erasure policy as values: one :class:`Rule` per object kind and per live-state case, and
the decision for one Stripe customer from the cases it has (:meth:`ErasurePolicy.stripe_decision`).

Everything here is frozen: a loaded policy cannot change under a run, and its ``digest`` (of
the file's bytes) names exactly the policy that decided.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType

from gdpr_erasure.policy.names import (
    ACTIVE_SUBSCRIPTION,
    ACTIVE_SUBSCRIPTION_STATUSES,
    CANCEL_THEN_ERASE,
    CLOSED_DISPUTE_STATUSES,
    CUSTOMER_BALANCE,
    ERASE,
    LIVE_STATE_CASES,
    OBJECT_KINDS,
    OPEN_DISPUTE,
    OPEN_INVOICE,
    OPEN_INVOICE_STATUSES,
    PRECEDENCE,
    REDACT,
    STRIPE_CUSTOMER,
    WITHHOLD,
)

# ISO 8601 date durations, PnYnMnWnD (the schema's pattern says the same, and at least one
# non-zero part: a zero review period would send a withheld request straight back).
_DURATION = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?$")


def add_duration(moment: datetime, duration: str) -> datetime:
    """``moment`` plus an ISO 8601 date duration, years and months added on the calendar (31
    January plus ``P1M`` is the last day of February), then weeks and days.

    :param moment: where to start; its time of day and time zone are kept.
    :param duration: ``PnYnMnWnD``, e.g. ``P30D``, ``P6M``, ``P10Y``, ``P1Y6M``.
    """
    match = _DURATION.match(duration)
    if not match or duration == "P":
        raise ValueError(f"not an ISO 8601 date duration (PnYnMnWnD): {duration!r}")
    years, months, weeks, days = (int(part or 0) for part in match.groups())
    month_index = moment.month - 1 + months
    year = moment.year + years + month_index // 12
    month = month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day) + timedelta(weeks=weeks, days=days)


@dataclass(frozen=True)
class Rule:
    """What to do with one object kind, or with a Stripe customer in one live-state case.

    :param action: one of ``names.ACTIONS`` that the kind or case allows.
    :param legal_basis: why it may be kept, in GDPR terms (required for retain, withhold, redact).
    :param retain_for: how long what is kept stays, an ISO 8601 duration (required for retain).
    :param review_after: when a withheld request is checked again, an ISO 8601 duration
        (required for withhold, and only there).
    :param note: free text for the people who read the policy and the reports.
    """

    action: str
    legal_basis: str | None = None
    retain_for: str | None = None
    review_after: str | None = None
    note: str | None = None

    def review_date(self, since: datetime) -> datetime | None:
        """When a request withheld at ``since`` goes back to the queue (None: no review period)."""
        return add_duration(since, self.review_after) if self.review_after else None

    def retained_until(self, since: datetime) -> datetime | None:
        """Until when what this rule keeps from ``since`` is kept (None: no retention period)."""
        return add_duration(since, self.retain_for) if self.retain_for else None

    def as_dict(self) -> dict[str, str]:
        """The rule as the policy file writes it (unset keys left out)."""
        return {
            key: value
            for key, value in (
                ("action", self.action),
                ("legal_basis", self.legal_basis),
                ("retain_for", self.retain_for),
                ("review_after", self.review_after),
                ("note", self.note),
            )
            if value is not None
        }


@dataclass(frozen=True)
class StripeDecision:
    """What happens to one Stripe customer, from its object rule and the live-state cases found
    on it.

    :param action: ``erase`` (the connection's method), ``redact`` (Redaction Job), ``retain``
        (the ``stripe.customer`` rule keeps every customer), ``withhold`` (no write at all; back
        to the queue at the review date) or ``hold_for_review`` (no write; a person decides).
    :param cancel_subscriptions: cancel the customer's subscriptions before erasing or
        redacting it (``active_subscription: cancel_then_erase`` and nothing stricter applies).
    :param cases: the live-state cases found on the customer, in ``LIVE_STATE_CASES`` order.
    :param deciding_case: the case whose rule decided; None when the ``stripe.customer`` rule
        did (no case, or none as strict as it).
    :param rule: the rule that decided (its legal basis, retention and review period are what
        the reports say about the customer).
    """

    action: str
    cancel_subscriptions: bool
    cases: tuple[str, ...]
    deciding_case: str | None
    rule: Rule | None

    @property
    def writes(self) -> bool:
        """Whether the customer gets any write at all (withheld, retained or held ones do not)."""
        return self.action in (ERASE, REDACT)

    def review_date(self, since: datetime) -> datetime | None:
        """When a withheld customer's request goes back to the queue (None unless withheld)."""
        return self.rule.review_date(since) if self.action == WITHHOLD and self.rule else None


def stripe_cases(
    *,
    subscription_statuses: Iterable[str] = (),
    invoice_statuses: Iterable[str] = (),
    dispute_statuses: Iterable[str] = (),
    balance: int = 0,
) -> tuple[str, ...]:
    """The live-state cases of one Stripe customer, from what the read-only calls returned.

    :param subscription_statuses: ``status`` of each of the customer's subscriptions.
    :param invoice_statuses: ``status`` of each of the customer's invoices.
    :param dispute_statuses: ``status`` of each dispute on the customer's charges.
    :param balance: the customer's ``balance`` (minor units; either sign is money owed).
    """
    found = set()
    if set(subscription_statuses) & ACTIVE_SUBSCRIPTION_STATUSES:
        found.add(ACTIVE_SUBSCRIPTION)
    if set(invoice_statuses) & OPEN_INVOICE_STATUSES:
        found.add(OPEN_INVOICE)
    if set(dispute_statuses) - CLOSED_DISPUTE_STATUSES:
        found.add(OPEN_DISPUTE)
    if balance:
        found.add(CUSTOMER_BALANCE)
    return tuple(case for case in LIVE_STATE_CASES if case in found)


@dataclass(frozen=True)
class ErasurePolicy:
    """A validated policy file.

    :param version: the file format (1).
    :param objects: one rule per object kind (``names.OBJECT_KINDS``).
    :param live_state: one rule per live-state case (``names.LIVE_STATE_CASES``).
    :param source: the file it was read from.
    :param digest: ``sha256:<hex>`` of the file's bytes, recorded with each decision so an
        auditor knows which policy applied.
    """

    version: int
    objects: Mapping[str, Rule] = field(hash=False)
    live_state: Mapping[str, Rule] = field(hash=False)
    source: str
    digest: str

    def __post_init__(self) -> None:
        # Read-only views: a policy cannot be changed after it is loaded.
        object.__setattr__(self, "objects", MappingProxyType(dict(self.objects)))
        object.__setattr__(self, "live_state", MappingProxyType(dict(self.live_state)))

    def object_rule(self, kind: str) -> Rule:
        """The rule for an object kind (``names.OBJECT_KINDS``)."""
        try:
            return self.objects[kind]
        except KeyError:
            raise ValueError(f"no object kind {kind!r}: the kinds are {', '.join(OBJECT_KINDS)}") from None

    def stripe_decision(self, cases: Iterable[str]) -> StripeDecision:
        """What to do with one Stripe customer that has these live-state cases.

        The ``stripe.customer`` rule and the rule of each case present are ranked by
        ``names.PRECEDENCE``; the strictest wins (a case before the object rule when they tie, as
        it names the more specific reason; among cases that withhold, the soonest review, so
        the request is checked again as soon as one reason may have gone; otherwise
        ``LIVE_STATE_CASES`` order). ``cancel_then_erase`` erases (or, next to a ``redact``
        case, redacts) after cancelling the subscriptions.

        :param cases: names from ``names.LIVE_STATE_CASES`` (repeats and order do not matter).
        """
        present = set(cases)
        unknown = present - set(LIVE_STATE_CASES)
        if unknown:
            raise ValueError(
                f"unknown live-state case(s) {sorted(unknown)}: the cases are {', '.join(LIVE_STATE_CASES)}"
            )
        ordered = tuple(case for case in LIVE_STATE_CASES if case in present)
        object_rule = self.object_rule(STRIPE_CUSTOMER)

        def rank(rule: Rule) -> int:
            return PRECEDENCE.index(rule.action)

        deciding_case: str | None = None
        rule = object_rule
        if ordered:
            strictest = min(rank(self.live_state[case]) for case in ordered)
            tied = [case for case in ordered if rank(self.live_state[case]) == strictest]
            if PRECEDENCE[strictest] == WITHHOLD:
                # P30D vs P1M compare by their dates from one fixed day; ties keep case order.
                reference = datetime(2000, 1, 1)
                tied.sort(key=lambda case: self.live_state[case].review_date(reference) or reference)
            if strictest <= rank(object_rule):
                deciding_case, rule = tied[0], self.live_state[tied[0]]
        action = ERASE if rule.action == CANCEL_THEN_ERASE else rule.action
        # Subscriptions are cancelled only on the way to a write: never for a withheld customer.
        cancel = (
            ACTIVE_SUBSCRIPTION in present
            and self.live_state[ACTIVE_SUBSCRIPTION].action == CANCEL_THEN_ERASE
            and action in (ERASE, REDACT)
        )
        return StripeDecision(
            action=action,
            cancel_subscriptions=cancel,
            cases=ordered,
            deciding_case=deciding_case,
            rule=rule,
        )

    def rules(self) -> Iterator[tuple[str, Rule]]:
        """``("objects.<kind>" | "live_state.<case>", rule)`` for every rule, objects first, each
        section in the fixed order of ``names``."""
        for kind in OBJECT_KINDS:
            yield f"objects.{kind}", self.objects[kind]
        for case in LIVE_STATE_CASES:
            yield f"live_state.{case}", self.live_state[case]

    def as_dict(self) -> dict[str, object]:
        """The effective policy as plain data (``gdpr-erasure policy show``)."""
        return {
            "version": self.version,
            "source": self.source,
            "digest": self.digest,
            "objects": {kind: self.objects[kind].as_dict() for kind in OBJECT_KINDS},
            "live_state": {case: self.live_state[case].as_dict() for case in LIVE_STATE_CASES},
        }
