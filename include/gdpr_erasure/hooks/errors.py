"""Errors raised by the hooks. Messages name the API, the operation and the provider's error
code, never an identifier: they end up in task logs and in the store's ``last_error``."""

from __future__ import annotations

from datetime import datetime, timedelta


class ExternalApiError(Exception):
    """A call to Stripe, Twilio or Segment failed.

    :param api: ``stripe``, ``twilio`` or ``segment``.
    :param operation: what we were doing, e.g. ``delete customer``.
    :param status: HTTP status, if a response arrived.
    :param code: the provider's error code (Stripe ``code``, Twilio numeric code, Segment code).
    :param detail: provider message, already scrubbed of identifiers.
    :param retry_after: seconds the provider asked us to wait, if it said.
    """

    retryable = False

    def __init__(
        self,
        api: str,
        operation: str,
        *,
        status: int | None = None,
        code: str | int | None = None,
        detail: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.api = api
        self.operation = operation
        self.status = status
        self.code = code
        self.detail = detail
        self.retry_after = retry_after
        parts = [f"{api}: {operation} failed"]
        if status is not None:
            parts.append(f"HTTP {status}")
        if code is not None:
            parts.append(f"code {code}")
        message = ", ".join(parts)
        super().__init__(f"{message}: {detail}" if detail else message)


class TransientApiError(ExternalApiError):
    """Worth retrying: rate limited (429), server error (5xx), connection trouble, lock timeout."""

    retryable = True


class ProviderQuotaExhausted(TransientApiError):
    """The provider asked us to wait longer than the retry policy waits in a task: a quota is spent
    until a reset that can be days away (Segment allows 110,000 regulated users a month per
    workspace, then answers 429 with the reset). Retrying now cannot help, and it is not a
    failure of the request: the step records that it waits, and the request is ``deferred``
    until :attr:`not_before`.

    :param not_before: when the provider said calls may succeed again (UTC).
    """

    def __init__(self, api: str, operation: str, *, not_before: datetime, **kwargs) -> None:
        super().__init__(api, operation, **kwargs)
        self.not_before = not_before
        self.args = (f"{self.args[0]} (asked to wait until {not_before.isoformat()})",)

    @classmethod
    def after(cls, exc: ExternalApiError, now: datetime) -> ProviderQuotaExhausted:
        """``exc`` (which carries ``retry_after`` seconds) as a quota that resets then."""
        return cls(
            exc.api,
            exc.operation,
            status=exc.status,
            code=exc.code,
            detail=exc.detail,
            retry_after=exc.retry_after,
            not_before=now + timedelta(seconds=exc.retry_after or 0),
        )


class PermanentApiError(ExternalApiError):
    """Retrying cannot help (bad credentials, invalid request): fail at once with the reason."""


class ApiConfigurationError(Exception):
    """The Airflow connection is missing a setting the hook needs."""
