"""The intake's limits, and its signing secrets from the Airflow connection ``gdpr_intake``.

The connection (any type)::

    password  the current signing secret (at least 32 characters)
    extra     {"previous_secrets": ["<older secret>", ...],   still accepted during a rotation
               "controller_id": "acme"}                       OpenDSR controller_id in answers
    host      the intake's base URL, for clients (gdpr-erasure submit); the server ignores it

It is read through ``airflow.sdk.BaseHook.get_connection``: in Airflow's API server from the
environment (``AIRFLOW_CONN_GDPR_INTAKE``), the metadata DB or a secrets backend; in the
standalone server from the environment or a secrets backend. The secrets are registered with
Airflow's secrets masker and cached for ``secrets_ttl_seconds`` (30 s), so a rotation takes effect
within that time without a restart.

Rotation: 1. set the new secret as the password and move the old one to ``previous_secrets``;
2. after 30 s, switch the clients to the new secret (they may sign with both meanwhile);
3. remove the old secret from ``previous_secrets``; within 30 s it is refused.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from gdpr_erasure.intake.errors import IntakeError
from gdpr_erasure.intake.signature import DEFAULT_TOLERANCE_SECONDS

log = logging.getLogger(__name__)

INTAKE_CONN_ID = "gdpr_intake"
MIN_SECRET_LENGTH = 32
DEFAULT_CONTROLLER_ID = "gdpr-erasure"


@dataclass(frozen=True)
class IntakeSettings:
    """How an intake app behaves. Defaults suit the plugin; the CLI can change them.

    :param conn_id: Airflow connection with the signing secrets.
    :param db_url: compliance store URL; None resolves it as the store does
        (``$GDPR_COMPLIANCE_DB_URL``, connection ``compliance_db``, SQLite under AIRFLOW_HOME).
    :param tolerance_seconds: most seconds between a signature's timestamp and the server clock.
    :param max_body_bytes: larger bodies are refused with 413 before they are read in full.
    :param secrets_ttl_seconds: how long the secrets are cached.
    """

    conn_id: str = INTAKE_CONN_ID
    db_url: str | None = None
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS
    max_body_bytes: int = 64 * 1024
    secrets_ttl_seconds: float = 30.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> IntakeSettings:
        """Defaults, overridden by ``GDPR_INTAKE_CONN_ID``, ``GDPR_INTAKE_TOLERANCE_SECONDS``,
        ``GDPR_INTAKE_MAX_BODY_BYTES`` and ``GDPR_INTAKE_SECRETS_TTL_SECONDS`` (how the plugin,
        which has no command line, is tuned). The store URL is resolved as the store does."""
        env = os.environ if environ is None else environ
        base = cls()
        return cls(
            conn_id=env.get("GDPR_INTAKE_CONN_ID") or base.conn_id,
            tolerance_seconds=int(env.get("GDPR_INTAKE_TOLERANCE_SECONDS") or base.tolerance_seconds),
            max_body_bytes=int(env.get("GDPR_INTAKE_MAX_BODY_BYTES") or base.max_body_bytes),
            secrets_ttl_seconds=float(env.get("GDPR_INTAKE_SECRETS_TTL_SECONDS") or base.secrets_ttl_seconds),
        )


@dataclass(frozen=True)
class IntakeCredentials:
    """The active signing secrets (current first) and the OpenDSR controller id."""

    secrets: tuple[bytes, ...]
    controller_id: str = DEFAULT_CONTROLLER_ID

    def __repr__(self) -> str:
        return (
            f"IntakeCredentials(secrets=<{len(self.secrets)} hidden>, controller_id={self.controller_id!r})"
        )


class IntakeNotConfigured(RuntimeError):
    """The connection is missing or unusable. Messages never contain a secret."""


def _as_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple):
        return [str(part) for part in value if str(part).strip()]
    raise IntakeNotConfigured("extra previous_secrets must be a list of strings")


def credentials_from_connection(conn) -> IntakeCredentials:
    """Read the secrets from an Airflow connection object (see the module docstring)."""
    extra = conn.extra_dejson or {}
    secrets = [conn.password or "", *_as_list(extra.get("previous_secrets"))]
    if not secrets[0]:
        raise IntakeNotConfigured(f"connection {conn.conn_id!r} has no password (the signing secret)")
    for position, secret in enumerate(secrets):
        if len(secret) < MIN_SECRET_LENGTH:
            which = "the password" if position == 0 else f"previous_secrets[{position - 1}]"
            raise IntakeNotConfigured(
                f"connection {conn.conn_id!r}: {which} is shorter than {MIN_SECRET_LENGTH} characters"
            )
    _mask(secrets)
    controller_id = str(extra.get("controller_id") or DEFAULT_CONTROLLER_ID)
    return IntakeCredentials(tuple(s.encode() for s in secrets), controller_id)


def _mask(secrets: list[str]) -> None:
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - the intake always runs with Airflow installed
        return
    for secret in secrets:
        mask_secret(secret)


def load_from_airflow(conn_id: str) -> IntakeCredentials:
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise IntakeNotConfigured(f"Airflow connection {conn_id!r} is not defined") from None
    return credentials_from_connection(conn)


class CredentialsCache:
    """The credentials, reloaded at most every ``ttl`` seconds.

    A missing or unusable connection makes every call answer 503 ``intake_not_configured``. If
    reloading fails for another reason (the metadata DB is down) the last good credentials stay
    in use and the failure is logged.

    :param conn_id: Airflow connection id.
    :param ttl: seconds to keep what was loaded.
    :param loader: ``conn_id -> IntakeCredentials``; tests may inject one.
    """

    def __init__(
        self,
        conn_id: str = INTAKE_CONN_ID,
        ttl: float = 30.0,
        loader: Callable[[str], IntakeCredentials] = load_from_airflow,
    ) -> None:
        self.conn_id = conn_id
        self.ttl = ttl
        self._loader = loader
        self._lock = threading.Lock()
        self._value: IntakeCredentials | None = None
        self._loaded_at = float("-inf")

    def _fresh(self) -> IntakeCredentials | None:
        if self._value is not None and time.monotonic() - self._loaded_at < self.ttl:
            return self._value
        return None

    def get(self) -> IntakeCredentials:
        """The credentials, or :class:`IntakeError` ``intake_not_configured``. May block (DB)."""
        with self._lock:
            value = self._fresh()
            if value is not None:
                return value
            try:
                value = self._loader(self.conn_id)
            except IntakeNotConfigured as exc:
                self._value = None
                log.error("intake: signing secrets unavailable: %s", exc)
                raise IntakeError("intake_not_configured") from None
            except Exception as exc:
                if self._value is None:
                    log.error("intake: cannot load connection %r (%s)", self.conn_id, type(exc).__name__)
                    raise IntakeError("intake_not_configured") from None
                log.warning(
                    "intake: cannot reload connection %r (%s); keeping the last secrets",
                    self.conn_id,
                    type(exc).__name__,
                )
                value = self._value
            self._value, self._loaded_at = value, time.monotonic()
            return value

    async def aget(self) -> IntakeCredentials:
        """Like :meth:`get`; a reload runs in a worker thread, never on the event loop."""
        value = self._fresh()
        if value is not None:
            return value
        return await run_in_threadpool(self.get)
