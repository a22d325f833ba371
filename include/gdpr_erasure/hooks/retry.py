"""One retry policy for every external call: exponential backoff with full jitter, and the
provider's ``Retry-After`` honoured when it sends one.

The SDKs' own retry loops are turned off (Stripe ``max_network_retries=0``; Twilio and
requests have none by default) so that there is exactly one place that decides, the delays
are the same for all three APIs, and a 429 (which stripe-python does not retry) is handled.

A provider that asks for a longer wait than a task should spend (``max_retry_after``) gets
:class:`ProviderQuotaExhausted` with the time it named: a spent quota, such as Segment's monthly
regulation allowance, is waited out by the request (``deferred``), not by a worker.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from gdpr_erasure.hooks.errors import ProviderQuotaExhausted, TransientApiError

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Longest provider-requested wait honoured inside a task, in seconds.
DEFAULT_MAX_RETRY_AFTER = 120.0
#: Environment variable that overrides it (tests and scripts shorten it to exercise deferral).
MAX_RETRY_AFTER_ENV = "GDPR_ERASURE_MAX_RETRY_AFTER"


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a :class:`TransientApiError`.

    :param max_attempts: total tries, including the first.
    :param base_delay: first backoff in seconds; doubles each attempt.
    :param max_delay: cap on one computed backoff.
    :param max_retry_after: cap on a provider-requested wait; a longer one raises
        :class:`ProviderQuotaExhausted` at once instead of holding a worker. None:
        ``$GDPR_ERASURE_MAX_RETRY_AFTER``, else 120 s, read when a call is made.
    """

    max_attempts: int = 8
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float | None = None
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    @property
    def retry_after_cap(self) -> float:
        if self.max_retry_after is not None:
            return self.max_retry_after
        return float(os.environ.get(MAX_RETRY_AFTER_ENV) or DEFAULT_MAX_RETRY_AFTER)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before try number ``attempt + 1`` (``attempt`` starts at 1)."""
        if retry_after is not None:
            # Honour the server, plus a little jitter so parallel tasks do not return together.
            return retry_after + self.rng.uniform(0, min(1.0, self.base_delay))
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return self.rng.uniform(ceiling / 2, ceiling)


DEFAULT_POLICY = RetryPolicy()


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def call_with_retries(
    call: Callable[[], T],
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``call``; on :class:`TransientApiError` wait and try again, up to the policy's limit.

    A provider asking to wait longer than ``policy.retry_after_cap`` raises
    :class:`ProviderQuotaExhausted` (a :class:`TransientApiError`) carrying the time it named.
    """
    attempt = 1
    while True:
        try:
            return call()
        except TransientApiError as exc:
            if exc.retry_after is not None and exc.retry_after > policy.retry_after_cap:
                if isinstance(exc, ProviderQuotaExhausted):
                    raise
                log.warning(
                    "%s: %s got %s asking to wait %.0fs, longer than we retry (%.0fs): "
                    "the request waits for it instead of the task",
                    exc.api,
                    exc.operation,
                    exc.status or "an error",
                    exc.retry_after,
                    policy.retry_after_cap,
                )
                raise ProviderQuotaExhausted.after(exc, datetime.now(UTC)) from exc
            if attempt >= policy.max_attempts:
                raise
            wait = policy.delay(attempt, exc.retry_after)
            log.warning(
                "%s: %s got %s; retry %d/%d in %.1fs",
                exc.api,
                exc.operation,
                exc.status or "a connection error",
                attempt,
                policy.max_attempts - 1,
                wait,
            )
            sleep(wait)
            attempt += 1
