"""One retry policy for every external call: exponential backoff with jitter, and the
provider's ``Retry-After`` honoured when it sends one.

The loop is tenacity's (Airflow ships it, and providers-http's ``run_with_advanced_retry`` uses
it); the policy is ours, because neither SDK has one that fits:

* stripe-python's ``max_network_retries`` retries connection errors, 409 and 5xx, but not 429
  (unless Stripe sends ``Stripe-Should-Retry: true``), ignores ``Retry-After`` and waits at
  most 5 s;
* twilio-python's ``max_retries`` only mounts urllib3 retries on the session: connection
  errors, never a 429 (error 20429, "too many concurrent requests") nor ``Retry-After``.

So the SDKs' own loops are off (Stripe ``max_network_retries=0``; Twilio and requests have
none by default): there is exactly one place that decides, the delays are the same for all
three APIs, a 429 is retried, the provider's ``Retry-After`` (or Segment's ``X-RateLimit-Reset``,
read by the hook) is honoured, and each hook decides what is transient (Twilio's 20429 and 20009).

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

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

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

    :param call: the provider call, without arguments.
    :param policy: how often and how long to wait.
    :param sleep: how to wait (tests pass a recorder).
    """
    cap = policy.retry_after_cap

    def too_long(exc: BaseException) -> bool:
        return isinstance(exc, TransientApiError) and exc.retry_after is not None and exc.retry_after > cap

    def wait(state: RetryCallState) -> float:
        return policy.delay(state.attempt_number, state.outcome.exception().retry_after)

    def log_retry(state: RetryCallState) -> None:
        exc = state.outcome.exception()
        log.warning(
            "%s: %s got %s; retry %d/%d in %.1fs",
            exc.api,
            exc.operation,
            exc.status or "a connection error",
            state.attempt_number,
            policy.max_attempts - 1,
            state.upcoming_sleep,
        )

    retrying = Retrying(
        retry=retry_if_exception(lambda exc: isinstance(exc, TransientApiError) and not too_long(exc)),
        stop=stop_after_attempt(policy.max_attempts),
        wait=wait,
        sleep=sleep,
        before_sleep=log_retry,
        reraise=True,  # the provider's error, not tenacity's RetryError
    )
    try:
        return retrying(call)
    except TransientApiError as exc:
        if not too_long(exc) or isinstance(exc, ProviderQuotaExhausted):
            raise
        log.warning(
            "%s: %s got %s asking to wait %.0fs, longer than we retry (%.0fs): "
            "the request waits for it instead of the task",
            exc.api,
            exc.operation,
            exc.status or "an error",
            exc.retry_after,
            cap,
        )
        raise ProviderQuotaExhausted.after(exc, datetime.now(UTC)) from exc
