"""The retry policy and the PII scrubber: pure logic, so plain unit tests."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from gdpr_erasure.hooks.errors import PermanentApiError, ProviderQuotaExhausted, TransientApiError
from gdpr_erasure.hooks.retry import RetryPolicy, call_with_retries, parse_retry_after
from gdpr_erasure.pii import scrub


def _flaky(failures: list[Exception], value="ok"):
    calls = {"n": 0}

    def call():
        calls["n"] += 1
        if failures:
            raise failures.pop(0)
        return value

    return call, calls


def test_transient_errors_are_retried_with_retry_after_honoured():
    waits: list[float] = []
    call, calls = _flaky(
        [
            TransientApiError("stripe", "x", status=429, retry_after=7.0),
            TransientApiError("stripe", "x", status=503),
        ]
    )
    policy = RetryPolicy(base_delay=0.5, rng=random.Random(1))
    assert call_with_retries(call, policy=policy, sleep=waits.append) == "ok"
    assert calls["n"] == 3
    assert 7.0 <= waits[0] <= 7.5  # Retry-After plus at most half a second of jitter
    assert 0.5 <= waits[1] <= 1.0  # second attempt: ceiling 2 x base, jittered in its upper half


def test_backoff_grows_exponentially_and_is_capped():
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0, rng=random.Random(3))
    ceilings = [1, 2, 4, 8, 8, 8]
    for attempt, ceiling in enumerate(ceilings, start=1):
        delay = policy.delay(attempt, None)
        assert ceiling / 2 <= delay <= ceiling


def test_permanent_errors_are_not_retried():
    call, calls = _flaky([PermanentApiError("twilio", "delete message", status=401)])
    with pytest.raises(PermanentApiError):
        call_with_retries(call, sleep=lambda s: None)
    assert calls["n"] == 1


def test_gives_up_after_max_attempts():
    call, calls = _flaky([TransientApiError("segment", "x", status=500) for _ in range(10)])
    with pytest.raises(TransientApiError):
        call_with_retries(call, policy=RetryPolicy(max_attempts=4), sleep=lambda s: None)
    assert calls["n"] == 4


def test_a_retry_after_longer_than_the_cap_fails_fast_instead_of_holding_a_worker():
    call, calls = _flaky([TransientApiError("twilio", "x", status=429, retry_after=3600)])
    with pytest.raises(TransientApiError):
        call_with_retries(call, policy=RetryPolicy(max_retry_after=60), sleep=lambda s: pytest.fail("slept"))
    assert calls["n"] == 1


def test_a_long_retry_after_becomes_a_quota_the_request_waits_for():
    before = datetime.now(UTC)
    call, _ = _flaky([TransientApiError("segment", "create regulation", status=429, retry_after=3600)])
    with pytest.raises(ProviderQuotaExhausted) as caught:
        call_with_retries(call, policy=RetryPolicy(max_retry_after=60), sleep=lambda s: pytest.fail("slept"))
    assert caught.value.not_before >= before + timedelta(seconds=3600)
    assert isinstance(caught.value.__cause__, TransientApiError)


def test_a_quota_raised_by_the_hook_passes_through_unchanged():
    quota = ProviderQuotaExhausted(
        "segment", "create regulation", status=429, retry_after=86400, not_before=datetime.now(UTC)
    )
    call, calls = _flaky([quota])
    with pytest.raises(ProviderQuotaExhausted) as caught:
        call_with_retries(call, sleep=lambda s: pytest.fail("slept"))
    assert caught.value is quota
    assert calls["n"] == 1


def test_other_exceptions_are_neither_retried_nor_wrapped():
    """The loop is tenacity's: its RetryError must never replace the provider's error."""
    call, calls = _flaky([KeyError("bug")])
    with pytest.raises(KeyError):
        call_with_retries(call, sleep=lambda s: pytest.fail("slept"))
    assert calls["n"] == 1


def test_parse_retry_after_accepts_seconds_and_http_dates():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    future = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= parse_retry_after(future) <= 31


def test_error_messages_hold_no_identifier_and_name_the_operation():
    err = TransientApiError(
        "stripe", "list customers", status=429, code="rate_limit", detail=scrub("for a@b.co")
    )
    assert str(err) == "stripe: list customers failed, HTTP 429, code rate_limit: for [redacted]"


@pytest.mark.parametrize(
    "text",
    [
        "No such customer with email Jane.Doe+tag@Example.co.uk",
        "https://x/profiles/email:jane%40example.com/external_ids",
        "To +14155550123 is invalid",
        "phone %2B447700900123",
        "call +1 (415) 555-0123 now",
    ],
)
def test_scrub_removes_emails_and_phones(text):
    cleaned = scrub(text)
    assert "[redacted]" in cleaned
    for fragment in ("Jane", "jane", "4155550123", "447700900123", "555-0123"):
        assert fragment not in cleaned


def test_scrub_keeps_provider_ids_but_not_stripe_customer_ids():
    """A ``cus_`` id links to charges that keep PII: Stripe's "No such customer" echoes it."""
    kept = (
        "message SM0123456789abcdef0123456789abcdef; regulation 1qJkfE1tpwvQ; "
        "profile mem_profile_01h2xcejqtf2nbrexx3vqjhp41"
    )
    assert scrub(kept) == kept
    assert scrub("No such customer: 'cus_NffrFeUfNV2Hib'") == "No such customer: '[redacted]'"
