"""What the Stripe hook tests share: a fresh process's account guard and a hook that retries fast."""

from __future__ import annotations

import pytest
from support.stripe_hook import FAST

from gdpr_erasure.hooks import stripe as stripe_hook
from gdpr_erasure.hooks.stripe import StripeHook


@pytest.fixture
def fresh_stripe_process():
    """The test starts like a new process: no Stripe account proven, no server trusted yet."""
    stripe_hook._verified_accounts.clear()
    stripe_hook._trusted_bases.clear()
    yield
    stripe_hook._verified_accounts.clear()
    stripe_hook._trusted_bases.clear()


@pytest.fixture
def stripe_hook_fast(api_connections, fresh_stripe_process) -> StripeHook:
    """The Stripe hook on the sandbox's connection, retrying in milliseconds."""
    return StripeHook(retry_policy=FAST)
