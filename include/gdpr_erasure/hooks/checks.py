"""Preflight checks: read-only calls that prove a connection works and has the permissions the
pipeline needs, before anything is claimed.

A misconfigured system must never look like "this person has no data here": a wrong Segment
Profile token or external id type answers 404, the same answer as "no profile". So each hook
offers :meth:`checks` (used by ``gdpr-erasure check``, the DAG's preflight task and the hook's
``test_connection``, the Airflow UI's Test button), and every result is one line without a
secret.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from gdpr_erasure.hooks.errors import ApiConfigurationError, ExternalApiError
from gdpr_erasure.hooks.retry import RetryPolicy

#: Retries for the UI's Test button: a person waits for its answer inside an API server request,
#: so a rate-limited or failing provider is reported within seconds, not retried for minutes.
TEST_CONNECTION_RETRIES = RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=2.0, max_retry_after=5.0)


@dataclass(frozen=True)
class CheckResult:
    """One preflight check.

    :param system: ``stripe``, ``twilio``, ``segment``, ``store`` or ``secrets``.
    :param name: what was checked, e.g. ``secret key``.
    :param ok: whether the pipeline can rely on it.
    :param detail: one line for a person: what was found, or what is wrong and what to do.
    """

    system: str
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_check(system: str, name: str, check: Callable[[], str]) -> CheckResult:
    """Run one check; its return value is the detail of a pass, any error a failure.

    Hook errors are already scrubbed of identifiers and secrets; anything else is named by its
    type only, because a driver's message can hold a URL with credentials.
    """
    try:
        return CheckResult(system, name, True, check())
    except (ExternalApiError, ApiConfigurationError, CheckFailed) as exc:
        return CheckResult(system, name, False, str(exc))
    except Exception as exc:
        if type(exc).__name__ == "AirflowNotFoundException":  # says which conn_id is not defined
            return CheckResult(system, name, False, f"{str(exc).splitlines()[0]}: create the connection")
        return CheckResult(system, name, False, f"{type(exc).__name__} while checking {name}")


class CheckFailed(Exception):
    """A check's answer shows a problem; the message says what to do."""


def as_connection_test(results: Iterable[CheckResult]) -> tuple[bool, str]:
    """Airflow's ``test_connection`` answer: all passed, and one line per check."""
    results = list(results)
    ok = all(r.ok for r in results)
    lines = [f"{'ok' if r.ok else 'FAILED'}: {r.name}: {r.detail}" for r in results]
    return ok, "; ".join(lines)


def connection_test(hook: Any) -> tuple[bool, str]:
    """A hook's ``test_connection``: its ``checks()`` with :data:`TEST_CONNECTION_RETRIES` (on a
    copy, so the hook keeps its own policy), answered as :func:`as_connection_test`.

    :param hook: a hook with ``checks()`` and a ``retry_policy`` attribute.
    """
    brief = copy.copy(hook)
    brief.retry_policy = TEST_CONNECTION_RETRIES
    return as_connection_test(brief.checks())
