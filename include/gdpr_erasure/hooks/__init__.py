"""Hooks: one per external API, each on an Airflow connection, each with the same retry policy."""

from gdpr_erasure.hooks.errors import (
    ApiConfigurationError,
    ExternalApiError,
    PermanentApiError,
    TransientApiError,
)

__all__ = ["ApiConfigurationError", "ExternalApiError", "PermanentApiError", "TransientApiError"]
