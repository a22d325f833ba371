"""Constants of the Stripe hook tests (their fixtures are in tests/hooks/conftest.py)."""

from __future__ import annotations

from gdpr_erasure.hooks.retry import RetryPolicy

#: Retries in milliseconds: the sandbox answers at once.
FAST = RetryPolicy(max_attempts=8, base_delay=0.01, max_delay=0.05)
#: The sandbox: a valid key of another Stripe account.
OTHER_ACCOUNT_KEY = "sk_test_other_project_key"
