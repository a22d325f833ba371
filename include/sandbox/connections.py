"""Airflow connections that point the pipeline's hooks at a running sandbox.

The sandbox accepts only its own accounts' ids (``GET /_sandbox/people`` lists them under
``accounts``) and any test credential. The demo, the tests and the benchmarks use these
connections, and so does ``gdpr-erasure deploy init`` when ``GDPR_SANDBOX_URL`` is set (the
compose file's ``sandbox`` profile). Plain data: this module imports neither the pipeline nor
Airflow.
"""

from __future__ import annotations

from typing import Any

#: The limits the connections declare where the sandbox enforces none: far above any local run's
#: pace, so the client-side budget (which defaults to the real providers' limits) never slows
#: the demo or the tests. Benchmarks pass the limits they make the sandbox enforce instead.
UNLIMITED = {"rate": 10_000, "concurrency": 1_000}
#: The limit each API's client-side budget is built on (docs/limits.md).
_BUDGETED = {"stripe": "rate", "twilio": "concurrency", "segment": "rate"}


def sandbox_connections(
    base_url: str,
    accounts: dict[str, Any],
    limits: dict[str, dict[str, Any]] | None = None,
    fraction: float | None = None,
) -> dict[str, dict[str, Any]]:
    """``stripe_default``, ``twilio_default`` and ``segment_default`` for the sandbox at ``base_url``,
    in Airflow's JSON form (``AIRFLOW_CONN_*`` values; ``extra`` as a dict).

    :param base_url: the sandbox's base URL as the Airflow components reach it.
    :param accounts: ``accounts`` of ``GET /_sandbox/people``.
    :param limits: the limits the sandbox enforces, as ``GET /_sandbox/limits`` answers them
        (``{"stripe": {"rate": 25}, "twilio": {"concurrency": 10}}``): the connections declare them
        as the accounts' limits (extras ``rate_per_second``, ``concurrency``). None: no limits.
    :param fraction: the share of each limit the pipeline uses (extra ``fraction``); None: the
        hooks' default.
    """
    stripe, twilio, segment = accounts["stripe"], accounts["twilio"], accounts["segment"]
    return {
        "stripe_default": {
            "conn_type": "stripe",
            "password": "sk_test_sandbox_key",
            "extra": {
                "api_base": f"{base_url}/stripe",
                "account_id": stripe["account_id"],
                **_limit_extras("stripe", limits, fraction),
            },
        },
        "twilio_default": {
            "conn_type": "twilio",
            "login": twilio["account_sid"],
            "password": "sandbox-auth-token",
            "extra": {
                "api_base": f"{base_url}/twilio",
                "memory_store_id": twilio["memory_store_id"],
                **_limit_extras("twilio", limits, fraction),
            },
        },
        "segment_default": {
            "conn_type": "segment",
            "host": f"{base_url}/segment/api",
            "password": "sandbox-public-api-token",
            "extra": {
                "space_id": segment["space_id"],
                "profile_api_token": "sandbox-profile-token",
                "profile_api_url": f"{base_url}/segment/profiles",
                "check_user_id": segment["check_user_id"],
                **_limit_extras("segment", limits, fraction),
            },
        },
    }


def _limit_extras(api: str, limits: dict[str, dict[str, Any]] | None, fraction: float | None) -> dict:
    enforced = (limits or {}).get(api) or {}
    extras: dict[str, Any] = {}
    for name, extra in (("rate", "rate_per_second"), ("concurrency", "concurrency")):
        value = enforced.get(name)
        if value is None and _BUDGETED[api] == name:
            value = UNLIMITED[name]
        if value is not None:
            extras[extra] = value
    if fraction is not None:
        extras["fraction"] = fraction
    return extras
