"""Errors raised by the hooks. Messages name the API, the operation and the provider's error
code, never an identifier: they end up in task logs and in the store's ``last_error``."""

from __future__ import annotations


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


class PermanentApiError(ExternalApiError):
    """Retrying cannot help (bad credentials, invalid request): fail at once with the reason."""


class ApiConfigurationError(Exception):
    """The Airflow connection is missing a setting the hook needs."""
