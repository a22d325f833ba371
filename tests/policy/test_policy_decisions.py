"""Decisions from the policy: one Stripe customer's cases combined by precedence, the Stripe
statuses behind each case, and the review and retention dates."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest
from support.policy_files import EVERY_ACTION, write

from gdpr_erasure.policy import (
    ACTIVE_SUBSCRIPTION,
    CASE_ACTIONS,
    CUSTOMER_BALANCE,
    LIVE_STATE_CASES,
    OBJECT_ACTIONS,
    OBJECT_KINDS,
    OPEN_DISPUTE,
    OPEN_INVOICE,
    PRECEDENCE,
    STRIPE_CUSTOMER,
    ErasurePolicy,
    Rule,
    add_duration,
    load_policy,
    stripe_cases,
)

BASIS = "Art. 17(3)(b) GDPR"


def rule(action: str, review_after: str = "P30D") -> Rule:
    """A valid rule for ``action`` (what the schema requires filled in)."""
    return Rule(
        action=action,
        legal_basis=BASIS if action in ("retain", "withhold", "redact") else None,
        retain_for="P10Y" if action == "retain" else None,
        review_after=review_after if action == "withhold" else None,
    )


def policy(customer: str = "erase", **cases: str) -> ErasurePolicy:
    """The default policy with the ``stripe.customer`` rule and some case rules replaced."""
    default = load_policy()
    return ErasurePolicy(
        version=1,
        objects={**default.objects, STRIPE_CUSTOMER: rule(customer)},
        live_state={**default.live_state, **{case: rule(action) for case, action in cases.items()}},
        source="test",
        digest="sha256:test",
    )


DEFAULT = load_policy()
CANCELS = policy(active_subscription="cancel_then_erase")

# (id, policy, cases present, action, cancel subscriptions, deciding case)
TABLE = [
    ("nothing going on", DEFAULT, [], "erase", False, None),
    ("a subscription", DEFAULT, [ACTIVE_SUBSCRIPTION], "withhold", False, ACTIVE_SUBSCRIPTION),
    ("an open invoice", DEFAULT, [OPEN_INVOICE], "redact", False, OPEN_INVOICE),
    ("an open dispute", DEFAULT, [OPEN_DISPUTE], "withhold", False, OPEN_DISPUTE),
    ("a balance", DEFAULT, [CUSTOMER_BALANCE], "withhold", False, CUSTOMER_BALANCE),
    ("invoice and dispute: withhold beats redact", DEFAULT, [OPEN_INVOICE, OPEN_DISPUTE], "withhold", False,
     OPEN_DISPUTE),
    ("two withholds: the sooner review decides", DEFAULT, [OPEN_DISPUTE, CUSTOMER_BALANCE], "withhold", False,
     CUSTOMER_BALANCE),
    ("every case", DEFAULT, list(LIVE_STATE_CASES), "withhold", False, ACTIVE_SUBSCRIPTION),
    ("cancel_then_erase", CANCELS, [ACTIVE_SUBSCRIPTION], "erase", True, ACTIVE_SUBSCRIPTION),
    ("cancel_then_erase with redact: cancel, then redact", CANCELS, [ACTIVE_SUBSCRIPTION, OPEN_INVOICE],
     "redact", True, OPEN_INVOICE),
    ("cancel_then_erase with withhold: no write, no cancel", CANCELS, [ACTIVE_SUBSCRIPTION, OPEN_DISPUTE],
     "withhold", False, OPEN_DISPUTE),
    ("hold_for_review beats everything", policy(active_subscription="cancel_then_erase",
     open_dispute="hold_for_review"), list(LIVE_STATE_CASES), "hold_for_review", False, OPEN_DISPUTE),
    ("a balance the company erases", policy(customer_balance="erase"), [CUSTOMER_BALANCE], "erase", False,
     CUSTOMER_BALANCE),
    ("a balance redacted", policy(customer_balance="redact"), [CUSTOMER_BALANCE], "redact", False,
     CUSTOMER_BALANCE),
    ("customer rule redact, nothing going on", policy("redact"), [], "redact", False, None),
    ("customer rule redact beats an erase case", policy("redact", customer_balance="erase"),
     [CUSTOMER_BALANCE], "redact", False, None),
    ("customer rule redact with cancel_then_erase", policy("redact", active_subscription="cancel_then_erase"),
     [ACTIVE_SUBSCRIPTION], "redact", True, None),
    ("customer rule redact ties with a redact case: the case names the reason", policy("redact"),
     [OPEN_INVOICE], "redact", False, OPEN_INVOICE),
    ("customer rule hold_for_review beats redact", policy("hold_for_review"), [OPEN_INVOICE],
     "hold_for_review", False, None),
    ("customer rule retain beats withhold", policy("retain"), [OPEN_DISPUTE], "retain", False, None),
    ("customer rule retain, never cancelled", policy("retain", active_subscription="cancel_then_erase"),
     [ACTIVE_SUBSCRIPTION], "retain", False, None),
    ("hold_for_review case beats retain", policy("retain", open_dispute="hold_for_review"), [OPEN_DISPUTE],
     "hold_for_review", False, OPEN_DISPUTE),
]  # fmt: skip


@pytest.mark.parametrize(
    ("pol", "cases", "action", "cancel", "deciding"), [t[1:] for t in TABLE], ids=[t[0] for t in TABLE]
)
def test_the_strictest_rule_decides_for_a_customer(pol, cases, action, cancel, deciding):
    decision = pol.stripe_decision(cases)
    assert decision.action == action
    assert decision.cancel_subscriptions is cancel
    assert decision.deciding_case == deciding
    assert decision.cases == tuple(c for c in LIVE_STATE_CASES if c in cases)
    expected_rule = pol.live_state[deciding] if deciding else pol.object_rule(STRIPE_CUSTOMER)
    assert decision.rule == expected_rule
    assert decision.writes is (action in ("erase", "redact"))


def test_every_combination_follows_the_precedence():
    """All 4 customer rules x 72 case rule sets x 16 sets of cases present."""
    checked = 0
    for customer in OBJECT_ACTIONS[STRIPE_CUSTOMER]:
        for actions in itertools.product(*(CASE_ACTIONS[c] for c in LIVE_STATE_CASES)):
            pol = policy(customer, **dict(zip(LIVE_STATE_CASES, actions, strict=True)))
            for size in range(len(LIVE_STATE_CASES) + 1):
                for present in itertools.combinations(LIVE_STATE_CASES, size):
                    decision = pol.stripe_decision(reversed(present))
                    ranks = [PRECEDENCE.index(customer)] + [
                        PRECEDENCE.index(pol.live_state[c].action) for c in present
                    ]
                    strictest = PRECEDENCE[min(ranks)]
                    assert decision.action == ("erase" if strictest == "cancel_then_erase" else strictest)
                    assert decision.rule.action == strictest
                    # Subscriptions are cancelled exactly when asked for and the customer is written to.
                    asked = ACTIVE_SUBSCRIPTION in present and pol.live_state[ACTIVE_SUBSCRIPTION].action == (
                        "cancel_then_erase"
                    )
                    assert decision.cancel_subscriptions is (asked and decision.writes)
                    checked += 1
    assert checked == 4 * 72 * 16


def test_repeats_and_order_do_not_matter_and_unknown_cases_are_refused():
    assert DEFAULT.stripe_decision([OPEN_DISPUTE, OPEN_INVOICE, OPEN_DISPUTE]) == DEFAULT.stripe_decision(
        (OPEN_INVOICE, OPEN_DISPUTE)
    )
    with pytest.raises(ValueError, match=r"unknown live-state case\(s\) \['late_payment'\]"):
        DEFAULT.stripe_decision(["late_payment"])


def test_a_withheld_customer_comes_back_at_its_review_date():
    withheld_at = datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
    decision = DEFAULT.stripe_decision([OPEN_DISPUTE])
    assert decision.review_date(withheld_at) == datetime(2026, 4, 1, 9, 30, tzinfo=UTC)  # P60D
    assert (
        DEFAULT.stripe_decision([OPEN_INVOICE]).review_date(withheld_at) is None
    )  # redacted: nothing to review
    assert DEFAULT.stripe_decision([]).review_date(withheld_at) is None


@pytest.mark.parametrize(
    ("since", "duration", "expected"),
    [
        (datetime(2026, 1, 31), "P30D", datetime(2026, 3, 2)),
        (datetime(2026, 1, 31), "P1M", datetime(2026, 2, 28)),  # calendar month, clamped
        (datetime(2028, 1, 31), "P1M", datetime(2028, 2, 29)),  # leap year
        (datetime(2026, 1, 31), "P1M1D", datetime(2026, 3, 1)),  # months first, then days
        (datetime(2028, 2, 29), "P1Y", datetime(2029, 2, 28)),
        (datetime(2026, 11, 15), "P3M", datetime(2027, 2, 15)),  # over the year's end
        (datetime(2026, 5, 1), "P1Y6M", datetime(2027, 11, 1)),
        (datetime(2026, 5, 1), "P2W", datetime(2026, 5, 15)),
        (datetime(2026, 5, 1), "P1Y2M3W4D", datetime(2027, 7, 26)),
        (datetime(2026, 5, 1), "P10Y", datetime(2036, 5, 1)),
        (datetime(2026, 5, 1), "P25M", datetime(2028, 6, 1)),
    ],
)
def test_durations_add_years_and_months_on_the_calendar(since, duration, expected):
    assert add_duration(since, duration) == expected


def test_review_and_retention_dates_keep_the_time_and_zone():
    paris = timezone(timedelta(hours=1))
    since = datetime(2026, 3, 29, 23, 45, tzinfo=paris)
    assert Rule("withhold", BASIS, review_after="P1M").review_date(since) == datetime(
        2026, 4, 29, 23, 45, tzinfo=paris
    )
    assert Rule("retain", BASIS, retain_for="P6Y").retained_until(since) == datetime(
        2032, 3, 29, 23, 45, tzinfo=paris
    )
    assert Rule("erase").review_date(since) is None
    assert Rule("erase").retained_until(since) is None


@pytest.mark.parametrize("duration", ["P", "PT1H", "P1.5D", "30D", "P1D2M", ""])
def test_add_duration_refuses_what_is_not_a_date_duration(duration):
    with pytest.raises(ValueError, match="not an ISO 8601 date duration"):
        add_duration(datetime(2026, 1, 1), duration)


def test_stripe_statuses_make_the_cases():
    assert stripe_cases() == ()
    # Ended, or never started, subscriptions; drafts, paid and void invoices; closed disputes.
    assert (
        stripe_cases(
            subscription_statuses=["canceled", "incomplete", "incomplete_expired"],
            invoice_statuses=["draft", "paid", "void"],
            dispute_statuses=["won", "lost", "warning_closed", "prevented"],
            balance=0,
        )
        == ()
    )
    for status in ("active", "trialing", "past_due", "unpaid", "paused"):
        assert stripe_cases(subscription_statuses=["canceled", status]) == (ACTIVE_SUBSCRIPTION,)
    for status in ("open", "uncollectible"):
        assert stripe_cases(invoice_statuses=["paid", status]) == (OPEN_INVOICE,)
    for status in ("warning_needs_response", "warning_under_review", "needs_response", "under_review"):
        assert stripe_cases(dispute_statuses=["won", status]) == (OPEN_DISPUTE,)
    assert stripe_cases(balance=-500) == stripe_cases(balance=1) == (CUSTOMER_BALANCE,)
    assert stripe_cases(
        balance=10,
        dispute_statuses=["needs_response"],
        invoice_statuses=["open"],
        subscription_statuses=["active"],
    ) == tuple(LIVE_STATE_CASES)


def test_object_rules_for_every_kind(tmp_path):
    pol = load_policy(write(tmp_path, EVERY_ACTION))
    assert [pol.object_rule(kind).action for kind in OBJECT_KINDS] == ["retain", "erase", "erase", "erase"]
    # Customers are kept for the contract's term; a dispute still waits for a person, and a
    # customer kept untouched never has its subscriptions cancelled.
    assert pol.stripe_decision([]).action == "retain"
    assert pol.stripe_decision([OPEN_DISPUTE, ACTIVE_SUBSCRIPTION]).action == "hold_for_review"
    kept = pol.stripe_decision([ACTIVE_SUBSCRIPTION, CUSTOMER_BALANCE])
    assert (kept.action, kept.cancel_subscriptions) == ("retain", False)
